"""Where datasets live on disk: the DIV2K and benchmark (EDSR/BasicSR) layouts.

DIV2K (as unzipped from the official archives)::

    ROOT/DIV2K_train_HR/0001.png
    ROOT/DIV2K_train_LR_bicubic/X2/0001x2.png
    ROOT/DIV2K_valid_HR/0801.png          (+ DIV2K_valid_LR_bicubic/X2/0801x2.png)

Benchmark sets (EDSR's benchmark.tar)::

    ROOT/Set5/HR/baby.png
    ROOT/Set5/LR_bicubic/X2/babyx2.png

ROOT may also hold these one level down, in ROOT/DIV2K/ and ROOT/benchmark/.
LR files are found as `<stem>x<scale>.<ext>` or, failing that, `<stem>.<ext>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from srprune.errors import InputError
from srprune.imageio import IMAGE_SUFFIXES, image_size, is_image_file  # noqa: F401 (image_size: for prepare)

BENCHMARK_SETS: tuple[tuple[str, ...], ...] = (
    ("Set5",),
    ("Set14",),
    ("B100", "BSDS100"),
    ("Urban100",),
    ("Manga109",),
)
DIV2K_SPLITS: dict[str, str] = {"train": "DIV2K_train", "val": "DIV2K_valid"}
SUBDIRS: tuple[str, ...] = ("", "DIV2K", "benchmark")


@dataclass
class DatasetLayout:
    """One HR folder and where its LR folders are (or would be) for each scale."""

    name: str
    kind: str  # "div2k" or "benchmark"
    hr_dir: Path
    lr_root: Path  # LR folder of scale s is lr_root / f"X{s}"

    def lr_dir(self, scale: int) -> Path:
        """The LR folder for one scale (it may not exist)."""
        return self.lr_root / f"X{scale}"


@dataclass
class Listing:
    """Image files of a folder, plus the other files that were skipped."""

    images: list[Path]
    skipped: list[Path] = field(default_factory=list)


def list_images(folder: Path) -> Listing:
    """Image files directly in `folder`, sorted by name; hidden files are ignored."""
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder}: is a file, not a folder")
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as e:
        raise InputError(f"{folder}: cannot list folder ({e.strerror})") from e
    images = [p for p in entries if is_image_file(p)]
    skipped = [p for p in entries if not is_image_file(p) and p.is_file()]
    return Listing(images, skipped)


def div2k_layout(hr_dir: Path) -> DatasetLayout:
    """Layout of a DIV2K_{train,valid}_HR folder: LR beside it in DIV2K_*_LR_bicubic/."""
    prefix = hr_dir.name[: -len("_HR")]
    return DatasetLayout(prefix, "div2k", hr_dir, hr_dir.parent / f"{prefix}_LR_bicubic")


def benchmark_layout(set_dir: Path) -> DatasetLayout:
    """Layout of a benchmark set folder (Set5/HR, Set5/LR_bicubic/X2)."""
    return DatasetLayout(set_dir.name, "benchmark", set_dir / "HR", set_dir / "LR_bicubic")


def is_benchmark_set(path: Path) -> bool:
    """A folder with an HR/ subfolder is a benchmark set."""
    return (path / "HR").is_dir()


def find_div2k(root: Path, split: str) -> Path | None:
    """The DIV2K HR folder of a split ('train'/'val') under root, or None."""
    name = f"{DIV2K_SPLITS[split]}_HR"
    for sub in SUBDIRS:
        cand = root / sub / name if sub else root / name
        if cand.is_dir():
            return cand
    return None


def find_benchmark(root: Path, names: tuple[str, ...]) -> Path | None:
    """The folder of a benchmark set known by any of `names` under root, or None."""
    for sub in SUBDIRS:
        for name in names:
            cand = root / sub / name if sub else root / name
            if cand.is_dir():
                return cand
    return None


def find_all(root: Path) -> list[tuple[str, Path | None, str]]:
    """Every dataset srprune knows, as (display name, folder or None, kind), under root."""
    found: list[tuple[str, Path | None, str]] = []
    for split, prefix in DIV2K_SPLITS.items():
        found.append((prefix, find_div2k(root, split), "div2k"))
    for names in BENCHMARK_SETS:
        path = find_benchmark(root, names)
        found.append((path.name if path else names[0], path, "benchmark"))
    return found


def lr_candidates(lr_dir: Path, hr_path: Path, scale: int) -> list[Path]:
    """Names the LR file of `hr_path` may have, in order of preference."""
    stems = (f"{hr_path.stem}x{scale}", hr_path.stem)
    suffixes = (hr_path.suffix,) + tuple(s for s in IMAGE_SUFFIXES if s != hr_path.suffix.lower())
    return [lr_dir / f"{stem}{suf}" for stem in stems for suf in suffixes]


def find_lr_file(lr_dir: Path, hr_path: Path, scale: int, present: set[str] | None = None) -> Path | None:
    """The LR file of one HR file in an LR folder, or None when it is missing.

    `present` (the file names in lr_dir) saves a stat per candidate on big folders.
    """
    for cand in lr_candidates(lr_dir, hr_path, scale):
        if (cand.name in present) if present is not None else cand.is_file():
            return cand
    return None


def lr_output_path(layout: DatasetLayout, hr_path: Path, scale: int) -> Path:
    """Where `srprune data prepare` writes the LR file: <stem>x<scale>.png, as DIV2K and EDSR do."""
    return layout.lr_dir(scale) / f"{hr_path.stem}x{scale}.png"
