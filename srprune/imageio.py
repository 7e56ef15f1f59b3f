"""Reading and writing images: RGB uint8 in the API, OpenCV (BGR) only at this edge.

Grayscale images are replicated to three channels and RGBA images lose their
alpha (composited on nothing: the colour is kept); both are converted with a
note on stderr rather than refused, since users' folders often hold a few.
16-bit images are scaled to 8 bits.

Every read first takes the image size from the file header (PIL reads only the header) and
refuses an image over the pixel limit before decoding: a 100000x100000 header must not make
OpenCV allocate 30 GB, or fail with its own error. The limit follows the machine's memory
(`pixel_limit`), and SRPRUNE_MAX_PIXELS (or `srprune upscale --max-pixels`) raises it.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from srcommon.atomic import atomic_path
from srprune.outputs import check_writable
from srprune.errors import InputError
from srcommon.progress import note

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# PIL is used only to read headers; its own decompression-bomb refusal would hide the size, and
# `pixel_limit` below is the one limit.
Image.MAX_IMAGE_PIXELS = None

MAX_PIXELS_ENV = "SRPRUNE_MAX_PIXELS"
MEMORY_FRACTION = 0.5  # of physical memory, for the images a command holds at once
# Bytes one pixel costs a command: the uint8 RGB image (3), its float32 tensor (12) and
# decoding/conversion copies; with MEMORY_FRACTION this gives about 480 Mpx on 23 GB.
BYTES_PER_PIXEL = 24
FALLBACK_MEMORY = 8 << 30  # where the OS does not say


def physical_memory() -> int:
    """Bytes of physical memory (sysconf), or 8 GiB where the OS does not tell."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return FALLBACK_MEMORY


def pixel_limit() -> int:
    """The most pixels an image may have: $SRPRUNE_MAX_PIXELS, else MEMORY_FRACTION of memory / BYTES_PER_PIXEL."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return int(physical_memory() * MEMORY_FRACTION) // BYTES_PER_PIXEL
    try:
        limit = int(float(text))
    except ValueError:
        limit = 0
    if limit < 1:
        raise InputError(f"{MAX_PIXELS_ENV} must be a positive number of pixels, got {text!r}")
    return limit


def check_pixels(what: str, width: int, height: int, limit: int | None = None,
                 raise_with: str = MAX_PIXELS_ENV) -> None:
    """Refuse a `width` x `height` image over the pixel limit, saying how to raise it."""
    limit = pixel_limit() if limit is None else limit
    if width * height > limit:
        raise InputError(f"{what}: {width}x{height} is {pixels_text(width * height)}, over the pixel limit of "
                         f"{pixels_text(limit)} (set from this machine's memory; raise it with {raise_with})")


def pixels_text(n: int) -> str:
    """A pixel count for messages: '526.6 Mpx', or '4000 px' when small."""
    return f"{n / 1e6:.1f} Mpx" if n >= 100_000 else f"{n} px"


def header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(H, W) from the file header without decoding the pixels; None if PIL cannot tell."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError, SyntaxError, EOFError):  # not an image PIL knows, or unreadable: decoding decides
        return None
    return int(h), int(w)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file: from the header, else by decoding it (within the pixel limit)."""
    return header_size(path) or read_image(path, quiet=True).shape[:2]


def is_image_file(path: str | os.PathLike) -> bool:
    """True if the file name has an image suffix we read."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _decode(path: Path) -> np.ndarray | None:
    """OpenCV's decode of the file's bytes (None if it is not an image); OpenCV's own errors as InputError."""
    data = np.fromfile(path, dtype=np.uint8)
    if not data.size:
        return None
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # e.g. its own pixel limit for a format PIL could not size
        raise InputError(f"{path}: OpenCV cannot decode it ({str(e).strip().splitlines()[-1][:160]})") from None


def read_image(path: str | os.PathLike, quiet: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3; a clear InputError if that is impossible.

    The pixel limit (`max_pixels`, default `pixel_limit()`) is checked from the header before decoding.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    size = header_size(path)
    if size is not None:
        check_pixels(str(path), size[1], size[0], max_pixels)
    img = _decode(path)
    if img is None:
        raise InputError(f"{path}: not a readable image")
    if img.dtype == np.uint16:
        img = (img.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2 or img.shape[2] == 1:
        if not quiet:
            note(f"note: {path.name} is grayscale; converted to RGB")
        return np.ascontiguousarray(np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2))
    if img.shape[2] == 4:
        if not quiet:
            note(f"note: {path.name} has an alpha channel; dropped it")
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
