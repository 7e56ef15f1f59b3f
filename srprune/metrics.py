"""PSNR and SSIM as the SR literature reports them (BasicSR 1.4.2 conventions).

Both compare uint8 RGB images (the SR output rounded to uint8 first), crop
`crop_border` pixels (= the scale) from every side, and by default work on the
Y channel of ITU-R BT.601 YCbCr computed in float:
Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 with RGB in [0, 255]. The PSNR-Y formula itself lives in
srcommon.metrics (shared with supernet's proxy); this module adds the input checks and SSIM.
SSIM uses an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255,
and averages only over positions where the window fits (`valid` filtering).
"""

from __future__ import annotations

import cv2
import numpy as np

from srcommon.metrics import planes, psnr_planes, rgb_to_y
from srprune.errors import InputError

__all__ = ["psnr", "rgb_to_y", "ssim"]


def _prepare(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, crop the border and convert to float Y (HxWx1) or RGB (HxWx3)."""
    if sr.shape != hr.shape:
        raise InputError(f"image shapes differ: {sr.shape} vs {hr.shape}")
    if sr.ndim != 3 or sr.shape[2] != 3:
        raise InputError(f"expected HxWx3 RGB images, got shape {sr.shape}")
    if crop_border < 0 or 2 * crop_border >= min(sr.shape[:2]):
        raise InputError(f"crop_border {crop_border} leaves nothing of a {sr.shape[1]}x{sr.shape[0]} image")
    return planes(sr, hr, crop_border, y_channel)


def psnr(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (peak 255); inf for identical images."""
    return psnr_planes(*_prepare(sr, hr, crop_border, y_channel))


def _gaussian_window() -> np.ndarray:
    """The 11x11 Gaussian window (sigma 1.5) of Wang et al. 2004, normalised to sum 1."""
    k = cv2.getGaussianKernel(11, 1.5)
    return k @ k.T


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of one float plane in [0, 255] over the `valid` window positions."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    window = _gaussian_window()

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, window)[5:-5, 5:-5]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool = True) -> float:
    """Structural similarity; for RGB the mean over the three channels."""
    a, b = _prepare(sr, hr, crop_border, y_channel)
    if min(a.shape[:2]) < 11:
        raise InputError(f"image of {a.shape[1]}x{a.shape[0]} after cropping is smaller than the 11x11 SSIM window")
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))
