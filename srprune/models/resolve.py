"""Turn a CLI model spec (a model file path or a registered name) into a module."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srprune.errors import InputError
from srprune.models.foreign import SUFFIXES as FOREIGN_SUFFIXES, is_foreign, load_foreign
from srprune.models.modelfile import load_model
from srprune.models.registry import build_model, is_registered, list_models

_MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", *FOREIGN_SUFFIXES)


@dataclass(frozen=True)
class ModelInfo:
    """Where a resolved model came from: `source` is "file" (trained weights) or "registry" (untrained)."""

    name: str
    scale: int
    config: dict[str, Any]
    source: str
    path: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.endswith(_MODEL_SUFFIXES)


def resolve_model(spec: str, scale: int | None, seed: int = 0) -> tuple[nn.Module, ModelInfo]:
    """Load a model file, or build a registered architecture with seeded untrained weights.

    A spec that looks like a path (has a '/' or a model-file suffix) is a file; otherwise a
    registered name wins, and an existing file of that name is the fallback. An ONNX or .pt2 file (a user's
    own network) is converted into the `graph` architecture (srprune.models.foreign). A name needs
    `scale`; a file brings its own, and an explicit different `scale` is an error rather than
    a silently wrong upscaler. Seeding does not disturb the global torch RNG.
    """
    if not isinstance(spec, str) or not spec:
        raise InputError(f"model must be a model file path or a registered name, got {spec!r}")
    if not _looks_like_path(spec) and is_registered(spec):
        if scale is None:
            raise InputError(f"--scale is required when the model is an architecture name ({spec})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(spec, scale)
        model.eval()
        arch = model.arch
        return model, ModelInfo(arch["name"], arch["scale"], arch["config"], "registry", seed=seed)
    path = Path(spec)
    if not path.exists():
        if _looks_like_path(spec):
            raise InputError(f"model file {spec} does not exist")
        raise InputError(f"unknown model {spec!r}: not a registered name ({', '.join(list_models())}) "
                         "and no such model file")
    model, info = load_foreign(path) if is_foreign(spec) else load_model(path)
    if scale is not None and scale != info["scale"]:
        raise InputError(f"model {spec} is for x{info['scale']}, not x{scale}")
    return model, ModelInfo(info["name"], info["scale"], info["config"], "file", str(path), info["meta"])
