"""The on-disk cache of protocol LR images, keyed by HR content and scale.

MATLAB-bicubic downscaling of a large HR image takes up to a second, so LR
images made on the fly are kept. They go under the user's cache folder, never
into the dataset folder (we do not write into users' data unless asked: that is
what `srprune data prepare` is for). The key is a hash of the decoded HR pixels,
so renaming or re-encoding a file does not matter and editing it does.

A cache entry is trusted only when its sidecar `.json` names the same source (the HR hash, shape, scale and
protocol version) and the decoded LR pixels hash to the checksum recorded when it was written: a damaged,
replaced or hand-edited entry is recomputed, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from srcommon.atomic import write_json
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


def _hr_key(hr: np.ndarray) -> str:
    h = hashlib.sha256(PROTOCOL_VERSION)
    h.update(repr(hr.shape).encode())
    h.update(np.ascontiguousarray(hr).data)
    return h.hexdigest()


def pixels_sha256(img: np.ndarray) -> str:
    """Checksum of decoded pixels (shape included), independent of how the PNG was encoded."""
    h = hashlib.sha256(repr(img.shape).encode())
    h.update(np.ascontiguousarray(img).data)
    return h.hexdigest()


def lr_cache_path(hr: np.ndarray, scale: int) -> Path:
    """Where the LR image of this (mod-cropped) HR image at this scale is cached."""
    key = _hr_key(hr)
    return cache_dir() / "lr" / key[:2] / f"{key}_x{scale}.png"


def _source(hr: np.ndarray, scale: int) -> dict:
    return {"protocol": PROTOCOL_VERSION.decode(), "hr_sha256": _hr_key(hr), "hr_shape": list(hr.shape),
            "scale": scale}


def _read_entry(path: Path, hr: np.ndarray, scale: int) -> np.ndarray | None:
    """The cached LR image if the entry is intact and of this source, else None."""
    try:
        record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        if record.get("source") != _source(hr, scale):
            return None
        lr = read_image(path, quiet=True)
    except (InputError, OSError, ValueError, AttributeError):
        return None  # missing or damaged entry: recompute and replace it
    if lr.shape[:2] != expected_lr_shape(hr.shape, scale) or pixels_sha256(lr) != record.get("lr_sha256"):
        return None
    return lr


def cached_protocol_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """Protocol LR of a mod-cropped HR image, from the cache when a valid copy is there.

    A cache that cannot be read or written is not an error: the LR image is
    simply recomputed (the cache is an optimisation, never a source of truth).
    """
    path = lr_cache_path(hr, scale)
    lr = _read_entry(path, hr, scale)
    if lr is not None:
        return lr
    lr = protocol_lr(hr, scale)
    try:
        write_image(path, lr, force=True)
        write_json(path.with_suffix(".json"), {"source": _source(hr, scale), "lr_sha256": pixels_sha256(lr)})
    except (InputError, OSError):
        pass  # the cache is best effort: a read-only or full cache dir just means recomputing next time
    return lr
