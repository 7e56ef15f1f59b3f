"""`builtin`: scikit-image's bundled RGB photographs, with a fixed train/val split.

This is the dataset that works on any machine with nothing downloaded: the
photographs ship inside the scikit-image wheel. Images that scikit-image would
fetch from the network (lily, eagle, skin, kidney, ...) are not used, nor are
the grayscale textures (camera, brick, grass, ...), the synthetic ones
(colorwheel, logo, chessboard) or `cat` (the same picture as `chelsea`).

The split is fixed so that numbers are comparable between runs and machines:

- val: astronaut, chelsea. Two small natural photographs (faces, fabric, fur:
  the fine detail SR metrics reward) that evaluate in well under a second;
  they are also the images the protocol tests check against BasicSR's figures.
- train: the other seven. The stereo pair motorcycle_left/right shows the same
  scene, so both sit on the same (train) side: a near-duplicate straddling the
  split would leak validation content into training.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from skimage import data as skdata

from srprune.errors import InputError

VAL_NAMES: tuple[str, ...] = ("astronaut", "chelsea")
TRAIN_NAMES: tuple[str, ...] = (
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
)
SPLITS: dict[str, tuple[str, ...]] = {"train": TRAIN_NAMES, "val": VAL_NAMES, "all": TRAIN_NAMES + VAL_NAMES}


def _loader(name: str) -> Callable[[], np.ndarray]:
    """The scikit-image function that returns one bundled photograph."""
    if name == "motorcycle_left":
        return lambda: skdata.stereo_motorcycle()[0]
    if name == "motorcycle_right":
        return lambda: skdata.stereo_motorcycle()[1]
    return getattr(skdata, name)


def builtin_names(split: str) -> tuple[str, ...]:
    """Image names of a builtin split ('train', 'val' or 'all')."""
    if split not in SPLITS:
        raise InputError(f"builtin dataset: unknown split {split!r} (use one of {', '.join(SPLITS)})")
    return SPLITS[split]


def builtin_image(name: str) -> np.ndarray:
    """One bundled photograph as RGB uint8 HxWx3 (read from the installed wheel, never downloaded)."""
    if name not in SPLITS["all"]:
        raise InputError(f"builtin dataset: no image named {name!r}")
    try:
        img = _loader(name)()
    except (ModuleNotFoundError, OSError, KeyError) as e:  # pooch missing / file absent
        raise InputError(f"builtin image {name!r} is not bundled with this scikit-image ({e.__class__.__name__})") from e
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"builtin image {name!r} is not RGB uint8 in this scikit-image ({img.shape} {img.dtype})")
    return np.ascontiguousarray(img)
