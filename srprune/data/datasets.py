"""`load_dataset`: turn a dataset spec (builtin, a folder, a DIV2K/benchmark tree) into image pairs.

Specs, tried in this order:

1. ``builtin``: scikit-image's bundled photographs (split 'train', 'val' or 'all').
2. A benchmark set folder (has ``HR/``), e.g. ``.../Set5``; LR from ``LR_bicubic/X<s>``.
3. A ``DIV2K_train_HR`` / ``DIV2K_valid_HR`` folder; LR from the ``*_LR_bicubic`` folder beside it.
4. A root holding DIV2K (directly or in ``DIV2K/``): split 'train' or 'val' picks the HR folder.
5. Any other folder of images: HR images, LR made by the protocol.

Whenever a paired layout lacks the LR folder of the requested scale, LR images
are made by the protocol too. Protocol LR images are cached outside the
user's folder (see cache.py). An LR folder that exists but lacks a file, or
holds one of the wrong size, is an error: silently mixing our LR with theirs
would make numbers incomparable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from srprune.data.builtin import builtin_image, builtin_names
from srprune.data.cache import cached_protocol_lr
from srprune.data.layout import (
    DIV2K_SPLITS,
    DatasetLayout,
    benchmark_layout,
    div2k_layout,
    find_div2k,
    find_lr_file,
    is_benchmark_set,
    list_images,
)
from srprune.data.pairs import ImagePair, check_pair, check_scale, prepare_hr
from srprune.errors import InputError
from srprune.imageio import read_image
from srcommon.progress import note


def read_rgb(path: Path) -> np.ndarray:
    """read_image, with OS-level failures (permissions, I/O) turned into InputError too."""
    if path.exists() and not path.is_file() and not path.is_dir():
        raise InputError(f"{path}: not a regular file")  # a FIFO would block the read forever
    try:
        return read_image(path)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from e


def _progress(items: list, desc: str) -> tqdm:
    """A progress bar for loading (hidden when not on a terminal)."""
    return tqdm(items, desc=desc, unit="img", disable=None, leave=False)


def _image_files(folder: Path) -> list[Path]:
    """Image files of a dataset folder; notes skipped files, refuses empty folders and clashing names."""
    listing = list_images(folder)
    if listing.skipped:
        names = ", ".join(p.name for p in listing.skipped[:3]) + (", ..." if len(listing.skipped) > 3 else "")
        note(f"note: {folder}: skipped {len(listing.skipped)} non-image file(s): {names}")
    if not listing.images:
        raise InputError(f"{folder}: no image files found (looked for png, jpg, bmp, tif, webp, ppm)")
    seen: dict[str, Path] = {}
    for p in listing.images:
        if p.stem in seen:
            raise InputError(f"{folder}: two images named {p.stem!r} ({seen[p.stem].name}, {p.name})")
        seen[p.stem] = p
    return listing.images


def load_builtin(split: str, scale: int) -> list[ImagePair]:
    """The builtin split, HR mod-cropped and LR by the protocol (cached)."""
    pairs = []
    for name in _progress(list(builtin_names(split)), "builtin"):
        hr = prepare_hr(builtin_image(name), scale, name)
        pairs.append(ImagePair(name, hr, cached_protocol_lr(hr, scale)))
    return pairs


def load_hr_folder(folder: Path, scale: int) -> list[ImagePair]:
    """A folder of HR images; LR made by the protocol (cached outside the folder)."""
    pairs = []
    for path in _progress(_image_files(folder), folder.name):
        hr = prepare_hr(read_rgb(path), scale, str(path))
        pairs.append(ImagePair(path.stem, hr, cached_protocol_lr(hr, scale)))
    return pairs


def load_paired(layout: DatasetLayout, scale: int) -> list[ImagePair]:
    """A DIV2K or benchmark HR folder with its LR folder for `scale` (protocol LR if that folder is absent)."""
    files = _image_files(layout.hr_dir)
    lr_dir = layout.lr_dir(scale)
    if not lr_dir.is_dir():
        note(f"note: {layout.name}: no {lr_dir}; making x{scale} LR images by the protocol")
        return load_hr_folder(layout.hr_dir, scale)
    try:
        present = set(os.listdir(lr_dir))
    except OSError as e:
        raise InputError(f"{lr_dir}: cannot list folder ({e.strerror})") from e
    pairs = []
    for path in _progress(files, layout.name):
        lr_path = find_lr_file(lr_dir, path, scale, present)
        if lr_path is None:
            raise InputError(
                f"{lr_dir}: no LR image for {path.name} (expected {path.stem}x{scale}.png); "
                f"`srprune data prepare` builds missing ones"
            )
        hr = prepare_hr(read_rgb(path), scale, str(path))
        lr = read_rgb(lr_path)
        check_pair(hr, lr, scale, str(lr_path))
        pairs.append(ImagePair(path.stem, hr, lr))
    return pairs


def _benchmark_sets_in(root: Path) -> list[Path]:
    """Benchmark set folders directly under root or root/benchmark."""
    sets = []
    for base in (root, root / "benchmark"):
        if base.is_dir():
            sets += [p for p in sorted(base.iterdir()) if p.is_dir() and is_benchmark_set(p)]
    return sets


def resolve_layout(path: Path, split: str) -> DatasetLayout | None:
    """The paired layout a folder spec means, or None for a plain folder of HR images."""
    if is_benchmark_set(path):
        return benchmark_layout(path)
    if path.name in {f"{p}_HR" for p in DIV2K_SPLITS.values()}:
        return div2k_layout(path)
    if any(find_div2k(path, s) for s in DIV2K_SPLITS):
        if split not in DIV2K_SPLITS:
            raise InputError(f"{path}: DIV2K split must be one of {', '.join(DIV2K_SPLITS)}, got {split!r}")
        hr_dir = find_div2k(path, split)
        if hr_dir is None:
            raise InputError(f"{path}: no {DIV2K_SPLITS[split]}_HR folder for split {split!r}")
        return div2k_layout(hr_dir)
    sets = _benchmark_sets_in(path)
    if sets:
        names = ", ".join(p.name for p in sets)
        raise InputError(f"{path}: holds several benchmark sets ({names}); pass one of them, e.g. {sets[0]}")
    return None


def load_dataset(spec: str, scale: int, split: str = "val") -> list[ImagePair]:
    """Load a dataset as HR/LR pairs (RGB uint8, HR mod-cropped to the scale).

    `split` matters for `builtin` ('train'/'val'/'all') and DIV2K roots
    ('train'/'val'); a single folder is what it is and ignores it.
    """
    scale = check_scale(scale)
    if spec == "builtin":
        return load_builtin(split, scale)
    path = Path(os.path.expanduser(str(spec)))
    if not path.exists():
        raise InputError(f"{spec}: no such file or folder (a dataset is 'builtin' or a folder)")
    if not path.is_dir():
        raise InputError(f"{spec}: is a file; a dataset is 'builtin' or a folder of images")
    layout = resolve_layout(path, split)
    if layout is None:
        return load_hr_folder(path, scale)
    return load_paired(layout, scale)
