"""Validation of model settings, so a bad config fails with one clear line instead of deep in torch."""

from __future__ import annotations

from typing import Any

from torch import nn

from srprune.errors import InputError


def positive_int(model: str, key: str, value: Any, minimum: int = 1) -> int:
    """Return `value` if it is an int >= `minimum`, else raise InputError naming model and setting."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"model {model}: setting {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def positive_float(model: str, key: str, value: Any) -> float:
    """Return `value` as float if it is a number > 0, else raise InputError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InputError(f"model {model}: setting {key!r} must be a number > 0, got {value!r}")
    return float(value)


def flag(model: str, key: str, value: Any) -> bool:
    """Return `value` if it is a bool, else raise InputError."""
    if not isinstance(value, bool):
        raise InputError(f"model {model}: setting {key!r} must be true or false, got {value!r}")
    return value


def choice(model: str, key: str, value: Any, options: tuple[str, ...]) -> str:
    """Return `value` if it is one of `options`, else raise InputError listing them."""
    if value not in options:
        raise InputError(f"model {model}: setting {key!r} must be one of {', '.join(options)}, got {value!r}")
    return value


def activation(kind: str, channels: int) -> nn.Module:
    """Build an activation by name; PReLU is per channel, as in FSRCNN and ECBSR."""
    if kind == "prelu":
        return nn.PReLU(num_parameters=channels)
    if kind == "relu":
        return nn.ReLU(inplace=False)
    if kind == "tanh":
        return nn.Tanh()
    if kind == "linear":
        return nn.Identity()
    raise ValueError(f"unknown activation {kind!r}")
