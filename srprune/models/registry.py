"""Registry of SR architectures by name, so a model file or a CLI argument can name one.

A model file stores only plain data (`{"name", "scale", "config"}`); the registry turns
that back into a module. Reference models register here, and later the supernet-extracted
and pruned networks register through the same `register` decorator.
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from srprune.errors import InputError

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    scales: tuple[int, ...] | None
    defaults: dict[str, Any]
    required: tuple[str, ...]
    open_config: bool  # the factory takes **kwargs, so any key may be valid


_REGISTRY: dict[str, _Entry] = {}


def _inspect_factory(name: str, factory: Factory) -> tuple[dict[str, Any], tuple[str, ...], bool]:
    """Read a factory's settings (everything after `scale`) and their defaults from its signature."""
    params = list(inspect.signature(factory).parameters.values())
    if not params or params[0].name != "scale":
        raise TypeError(f"factory for model {name!r} must take `scale` as its first parameter")
    defaults: dict[str, Any] = {}
    required: list[str] = []
    open_config = False
    for p in params[1:]:
        if p.kind is p.VAR_KEYWORD:
            open_config = True
        elif p.kind is p.VAR_POSITIONAL:
            continue
        elif p.default is p.empty:
            required.append(p.name)
        else:
            defaults[p.name] = p.default
    return defaults, tuple(required), open_config


def register(name: str, scales: tuple[int, ...] | None = None) -> Callable[[Factory], Factory]:
    """Register a factory `factory(scale, **config) -> nn.Module` (a class or a function) under `name`.

    `scales` restricts the integer scales the architecture supports (None: any scale >= 1).
    Registering a name twice is a programming error (ValueError), not user input.
    """
    if not isinstance(name, str) or not name or any(c.isspace() for c in name) or "/" in name:
        raise ValueError(f"model name must be a non-empty string without spaces or '/', got {name!r}")

    def decorator(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        defaults, required, open_config = _inspect_factory(name, factory)
        for key, value in defaults.items():
            _check_plain(value, f"default of setting {key!r} of model {name!r}", error=TypeError)
        _REGISTRY[name] = _Entry(factory, tuple(scales) if scales else None, defaults, required, open_config)
        return factory

    return decorator


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_REGISTRY)


def is_registered(name: str) -> bool:
    """True if `name` is a registered architecture."""
    return isinstance(name, str) and name in _REGISTRY


def model_defaults(name: str) -> dict[str, Any]:
    """The default config of a registered architecture (a copy)."""
    return copy.deepcopy(_entry(name).defaults)


def _entry(name: str) -> _Entry:
    if not isinstance(name, str) or name not in _REGISTRY:
        known = ", ".join(list_models()) or "none"
        raise InputError(f"unknown model {name!r} (known: {known})")
    return _REGISTRY[name]


def _check_plain(value: Any, what: str, error: type[Exception] = InputError) -> Any:
    """Return `value` as JSON-like plain data (tuples become lists), or raise `error`.

    Model files are loaded with `weights_only=True`, which accepts only plain containers
    and scalars, so an arch config or meta dict must be made of nothing else.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise error(f"{what} must be finite, got {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        return [_check_plain(v, what, error) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise error(f"{what} has a non-string key {k!r}")
            out[k] = _check_plain(v, what, error)
        return out
    raise error(f"{what} must be plain data (numbers, strings, lists, dicts), got {type(value).__name__}")


def check_plain(value: Any, what: str) -> Any:
    """Public form of the plain-data check used for configs and model-file meta (raises InputError)."""
    return _check_plain(value, what)


def check_scale(name: str, scale: Any) -> int:
    """Validate an integer upscaling factor for architecture `name`."""
    entry = _entry(name)
    if isinstance(scale, bool) or not isinstance(scale, int):
        raise InputError(f"model {name}: scale must be an integer, got {scale!r}")
    if entry.scales is not None and scale not in entry.scales:
        allowed = ", ".join(str(s) for s in entry.scales)
        raise InputError(f"model {name} supports scales {allowed}, not {scale}")
    if scale < 1:
        raise InputError(f"model {name}: scale must be >= 1, got {scale}")
    return scale


def build_model(name: str, scale: int, **config: Any) -> nn.Module:
    """Build architecture `name` for `scale` with `config` overriding its defaults.

    The module gets `.arch = {"name", "scale", "config"}` (config with every default written
    out) so it can be saved as a model file and rebuilt exactly, and `.scale`.
    """
    entry = _entry(name)
    scale = check_scale(name, scale)
    if not entry.open_config:
        unknown = sorted(set(config) - set(entry.defaults) - set(entry.required))
        if unknown:
            settings = ", ".join(list(entry.required) + list(entry.defaults)) or "none"
            raise InputError(f"model {name} has no setting {unknown[0]!r} (settings: {settings})")
    missing = [k for k in entry.required if k not in config]
    if missing:
        raise InputError(f"model {name} needs setting {missing[0]!r}")
    full = {**copy.deepcopy(entry.defaults), **_check_plain(config, f"config of model {name}")}
    model = entry.factory(scale, **full)
    if not isinstance(model, nn.Module):
        raise TypeError(f"factory of model {name!r} returned {type(model).__name__}, not an nn.Module")
    model.scale = scale
    model.arch = {"name": name, "scale": scale, "config": full}
    return model


def deploy(model: nn.Module) -> nn.Module:
    """Return the plain-conv inference form of `model` (itself if it has no training-only form).

    Contract for architectures with a training-only form (e.g. ECBSR's multi-branch blocks):
    they define `deploy() -> nn.Module` and a boolean `deployed` setting, and `deploy()`
    returns the same architecture built with `deployed=True`. The returned module keeps the
    input's device, dtype and train/eval mode, and its `.arch` says `deployed: True`, so a
    deployed model can be saved and reloaded like any other.
    """
    method = getattr(model, "deploy", None)
    if not callable(method):
        return model
    out = method()
    if out is model:
        return model
    ref = next(model.parameters(), None)
    if ref is not None:
        out = out.to(device=ref.device, dtype=ref.dtype)
    out.train(model.training)
    arch = getattr(model, "arch", None)
    if isinstance(arch, dict):
        out.arch = {"name": arch["name"], "scale": arch["scale"],
                    "config": {**copy.deepcopy(arch["config"]), "deployed": True}}
    if not hasattr(out, "scale") and hasattr(model, "scale"):
        out.scale = model.scale
    return out
