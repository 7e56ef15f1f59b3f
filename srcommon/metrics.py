"""PSNR-Y as the project protocol measures it (BasicSR conventions): the one home of the formula.

The SR output is rounded to uint8 first, `crop_border` (= the scale) pixels are cut from every side, and
the Y channel of ITU-R BT.601 is computed in float64: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255
on [0, 255] RGB. srprune.metrics (numpy images, input checks, SSIM) and supernet.proxy (tensors) both
use these functions, so the search's proxy and the final evaluation cannot drift apart; it sits in
srcommon because supernet must not import srprune. numpy at module level; torch only inside
`to_uint8_image` (it receives a tensor, so torch is already loaded).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma (16..235 range) of an RGB image with values in [0, 255], as float64."""
    return img.astype(np.float64) @ Y_WEIGHTS + 16.0


def planes(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Two HxWx3 images cropped and converted to float Y (HxWx1) or RGB (HxWx3), as the protocol compares them."""
    if crop_border:
        sr = sr[crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        return rgb_to_y(sr)[..., None], rgb_to_y(hr)[..., None]
    return sr.astype(np.float64), hr.astype(np.float64)


def psnr_planes(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB (peak 255) of two float planes; inf when identical."""
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def to_uint8_image(x: Any) -> np.ndarray:
    """A 3xHxW (or 1x3xHxW) tensor in [0, 1] -> HxWx3 uint8, rounded as the protocol stores SR results."""
    x = x.detach().cpu()
    return (x.reshape(-1, *x.shape[-2:]).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def psnr_y(sr: Any, hr: Any, crop_border: int) -> float:
    """PSNR-Y in dB of one pair of 3xHxW (or 1x3xHxW) tensors in [0, 1]; inf when identical."""
    a, b = to_uint8_image(sr), to_uint8_image(hr)
    if a.shape != b.shape or a.shape[2] != 3:
        raise ValueError(f"expected two 3xHxW images of one size, got {tuple(sr.shape)} and {tuple(hr.shape)}")
    return psnr_planes(*planes(a, b, crop_border))
