"""Channel-pruned networks as plain data: a base architecture plus the new widths of some modules.

A channel-pruned model is the base model (same module names, same forward) with some convs and
per-channel modules rebuilt narrower. Its model file says
`{"name": "channel_pruned", "config": {"base": {"name", "config"}, "shapes": {module: [out, in] | [n]}}}`,
so any architecture whose forward does not hard-code widths can be channel-pruned and reloaded
without registering a new class per architecture. Importing this module registers the name.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from srprune.errors import InputError
from srprune.models.registry import build_model, register

NAME = "channel_pruned"


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
        getattr(parent, attr)
    except AttributeError:
        raise InputError(f"model {NAME}: the base model has no module {name!r}") from None
    return parent, attr


def resized(mod: nn.Module, dims: list[int], name: str) -> nn.Module:
    """A fresh module like `mod` with new channel counts (weights uninitialised for loading)."""
    if isinstance(mod, nn.Conv2d) and len(dims) == 2 and mod.groups == 1:
        out_c, in_c = dims
        return nn.Conv2d(in_c, out_c, mod.kernel_size, mod.stride, mod.padding, mod.dilation, 1,
                         mod.bias is not None, mod.padding_mode)
    if isinstance(mod, nn.ConvTranspose2d) and len(dims) == 2 and mod.groups == 1:
        out_c, in_c = dims
        return nn.ConvTranspose2d(in_c, out_c, mod.kernel_size, mod.stride, mod.padding, mod.output_padding, 1,
                                  mod.bias is not None, mod.dilation, mod.padding_mode)
    if isinstance(mod, nn.PReLU) and len(dims) == 1:
        return nn.PReLU(dims[0])
    raise InputError(f"model {NAME}: cannot resize {type(mod).__name__} {name!r} to {dims}")


def resize_modules(model: nn.Module, shapes: dict[str, list[int]]) -> nn.Module:
    """Replace each named module of `model` by a resized copy (in place); returns `model`."""
    for name, dims in shapes.items():
        if not isinstance(dims, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool)
                                                           and d >= 1 for d in dims):
            raise InputError(f"model {NAME}: shape of {name!r} must be a list of positive integers, got {dims!r}")
        parent, attr = _parent(model, name)
        setattr(parent, attr, resized(getattr(parent, attr), list(dims), name))
    return model


@register(NAME)
def channel_pruned(scale: int, base: dict, shapes: dict) -> nn.Module:
    """Rebuild a channel-pruned network: build `base` for `scale`, then narrow the modules in `shapes`."""
    if not (isinstance(base, dict) and isinstance(base.get("name"), str) and isinstance(base.get("config"), dict)):
        raise InputError(f"model {NAME}: base must be {{'name': str, 'config': dict}}, got {base!r}")
    if base["name"] == NAME:
        raise InputError(f"model {NAME}: base cannot itself be {NAME} (widths are recorded on the original base)")
    if not isinstance(shapes, dict):
        raise InputError(f"model {NAME}: shapes must be a dict of module name -> widths")
    model = build_model(base["name"], scale, **base["config"])
    return resize_modules(model, shapes)


def base_arch(arch: dict[str, Any]) -> dict[str, Any]:
    """The {"name", "config"} of the unpruned architecture behind `arch` (itself if not channel-pruned)."""
    if arch["name"] == NAME:
        return dict(arch["config"]["base"])
    return {"name": arch["name"], "config": dict(arch["config"])}
