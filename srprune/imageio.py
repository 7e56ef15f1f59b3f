"""Reading and writing images: RGB uint8 in the API, OpenCV (BGR) only at this edge.

Grayscale images are replicated to three channels and RGBA images lose their
alpha (composited on nothing: the colour is kept); both are converted with a
note on stderr rather than refused, since users' folders often hold a few.
16-bit images are scaled to 8 bits.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import cv2
import numpy as np

from srcommon.atomic import atomic_path
from srprune.atomic import check_writable
from srprune.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def is_image_file(path: str | os.PathLike) -> bool:
    """True if the file name has an image suffix we read."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | os.PathLike, quiet: bool = False) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3; a clear InputError if that is impossible."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InputError(f"{path}: not a readable image")
    if img.dtype == np.uint16:
        img = (img.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2 or img.shape[2] == 1:
        if not quiet:
            click.echo(f"note: {path.name} is grayscale; converted to RGB", err=True)
        return np.ascontiguousarray(np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2))
    if img.shape[2] == 4:
        if not quiet:
            click.echo(f"note: {path.name} has an alpha channel; dropped it", err=True)
        img = img[..., :3]
    return np.ascontiguousarray(img[..., ::-1])


def write_image(path: str | os.PathLike, rgb: np.ndarray, force: bool = True) -> None:
    """Write an RGB uint8 image atomically; the format follows the file suffix."""
    path = check_writable(path, force)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"write_image expects RGB uint8 HxWx3, got {rgb.shape} {rgb.dtype}")
    if not is_image_file(path):
        raise InputError(f"{path}: unknown image suffix (use one of {', '.join(IMAGE_SUFFIXES)})")
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise InputError(f"{path}: OpenCV could not encode this image")
    with atomic_path(path) as tmp:
        buf.tofile(tmp)
