"""Datasets, the training patch sampler and the LR-set builder behind `srprune data prepare`.

- `load_dataset(spec, scale, split)`: 'builtin', a folder of HR images, a DIV2K
  root or a benchmark set folder -> list of `ImagePair` (RGB uint8, HR mod-cropped,
  LR by the MATLAB-bicubic protocol unless the dataset ships its own).
- `PatchSampler`: seeded, resumable random (lr, hr) patch batches with flips/rotations.
- `scan` / `build` / `format_table`: check a data root and build missing LR sets.
"""

from srprune.data.builtin import TRAIN_NAMES, VAL_NAMES, builtin_image, builtin_names
from srprune.data.cache import cache_dir, cached_protocol_lr
from srprune.data.datasets import load_dataset
from srprune.data.pairs import ImagePair, check_pair, prepare_hr, protocol_lr
from srprune.data.prepare import build, format_table, parse_scales, scan
from srprune.data.sampler import PatchSampler, PatchSpec, apply_symmetry

__all__ = [
    "ImagePair",
    "PatchSampler",
    "PatchSpec",
    "TRAIN_NAMES",
    "VAL_NAMES",
    "apply_symmetry",
    "build",
    "builtin_image",
    "builtin_names",
    "cache_dir",
    "cached_protocol_lr",
    "check_pair",
    "format_table",
    "load_dataset",
    "parse_scales",
    "prepare_hr",
    "protocol_lr",
    "scan",
]
