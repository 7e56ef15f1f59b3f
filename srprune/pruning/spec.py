"""The pruning spec: which scheme, ratio and block size each layer gets; plain data, JSON/YAML.

Format (a dict, a JSON/YAML file, or inline JSON/YAML text)::

    {"default": {"scheme": "block", "ratio": 0.5, "block": [4, 8]},
     "layers": {"body.1.conv": {"scheme": "pattern", "ratio": 0.75, "entries": 4}},
     "skip": ["body.0.conv"]}

- A bare layer spec (`{"scheme": "block", "ratio": 0.5, "block": [4, 8]}`) means "default for all layers".
- `default` applies to every prunable layer not named in `layers` or `skip`. It is applied only where it
  fits: a default channel scheme skips layers whose output channels cannot be removed (they reach the
  model output or a PixelShuffle), a default pattern scheme skips non-3x3 layers, and a default block
  scheme skips layers whose weight matrix its block does not tile. A layer named explicitly must fit,
  or the spec is rejected with one line naming it.
- Layers are addressed by module name in the deployed model (`srprune prune MODEL --list`).

Fields of a layer spec (every scheme: `scheme`, `ratio` in [0, 1)):

| scheme | extra fields | unit of pruning |
| --- | --- | --- |
| `unstructured` | - | single weights (magnitude); accuracy reference, no speed expected |
| `block` | `block: [rows, cols]` (default [4, 8]) | one column of one rows x cols block of the (out x in*kh*kw) matrix |
| `pattern` | `entries` (nonzeros per kernel, default ceil(9*(1-ratio))), `patterns` (library size, default 8) | 3x3 kernels: a pattern per kernel plus removal of whole kernels |
| `channel` | - | output channels (with the matching input channels downstream) |

`ratio` is the fraction of the layer's weights set to zero, rounded to the scheme's unit; for masked schemes
it is measured on the layer after channel pruning has removed rows/columns. For `channel`, it is the fraction
of output channels removed (coupled layers, joined by residual adds, must agree on it).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from srprune.errors import InputError

SCHEMES = ("unstructured", "block", "pattern", "channel")
DEFAULT_BLOCK = (4, 8)
DEFAULT_PATTERNS = 8
_FIELDS = {
    "unstructured": {"scheme", "ratio"},
    "block": {"scheme", "ratio", "block"},
    "pattern": {"scheme", "ratio", "entries", "patterns"},
    "channel": {"scheme", "ratio"},
}


@dataclass(frozen=True)
class LayerSpec:
    """How one layer is pruned (resolved: every field filled in)."""

    scheme: str
    ratio: float
    block: tuple[int, int] | None = None  # block scheme: (rows, cols)
    entries: int | None = None  # pattern scheme: nonzeros per kept 3x3 kernel
    patterns: int | None = None  # pattern scheme: size of the layer's pattern library

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (None fields left out)."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        if self.block is not None:
            out["block"] = list(self.block)
        return out


@dataclass(frozen=True)
class PruneSpec:
    """A whole-model spec: a default layer spec, per-layer overrides, and layers to leave dense."""

    default: LayerSpec | None
    layers: dict[str, LayerSpec]
    skip: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data, readable back by `parse_spec`."""
        return {"default": self.default.to_dict() if self.default else None,
                "layers": {k: v.to_dict() for k, v in self.layers.items()}, "skip": list(self.skip)}


def _int_field(where: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"pruning spec {where}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_layer_spec(raw: Any, where: str) -> LayerSpec:
    """Validate one layer spec dict; `where` names it in errors (e.g. "layer 'body.0.conv'")."""
    if not isinstance(raw, dict):
        raise InputError(f"pruning spec {where}: must be a dict with 'scheme' and 'ratio', got {raw!r}")
    scheme = raw.get("scheme")
    if scheme not in SCHEMES:
        raise InputError(f"pruning spec {where}: scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    unknown = sorted(set(raw) - _FIELDS[scheme])
    if unknown:
        raise InputError(f"pruning spec {where}: scheme {scheme} has no field {unknown[0]!r} "
                         f"(fields: {', '.join(sorted(_FIELDS[scheme]))})")
    ratio = raw.get("ratio")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) \
            or not 0.0 <= ratio < 1.0:
        raise InputError(f"pruning spec {where}: ratio must be a number in [0, 1), got {ratio!r}")
    ratio = float(ratio)
    if scheme == "block":
        block = raw.get("block", list(DEFAULT_BLOCK))
        if not isinstance(block, (list, tuple)) or len(block) != 2:
            raise InputError(f"pruning spec {where}: block must be [rows, cols], got {block!r}")
        rows, cols = (_int_field(where, "block size", b, 1) for b in block)
        return LayerSpec(scheme, ratio, block=(rows, cols))
    if scheme == "pattern":
        patterns = _int_field(where, "patterns", raw.get("patterns", DEFAULT_PATTERNS), 1)
        default_entries = max(1, min(9, math.ceil(9 * (1.0 - ratio) - 1e-9)))
        entries = _int_field(where, "entries", raw.get("entries", default_entries), 1)
        if entries > 9:
            raise InputError(f"pruning spec {where}: entries must be <= 9 (a 3x3 kernel), got {entries}")
        if entries < 9 * (1.0 - ratio) - 1e-9:
            need = math.ceil(9 * (1 - ratio) - 1e-9)
            raise InputError(f"pruning spec {where}: {entries} entries per 3x3 kernel already prune "
                             f"{1 - entries / 9:.3f} > ratio {ratio}; use entries >= {need}")
        return LayerSpec(scheme, ratio, entries=entries, patterns=patterns)
    return LayerSpec(scheme, ratio)


def parse_spec(raw: Any) -> PruneSpec:
    """Validate a spec dict (either a whole-model spec or one bare layer spec used as the default)."""
    if isinstance(raw, PruneSpec):
        return raw
    if not isinstance(raw, dict):
        raise InputError(f"pruning spec must be a dict, got {type(raw).__name__}")
    if "scheme" in raw:
        return PruneSpec(parse_layer_spec(raw, "default"), {}, ())
    unknown = sorted(set(raw) - {"default", "layers", "skip"})
    if unknown:
        raise InputError(f"pruning spec has no key {unknown[0]!r} (keys: default, layers, skip; "
                         "or give one layer spec with 'scheme')")
    default = raw.get("default")
    default_spec = None if default is None else parse_layer_spec(default, "default")
    layers_raw = raw.get("layers") or {}
    if not isinstance(layers_raw, dict):
        raise InputError(f"pruning spec: layers must be a dict of layer name -> spec, got {layers_raw!r}")
    layers = {}
    for name, lraw in layers_raw.items():
        if not isinstance(name, str):
            raise InputError(f"pruning spec: layer names must be strings, got {name!r}")
        layers[name] = parse_layer_spec(lraw, f"layer {name!r}")
    skip = raw.get("skip") or []
    if not isinstance(skip, (list, tuple)) or not all(isinstance(s, str) for s in skip):
        raise InputError(f"pruning spec: skip must be a list of layer names, got {skip!r}")
    both = sorted(set(skip) & set(layers))
    if both:
        raise InputError(f"pruning spec: layer {both[0]!r} is both in layers and in skip")
    if default_spec is None and not layers:
        raise InputError("pruning spec prunes nothing: give a default or some layers")
    return PruneSpec(default_spec, layers, tuple(skip))


def load_spec(text_or_path: str | os.PathLike) -> PruneSpec:
    """Read a spec from a .json/.yaml/.yml file, or from inline JSON/YAML text."""
    import yaml

    source = str(text_or_path)
    path = Path(source)
    looks_inline = source.lstrip().startswith("{")
    if not looks_inline and path.suffix.lower() in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise InputError(f"pruning spec file {path} does not exist")
        source, what = path.read_text(), f"pruning spec file {path}"
    elif not looks_inline:
        raise InputError(f"pruning spec {source!r} is neither a .json/.yaml file nor inline JSON/YAML "
                         "starting with '{'")
    else:
        what = "inline pruning spec"
    try:
        raw = json.loads(source)
    except json.JSONDecodeError:
        try:
            raw = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{what} is not valid JSON or YAML ({first})") from None
    return parse_spec(raw)
