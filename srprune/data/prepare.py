"""`srprune data prepare`: check DIV2K and the benchmark sets on disk and build missing LR sets.

The check reads every header before anything is written; the LR images are then written under temporary
names beside their targets and renamed into place only when every one of them succeeded, so an HR image that
fails to decode half way stops the command with nothing changed (temporary files and folders it made are
removed). An existing LR file is never replaced without `force`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from srprune.data.layout import (
    DatasetLayout,
    benchmark_layout,
    div2k_layout,
    find_all,
    find_lr_file,
    image_size,
    list_images,
    lr_output_path,
)
from srprune.data.pairs import check_scale, expected_lr_shape, prepare_hr, protocol_lr
from srcommon.atomic import default_mode, temp_name_prefix
from srprune.errors import InputError
from srprune.imageio import write_image


@dataclass
class ScaleStatus:
    """The LR folder of one dataset at one scale."""

    scale: int
    folder: Path
    ok: int = 0
    missing: list[Path] = field(default_factory=list)  # HR files without an LR file
    wrong_size: list[Path] = field(default_factory=list)  # LR files of the wrong size

    @property
    def state(self) -> str:
        """One word for the table: ok, missing, incomplete or bad."""
        if self.wrong_size:
            return "bad"
        if not self.missing:
            return "ok"
        return "missing" if self.ok == 0 else "incomplete"


@dataclass
class DatasetStatus:
    """What was found of one dataset: its HR files and each requested LR scale."""

    name: str
    layout: DatasetLayout | None
    hr_files: list[Path] = field(default_factory=list)
    hr_sizes: dict[Path, tuple[int, int]] = field(default_factory=dict)
    scales: dict[int, ScaleStatus] = field(default_factory=dict)


def parse_scales(text: str) -> list[int]:
    """'2,3,4' -> [2, 3, 4]; a clear error for anything else."""
    try:
        scales = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--scales: expected comma-separated integers like 2,3,4, got {text!r}") from None
    if not scales:
        raise InputError("--scales: no scale given")
    for s in scales:
        if s < 2 or s > 8:
            raise InputError(f"--scales: scale {s} is out of range (2..8)")
    return sorted(set(scales))


def _check_scale(layout: DatasetLayout, files: list[Path], sizes: dict[Path, tuple[int, int]], scale: int) -> ScaleStatus:
    """Which LR files of one scale are there, missing, or of the wrong size."""
    st = ScaleStatus(scale, layout.lr_dir(scale))
    present = set(os.listdir(st.folder)) if st.folder.is_dir() else set()
    for hr in files:
        lr = find_lr_file(st.folder, hr, scale, present)
        if lr is None:
            st.missing.append(hr)
        elif image_size(lr) != expected_lr_shape(sizes[hr], scale):
            st.wrong_size.append(lr)
        else:
            st.ok += 1
    return st


def scan(root: str | os.PathLike, scales: list[int]) -> list[DatasetStatus]:
    """Check every known dataset under root (reads image headers, writes nothing)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: is a file, not a folder")
    scales = [check_scale(s) for s in scales]
    statuses = []
    for name, path, kind in find_all(root):
        if path is None:
            statuses.append(DatasetStatus(name, None))
            continue
        layout = div2k_layout(path) if kind == "div2k" else benchmark_layout(path)
        st = DatasetStatus(name, layout)
        if layout.hr_dir.is_dir():
            st.hr_files = list_images(layout.hr_dir).images
        for hr in tqdm(st.hr_files, desc=f"checking {name}", unit="img", disable=None, leave=False):
            h, w = image_size(hr)
            if h < max(scales) or w < max(scales):
                raise InputError(f"{hr}: image is {w}x{h}, smaller than the scale x{max(scales)}")
            st.hr_sizes[hr] = (h, w)
        if st.hr_files:
            st.scales = {s: _check_scale(layout, st.hr_files, st.hr_sizes, s) for s in scales}
        statuses.append(st)
    if all(st.layout is None for st in statuses):
        raise InputError(
            f"{root}: found none of DIV2K_train_HR, DIV2K_valid_HR, Set5, Set14, B100, Urban100, Manga109 "
            f"(looked in {root}, {root / 'DIV2K'}, {root / 'benchmark'}); see data/README.md"
        )
    return statuses


def format_table(statuses: list[DatasetStatus], scales: list[int]) -> str:
    """A plain-text table: one row per dataset, one column per scale."""
    header = ["dataset", "HR images"] + [f"X{s}" for s in scales]
    rows = [header]
    for st in statuses:
        if st.layout is None:
            rows.append([st.name, "not found"] + ["-"] * len(scales))
        elif not st.hr_files:
            rows.append([st.name, f"no images in {st.layout.hr_dir.name}/"] + ["-"] * len(scales))
        else:
            cells = []
            for s in scales:
                ss = st.scales[s]
                n = len(st.hr_files)
                cells.append({"ok": f"ok {n}/{n}", "missing": "missing", "incomplete": f"incomplete {ss.ok}/{n}",
                              "bad": f"bad: {len(ss.wrong_size)} wrong size"}[ss.state])
            rows.append([st.name, str(len(st.hr_files))] + cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


@dataclass
class BuildResult:
    """What `build` did."""

    written: int = 0
    kept_wrong: list[Path] = field(default_factory=list)  # wrong-size LR files left alone (no force)


def _targets(st: DatasetStatus, force: bool) -> dict[Path, list[tuple[int, Path]]]:
    """HR file -> [(scale, LR path to write)] for everything that needs writing."""
    jobs: dict[Path, list[tuple[int, Path]]] = {}
    for s, ss in st.scales.items():
        todo = list(ss.missing)
        if force:
            present = set(os.listdir(ss.folder)) if ss.folder.is_dir() else set()
            todo = list(st.hr_files)
        for hr in todo:
            target = lr_output_path(st.layout, hr, s)
            if force:
                found = find_lr_file(ss.folder, hr, s, present)
                if found is not None and found.suffix.lower() == ".png":
                    target = found  # rebuild in place rather than leave a second copy
            jobs.setdefault(hr, []).append((s, target))
    return jobs


def build(statuses: list[DatasetStatus], force: bool = False) -> BuildResult:
    """Write the missing LR files (all of them with `force`) by the protocol, atomically.

    Wrong-size LR files are left alone without `force` and listed in the result.
    """
    from srprune.data.datasets import read_rgb  # here to keep the import graph one-way

    result = BuildResult()
    jobs: list[tuple[Path, list[tuple[int, Path]]]] = []
    for st in statuses:
        if st.layout is None or not st.hr_files:
            continue
        jobs += list(_targets(st, force).items())
        if not force:
            for ss in st.scales.values():
                result.kept_wrong += ss.wrong_size
    n_files = sum(len(t) for _, t in jobs)
    staged: list[tuple[Path, Path]] = []  # (temporary file, target)
    made_dirs: list[Path] = []
    try:
        with tqdm(total=n_files, desc="building LR", unit="img", disable=None if n_files else True) as bar:
            for hr_path, targets in jobs:
                hr_full = read_rgb(hr_path)
                for scale, target in targets:
                    hr = prepare_hr(hr_full, scale, str(hr_path))
                    made_dirs += _make_dirs(target.parent)
                    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temp_name_prefix(target.name),
                                               suffix=".tmp" + target.suffix)
                    os.close(fd)
                    staged.append((Path(tmp), target))
                    write_image(tmp, protocol_lr(hr, scale), force=True)
                    os.chmod(tmp, default_mode(target))  # mkstemp's 0600 would otherwise stick
                    bar.update(1)
        for tmp, target in staged:
            os.replace(tmp, target)
            result.written += 1
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        for d in reversed(made_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return result


def _make_dirs(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it created (outermost first) so a failed build can remove them."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()][::-1]
    for p in missing:
        p.mkdir()
    return missing
