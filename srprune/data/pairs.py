"""HR/LR image pairs and the benchmark degradation protocol that makes LR from HR.

The protocol (DESIGN.md) is fixed so that PSNR figures compare with the
literature: HR is mod-cropped to a multiple of the scale, and LR is the MATLAB
bicubic downscale of that HR rounded to uint8. Every dataset in srprune goes
through `protocol_lr` or `check_pair`, so a size mistake is caught once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srprune.errors import InputError
from srprune.imresize import imresize, mod_crop, to_uint8


@dataclass
class ImagePair:
    """One HR image (mod-cropped) and its LR counterpart, both RGB uint8 HxWx3."""

    name: str
    hr: np.ndarray
    lr: np.ndarray

    @property
    def scale(self) -> int:
        """The integer scale between HR and LR."""
        return self.hr.shape[0] // self.lr.shape[0]


def check_scale(scale: int) -> int:
    """Validate an SR scale factor (an integer >= 2); return it as int."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or int(scale) < 2:
        raise InputError(f"scale must be an integer >= 2, got {scale!r}")
    return int(scale)


def size_text(shape: tuple[int, ...]) -> str:
    """'WxH' as image tools print it (numpy shapes are H, W)."""
    return f"{shape[1]}x{shape[0]}"


def prepare_hr(hr: np.ndarray, scale: int, name: str) -> np.ndarray:
    """Mod-crop an HR image; refuse images that would crop to nothing."""
    if hr.ndim != 3 or hr.shape[2] != 3 or hr.dtype != np.uint8:
        raise InputError(f"{name}: expected an RGB uint8 image, got shape {hr.shape} {hr.dtype}")
    if hr.shape[0] < scale or hr.shape[1] < scale:
        raise InputError(f"{name}: image is {size_text(hr.shape)}, smaller than the scale x{scale}")
    return np.ascontiguousarray(mod_crop(hr, scale))


def protocol_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR by the benchmark protocol from an already mod-cropped HR image."""
    return to_uint8(imresize(hr, 1 / scale))


def expected_lr_shape(hr_shape: tuple[int, ...], scale: int) -> tuple[int, int]:
    """(H, W) of the LR image for an HR image of this shape, after mod-crop."""
    return hr_shape[0] // scale, hr_shape[1] // scale


def check_pair(hr: np.ndarray, lr: np.ndarray, scale: int, lr_name: str) -> None:
    """Refuse an LR image whose size is not the mod-cropped HR size / scale."""
    want = expected_lr_shape(hr.shape, scale)
    if lr.shape[:2] != want:
        raise InputError(
            f"{lr_name}: LR is {size_text(lr.shape)}, expected {want[1]}x{want[0]} "
            f"(HR {size_text(hr.shape)} / x{scale})"
        )
