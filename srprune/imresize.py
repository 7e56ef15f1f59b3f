"""MATLAB-compatible bicubic resize: the degradation of the SR benchmark protocol.

SR papers make LR images with MATLAB's `imresize(img, 1/s, 'bicubic')`: a Keys
cubic kernel (a = -0.5), antialiasing when shrinking (the kernel is widened by
1/scale), symmetric padding at the borders and `ceil(scale * size)` output
sizes. OpenCV, PIL and torch bicubic differ from it by tenths of a dB, so the
protocol uses this one everywhere.

Each axis is resized by a dense (out x in) weight matrix built once per
(size, scale) pair, so the same code serves numpy images and torch tensors and
is differentiable in torch.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from srprune.errors import InputError


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's `cubic`)."""
    absx = np.abs(x)
    absx2 = absx**2
    absx3 = absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2
    ) * ((absx > 1) & (absx <= 2))


@functools.lru_cache(maxsize=64)
def resize_matrix(in_length: int, out_length: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """The (out_length x in_length) matrix that resizes one axis as MATLAB does.

    Border pixels are handled by MATLAB's symmetric padding, folded into the
    matrix, so applying it needs no padding at all.
    """
    kernel_width = 4.0
    shrink_aa = scale < 1 and antialiasing
    if shrink_aa:
        kernel_width /= scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if shrink_aa else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric padding: index i outside [1, n] maps to its mirror image.
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    cols = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_length), taps), cols.ravel()), weights.ravel())
    return matrix


def output_size(in_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """MATLAB's output size for a scale factor: ceil(scale * size) per axis."""
    return (int(math.ceil(in_hw[0] * scale)), int(math.ceil(in_hw[1] * scale)))


def _plan(in_hw: tuple[int, int], scale: float | None, size: tuple[int, int] | None) -> tuple[tuple[int, int], tuple[float, float]]:
    """Output size and per-axis scale from either a scale or an explicit (h, w) size."""
    if (scale is None) == (size is None):
        raise InputError("imresize needs exactly one of scale or size")
    if size is not None:
        out_hw = (int(size[0]), int(size[1]))
        if min(out_hw) < 1:
            raise InputError(f"imresize output size must be positive, got {out_hw}")
        return out_hw, (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    if scale <= 0:
        raise InputError(f"imresize scale must be positive, got {scale}")
    return output_size(in_hw, scale), (float(scale), float(scale))


def imresize(img: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None,
             antialiasing: bool = True) -> np.ndarray:
    """Resize an HxW or HxWxC image like MATLAB's bicubic `imresize`.

    Accepts uint8 (values 0..255) or float input and returns float64 without
    rounding or clipping, in the input's value range; use `to_uint8` to get
    the rounded image that the benchmark protocol stores.
    """
    if img.ndim not in (2, 3):
        raise InputError(f"imresize expects an HxW or HxWxC image, got shape {img.shape}")
    in_hw = (img.shape[0], img.shape[1])
    out_hw, (sh, sw) = _plan(in_hw, scale, size)
    rows = resize_matrix(in_hw[0], out_hw[0], sh, antialiasing)
    cols = resize_matrix(in_hw[1], out_hw[1], sw, antialiasing)
    data = img.astype(np.float64)
    if data.ndim == 2:
        return rows @ data @ cols.T
    return np.einsum("oh,hwc,pw->opc", rows, data, cols, optimize=True)


def imresize_tensor(x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None,
                    antialiasing: bool = True) -> torch.Tensor:
    """Resize an NCHW (or CHW) float tensor like MATLAB's bicubic `imresize` (differentiable)."""
    if x.ndim not in (3, 4) or not x.is_floating_point():
        raise InputError(f"imresize_tensor expects a float CHW or NCHW tensor, got {tuple(x.shape)} {x.dtype}")
    in_hw = (x.shape[-2], x.shape[-1])
    out_hw, (sh, sw) = _plan(in_hw, scale, size)
    rows = torch.from_numpy(resize_matrix(in_hw[0], out_hw[0], sh, antialiasing)).to(x.device, x.dtype)
    cols = torch.from_numpy(resize_matrix(in_hw[1], out_hw[1], sw, antialiasing)).to(x.device, x.dtype)
    return torch.matmul(torch.matmul(rows, x), cols.T)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Round (numpy's half-to-even) and clip to a uint8 image, as BasicSR stores results."""
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop H and W down to multiples of `scale` (top-left kept), as the protocol does to HR images."""
    h, w = img.shape[0], img.shape[1]
    return img[: h - h % scale, : w - w % scale]
