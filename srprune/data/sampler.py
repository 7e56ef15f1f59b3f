"""`PatchSampler`: seeded random HR/LR training patches with flips and 90-degree rotations.

Each patch picks an image uniformly, an LR crop position uniformly, and (with
`augment`) one of the 8 symmetries of the square: a vertical flip, a horizontal
flip and a transpose (the transpose composed with the flips gives the 90-degree
rotations), as in EDSR/BasicSR. The HR crop is the LR crop times the scale and
gets the same symmetry, so pairs stay aligned pixel for pixel.

Images are kept as uint8 (not float) arrays: a float32 copy of DIV2K would take
about 26 GB, while converting a 16-patch batch to float costs well under a
millisecond (benchmarks/sampler.py measures it). All randomness comes from one
numpy PCG64 generator seeded once; `state_dict()` captures it, so a resumed
training run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from srprune.data.pairs import ImagePair, check_pair, check_scale, size_text
from srprune.errors import InputError

STATE_FORMAT = "srprune-patch-sampler"


@dataclass(frozen=True)
class PatchSpec:
    """Where one patch comes from: image index, LR top-left (y, x) and its symmetry."""

    image: int
    y: int
    x: int
    vflip: bool
    hflip: bool
    transpose: bool


def apply_symmetry(patch: np.ndarray, vflip: bool, hflip: bool, transpose: bool) -> np.ndarray:
    """Flip rows, then columns, then swap the axes of an HxWxC view (no copy)."""
    if vflip:
        patch = patch[::-1]
    if hflip:
        patch = patch[:, ::-1]
    if transpose:
        patch = patch.transpose(1, 0, 2)
    return patch


def _positive_int(value: Any, what: str) -> int:
    """An int >= 1 from user input, or an InputError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise InputError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


class PatchSampler:
    """An endless, seeded iterator of (lr, hr) float32 NCHW batches in [0, 1]."""

    def __init__(self, pairs: Sequence[ImagePair], scale: int, patch_size: int, batch_size: int,
                 seed: int, augment: bool = True) -> None:
        self.scale = check_scale(scale)
        self.patch_size = _positive_int(patch_size, "patch_size")
        self.batch_size = _positive_int(batch_size, "batch_size")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.augment = bool(augment)
        if not pairs:
            raise InputError("the patch sampler needs at least one image pair")
        p = self.patch_size
        for pair in pairs:
            if pair.hr.dtype != np.uint8 or pair.lr.dtype != np.uint8 or pair.lr.ndim != 3 or pair.lr.shape[2] != 3:
                raise InputError(f"{pair.name}: expected RGB uint8 images, got LR {pair.lr.shape} {pair.lr.dtype}")
            check_pair(pair.hr, pair.lr, self.scale, pair.name)
            if pair.hr.shape[0] != pair.lr.shape[0] * self.scale or pair.hr.shape[1] != pair.lr.shape[1] * self.scale:
                raise InputError(f"{pair.name}: HR {size_text(pair.hr.shape)} is not LR x{self.scale} (mod-crop it)")
            if pair.lr.shape[0] < p or pair.lr.shape[1] < p:
                raise InputError(
                    f"{pair.name}: LR image is {size_text(pair.lr.shape)}, smaller than the {p}x{p} patch"
                )
        self.names = [pair.name for pair in pairs]
        self._lr = [np.ascontiguousarray(pair.lr) for pair in pairs]
        self._hr = [np.ascontiguousarray(pair.hr) for pair in pairs]
        # Number of valid top-left positions per image (rows, cols), for drawing crops.
        self._ny = np.array([a.shape[0] - p + 1 for a in self._lr], dtype=np.int64)
        self._nx = np.array([a.shape[1] - p + 1 for a in self._lr], dtype=np.int64)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self.batches = 0

    def _fingerprint(self) -> dict[str, Any]:
        """What a saved state must match to be resumable here: config and image shapes."""
        shapes = hashlib.sha256(repr([(n, a.shape) for n, a in zip(self.names, self._lr)]).encode()).hexdigest()
        return {"scale": self.scale, "patch_size": self.patch_size, "batch_size": self.batch_size,
                "augment": self.augment, "images": len(self._lr), "shapes": shapes[:16]}

    def draw(self) -> list[PatchSpec]:
        """Draw the specs of the next batch (advances the random state by one batch)."""
        b = self.batch_size
        idx = self._rng.integers(0, len(self._lr), size=b)
        ys = self._rng.integers(0, self._ny[idx])
        xs = self._rng.integers(0, self._nx[idx])
        flips = self._rng.integers(0, 2, size=(b, 3)).astype(bool) if self.augment else np.zeros((b, 3), bool)
        self.batches += 1
        return [PatchSpec(int(i), int(y), int(x), bool(f[0]), bool(f[1]), bool(f[2]))
                for i, y, x, f in zip(idx, ys, xs, flips)]

    def assemble(self, specs: Sequence[PatchSpec]) -> tuple[torch.Tensor, torch.Tensor]:
        """Cut and transform the patches of `specs` into (lr, hr) float32 NCHW batches in [0, 1]."""
        p, s = self.patch_size, self.scale
        lr = np.empty((len(specs), p, p, 3), dtype=np.uint8)
        hr = np.empty((len(specs), p * s, p * s, 3), dtype=np.uint8)
        for k, sp in enumerate(specs):
            lr_src = self._lr[sp.image][sp.y: sp.y + p, sp.x: sp.x + p]
            hr_src = self._hr[sp.image][sp.y * s: (sp.y + p) * s, sp.x * s: (sp.x + p) * s]
            lr[k] = apply_symmetry(lr_src, sp.vflip, sp.hflip, sp.transpose)
            hr[k] = apply_symmetry(hr_src, sp.vflip, sp.hflip, sp.transpose)
        return _to_float_nchw(lr), _to_float_nchw(hr)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.assemble(self.draw())

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state (torch.save / JSON friendly) to resume the exact batch sequence."""
        return {"format": STATE_FORMAT, "version": 1, "seed": self.seed, "batches": self.batches,
                "rng": self._rng.bit_generator.state, "config": self._fingerprint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from `state_dict()`; refuses a state saved for other data or settings."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("version") != 1:
            raise InputError("not a patch sampler state (expected the dict from PatchSampler.state_dict())")
        mine = self._fingerprint()
        theirs = state.get("config", {})
        for key, value in mine.items():
            if theirs.get(key) != value:
                raise InputError(f"patch sampler state was saved with {key}={theirs.get(key)!r}, this sampler has {value!r}")
        rng = np.random.Generator(np.random.PCG64())
        try:
            rng.bit_generator.state = state["rng"]
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"patch sampler state has a bad random state ({e})") from e
        self._rng = rng
        self.seed = int(state["seed"])
        self.batches = int(state["batches"])


def _to_float_nchw(batch: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> contiguous float32 NCHW in [0, 1]."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
