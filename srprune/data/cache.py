"""The on-disk cache of protocol LR images, keyed by HR content and scale.

MATLAB-bicubic downscaling of a large HR image takes up to a second, so LR
images made on the fly are kept. They go under the user's cache folder, never
into the dataset folder (we do not write into users' data unless asked: that is
what `srprune data prepare` is for). The key is a hash of the decoded HR pixels,
so renaming or re-encoding a file does not matter and editing it does.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from srprune.errors import InputError
from srprune.imageio import read_image, write_image
from srprune.data.pairs import expected_lr_shape, protocol_lr

# Bump when the protocol changes, so old cached LR images are not reused.
PROTOCOL_VERSION = b"srprune-lr-matlab-bicubic-v1"


def cache_dir() -> Path:
    """$SRPRUNE_CACHE_DIR, else $XDG_CACHE_HOME/srprune, else ~/.cache/srprune."""
    if os.environ.get("SRPRUNE_CACHE_DIR"):
        return Path(os.environ["SRPRUNE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "srprune"


def tuning_dir() -> Path:
    """Where MetaSchedule databases live (compiler.tune): shared by every run and model."""
    return cache_dir() / "tuning"


def lr_cache_path(hr: np.ndarray, scale: int) -> Path:
    """Where the LR image of this (mod-cropped) HR image at this scale is cached."""
    h = hashlib.sha256(PROTOCOL_VERSION)
    h.update(repr(hr.shape).encode())
    h.update(np.ascontiguousarray(hr).data)
    key = h.hexdigest()
    return cache_dir() / "lr" / key[:2] / f"{key}_x{scale}.png"


def cached_protocol_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """Protocol LR of a mod-cropped HR image, from the cache when a valid copy is there.

    A cache that cannot be read or written is not an error: the LR image is
    simply recomputed (the cache is an optimisation, never a source of truth).
    """
    path = lr_cache_path(hr, scale)
    want = expected_lr_shape(hr.shape, scale)
    if path.is_file():
        try:
            lr = read_image(path, quiet=True)
            if lr.shape[:2] == want:
                return lr
        except (InputError, OSError):
            pass  # damaged cache entry: recompute and replace it
    lr = protocol_lr(hr, scale)
    try:
        write_image(path, lr)
    except (InputError, OSError):
        pass  # the cache is best effort: a read-only or full cache dir just means recomputing next time
    return lr
