"""Apply a pruning spec to a deployed model: validate it, compute and hold masks, and compact at the end.

Masks are bool tensors per parameter (True = kept). During fine-tuning they are re-applied after
every optimizer step (`apply`), so pruned weights stay exactly zero. Channel pruning is a mask
too while training (producer rows and biases, consumer input columns); `finalize` then cuts
those channels out into narrower dense convs. Masked schemes (unstructured/block/pattern) keep
the dense architecture with exact zeros, so the compiler can re-derive their structure from the
zero pattern and the spec recorded in the model file's meta.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from srprune.errors import InputError
from srprune.models.registry import build_model
from srprune.models import channel_pruned
from srprune.pruning.graph import ChannelGroup, channel_graph
from srprune.pruning.layers import LayerInfo, prunable_layers
from srprune.pruning.schemes import (block_mask, block_structure, check_block, pattern_mask, unit_norms,
                                     unstructured_mask)
from srprune.pruning.spec import LayerSpec, PruneSpec, parse_spec


@dataclass
class _GroupPlan:
    group: ChannelGroup
    ratio: float

    @property
    def n_prune(self) -> int:
        return int(round(self.ratio * self.group.size))


class Pruner:
    """Holds a validated spec for one model and that model's masks.

    `model` must be the deployed (plain-conv) form; it is pruned in place.
    """

    def __init__(self, model: nn.Module, spec: PruneSpec | dict) -> None:
        self.model = model
        self.spec = parse_spec(spec)
        self.graph = channel_graph(model)
        self.info: dict[str, LayerInfo] = prunable_layers(model, self.graph)
        self.modules = dict(model.named_modules())
        self.layers = self._resolve()
        self.groups = self._channel_groups()
        self.channel_keep: dict[int, torch.Tensor] | None = None  # chosen once, at the first update
        self.masks: dict[str, torch.Tensor] = {}
        self.libraries: dict[str, list[int]] = {}
        self._check_blocks()
        if not self.layers:
            raise InputError("pruning spec prunes no layer of this model (see `srprune prune MODEL --list`)")

    # ---- validation -------------------------------------------------------------------------
    def _resolve(self) -> dict[str, LayerSpec]:
        known = ", ".join(self.info) or "none"
        for name in list(self.spec.layers) + list(self.spec.skip):
            if name not in self.info:
                raise InputError(f"pruning spec names layer {name!r}, which is not a prunable conv of this "
                                 f"model (layers: {known})")
        resolved: dict[str, LayerSpec] = {}
        for name, li in self.info.items():
            if name in self.spec.skip:
                continue
            explicit = name in self.spec.layers
            ls = self.spec.layers[name] if explicit else self.spec.default
            if ls is None:
                continue
            if ls.scheme == "channel" and not li.channel_prunable:
                if explicit:
                    raise InputError(f"pruning spec layer {name!r}: its output channels cannot be removed "
                                     f"({li.reason})")
                continue
            if ls.scheme == "pattern" and li.kernel != (3, 3):
                if explicit:
                    raise InputError(f"pruning spec layer {name!r}: pattern pruning needs 3x3 kernels, "
                                     f"this one is {li.kernel[0]}x{li.kernel[1]}")
                continue
            resolved[name] = ls
        return resolved

    def _channel_groups(self) -> dict[int, _GroupPlan]:
        plans: dict[int, _GroupPlan] = {}
        for gid, grp in self.graph.groups.items():
            chan = {p: self.layers[p].ratio for p in grp.producers
                    if p in self.layers and self.layers[p].scheme == "channel"}
            if not chan:
                continue
            others = [p for p in grp.producers if p not in chan]
            if others:
                raise InputError(f"pruning spec: layers {', '.join(sorted(chan))} and {others[0]!r} are coupled "
                                 "by a residual add, so they must all use the channel scheme with one ratio")
            if len(set(chan.values())) > 1:
                raise InputError(f"pruning spec: coupled layers {', '.join(sorted(chan))} need the same channel "
                                 f"ratio, got {sorted(set(chan.values()))}")
            plans[gid] = _GroupPlan(grp, next(iter(chan.values())))
        return plans

    def kept_shape(self, name: str) -> tuple[int, int, int, int]:
        """The conv's weight shape after channel compaction."""
        w = self.modules[name].weight
        out_c, in_c = w.shape[0], w.shape[1]
        gid_out, gid_in = self.graph.out_group.get(name), self.graph.in_group.get(name)
        if gid_out in self.groups:
            out_c -= self.groups[gid_out].n_prune
        if gid_in in self.groups:
            in_c -= self.groups[gid_in].n_prune
        return (out_c, in_c, w.shape[2], w.shape[3])

    def _check_blocks(self) -> None:
        """Explicit layers must be tiled by their block; the default skips layers it does not tile."""
        for name, ls in list(self.layers.items()):
            if ls.scheme == "block":
                shape = self.kept_shape(name)
                try:
                    check_block(shape, ls.block, name)
                except InputError:
                    if name not in self.spec.layers:
                        del self.layers[name]
                        continue
                    rows, cols = shape[0], shape[1] * shape[2] * shape[3]
                    raise InputError(f"pruning spec layer {name!r}: block {ls.block[0]}x{ls.block[1]} does not "
                                     f"divide its {rows}x{cols} weight matrix") from None

    # ---- masks ------------------------------------------------------------------------------
    def _select_channels(self) -> dict[int, torch.Tensor]:
        """Per channel group, the kept channel indices: lowest group L2 norm (over all producers) goes."""
        keep = {}
        for gid, plan in self.groups.items():
            score = torch.zeros(plan.group.size)
            for p in plan.group.producers:
                mod = self.modules[p]
                w = mod.weight.detach().float()
                if isinstance(mod, nn.ConvTranspose2d):  # weight is (in, out, kh, kw)
                    w = w.transpose(0, 1)
                rows = w.reshape(w.shape[0], -1)
                score += rows.pow(2).sum(dim=1)
                if mod.bias is not None:
                    score += mod.bias.detach().float().pow(2)
            order = torch.argsort(score, stable=True)
            keep[gid] = torch.sort(order[plan.n_prune:]).values
        return keep

    def _channel_masks(self) -> dict[str, torch.Tensor]:
        masks: dict[str, torch.Tensor] = {}

        def get(pname: str, param: torch.Tensor) -> torch.Tensor:
            return masks.setdefault(pname, torch.ones_like(param, dtype=torch.bool))

        for gid, keep in self.channel_keep.items():
            plan = self.groups[gid]
            drop = torch.ones(plan.group.size, dtype=torch.bool)
            drop[keep] = False
            for p in plan.group.producers:
                mod = self.modules[p]
                dim = 0 if isinstance(mod, nn.Conv2d) else 1
                m = get(f"{p}.weight", mod.weight)
                m.index_fill_(dim, torch.nonzero(drop).flatten(), False)
                if mod.bias is not None:
                    get(f"{p}.bias", mod.bias)[drop] = False
            for c in plan.group.consumers:
                mod = self.modules[c]
                dim = 1 if isinstance(mod, nn.Conv2d) else 0
                get(f"{c}.weight", mod.weight).index_fill_(dim, torch.nonzero(drop).flatten(), False)
        return masks

    def _kept_index(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.modules[name].weight
        out_idx, in_idx = torch.arange(w.shape[0]), torch.arange(w.shape[1])
        gid_out, gid_in = self.graph.out_group.get(name), self.graph.in_group.get(name)
        if gid_out in self.channel_keep:
            out_idx = self.channel_keep[gid_out]
        if gid_in in self.channel_keep:
            in_idx = self.channel_keep[gid_in]
        return out_idx, in_idx

    @torch.no_grad()
    def update(self, progress: float = 1.0) -> None:
        """Recompute masks at `progress` in (0, 1] of the target ratios and apply them.

        Channels are chosen once, at the first update, at the full ratio (so compacted shapes and
        block sizes are fixed from then on); masked schemes prune ratio * progress of their units.
        """
        if not 0.0 < progress <= 1.0:
            raise ValueError(f"progress must be in (0, 1], got {progress}")
        if self.channel_keep is None:
            self.channel_keep = self._select_channels()
        masks = self._channel_masks()
        for name, ls in self.layers.items():
            if ls.scheme == "channel":
                continue
            weight = self.modules[name].weight
            out_idx, in_idx = self._kept_index(name)
            sub = weight[out_idx][:, in_idx]
            ratio = ls.ratio * progress
            if ls.scheme == "unstructured":
                sub_mask = unstructured_mask(sub, ratio)
            elif ls.scheme == "block":
                sub_mask = block_mask(sub, ratio, ls.block)
            else:
                sub_mask, self.libraries[name] = pattern_mask(sub, ratio, ls.entries, ls.patterns)
            full = torch.zeros_like(weight, dtype=torch.bool)
            full[out_idx.unsqueeze(1), in_idx.unsqueeze(0)] = sub_mask
            masks[f"{name}.weight"] = masks.get(f"{name}.weight", torch.ones_like(full)) & full
        self.masks = masks
        self.apply()

    def to(self, device: torch.device) -> "Pruner":
        """Move the masks with the model (training on a GPU; back to the CPU before saving)."""
        self.masks = {k: v.to(device) for k, v in self.masks.items()}
        return self

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every masked-out weight (call after each optimizer step)."""
        params = dict(self.model.named_parameters())
        for pname, mask in self.masks.items():
            params[pname].mul_(mask.to(params[pname].dtype))

    def mask_grads(self) -> None:
        """Zero the gradients of pruned weights, so optimizer moments do not build up on them."""
        params = dict(self.model.named_parameters())
        for pname, mask in self.masks.items():
            if params[pname].grad is not None:
                params[pname].grad.mul_(mask.to(params[pname].grad.dtype))

    def group_lasso(self) -> torch.Tensor:
        """Sum of the unit norms of every pruned layer's scheme (a differentiable penalty).

        Pushes whole pruning units (block columns, kernels, channels) towards zero before the masks
        are chosen, so less is lost when they are cut.
        """
        total = torch.zeros(())
        for name, ls in self.layers.items():
            weight = self.modules[name].weight
            if ls.scheme == "block":
                out_idx, in_idx = self._kept_index(name) if self.channel_keep is not None else (None, None)
                if out_idx is not None:
                    weight = weight[out_idx][:, in_idx]
            total = total + unit_norms(weight, ls.scheme, ls.block).sum()
        return total

    def violations(self) -> float:
        """Largest |weight| where the mask says pruned (0.0 when masks hold exactly)."""
        params = dict(self.model.named_parameters())
        worst = 0.0
        for pname, mask in self.masks.items():
            if (~mask).any():
                worst = max(worst, float(params[pname].detach()[~mask].abs().max()))
        return worst

    # ---- the final model --------------------------------------------------------------------
    @torch.no_grad()
    def compacted(self) -> nn.Module:
        """The model with pruned channels cut out (a new module; `self.model` is left as is)."""
        if self.channel_keep is None:
            raise RuntimeError("call update() before compacting")
        arch = getattr(self.model, "arch", None)
        if not self.groups:
            return self.model
        if not isinstance(arch, dict):
            raise InputError("channel pruning needs a model built by srprune.models.build_model (it has no .arch)")
        shapes: dict[str, list[int]] = dict(arch["config"].get("shapes", {})) if arch["name"] == channel_pruned.NAME else {}
        state = {k: v.clone() for k, v in self.model.state_dict().items()}
        for gid, keep in self.channel_keep.items():
            plan = self.groups[gid]
            for p in plan.group.producers:
                mod = self.modules[p]
                dim = 0 if isinstance(mod, nn.Conv2d) else 1
                state[f"{p}.weight"] = state[f"{p}.weight"].index_select(dim, keep)
                if mod.bias is not None:
                    state[f"{p}.bias"] = state[f"{p}.bias"][keep]
            for c in plan.group.consumers:
                mod = self.modules[c]
                dim = 1 if isinstance(mod, nn.Conv2d) else 0
                state[f"{c}.weight"] = state[f"{c}.weight"].index_select(dim, keep)
            for a in plan.group.per_channel:
                state[f"{a}.weight"] = state[f"{a}.weight"][keep]
                shapes[a] = [len(keep)]
        for name, mod in self.modules.items():
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)) and f"{name}.weight" in state:
                w = state[f"{name}.weight"]
                out_c, in_c = (w.shape[0], w.shape[1]) if isinstance(mod, nn.Conv2d) else (w.shape[1], w.shape[0])
                if (out_c, in_c) != (mod.out_channels, mod.in_channels):
                    shapes[name] = [int(out_c), int(in_c)]
        base = channel_pruned.base_arch(arch)
        with torch.random.fork_rng(devices=[]):
            small = build_model(channel_pruned.NAME, arch["scale"], base=base, shapes=shapes)
        small.load_state_dict(state)
        small.train(self.model.training)
        return small

    def summary(self, model: nn.Module) -> dict[str, Any]:
        """Per-layer structure of a finished (compacted) model, plain data for meta["pruning"]["layers"]."""
        mods = dict(model.named_modules())
        out: dict[str, Any] = {}
        for name, ls in self.layers.items():
            w = mods[name].weight.detach()
            entry: dict[str, Any] = {**ls.to_dict(), "shape": list(w.shape),
                                     "dense_shape": list(self.modules[name].weight.shape),
                                     "sparsity": float((w == 0).sum()) / w.numel()}
            if ls.scheme == "block":
                kept = block_structure(w, ls.block)
                entry["kept_columns_per_row_block"] = sorted({len(k) for k in kept})
            elif ls.scheme == "pattern":
                entry["library"] = self.libraries.get(name, [])
            out[name] = entry
        return out

    def finalize(self) -> tuple[nn.Module, dict[str, Any]]:
        """The compacted model and meta {"spec", "layers"} to store as meta["pruning"]."""
        self.apply()
        model = self.compacted()
        return model, {"spec": self.spec.to_dict(), "layers": self.summary(model)}


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy that keeps `.arch` and `.scale` (used to keep the dense teacher)."""
    out = copy.deepcopy(model)
    for attr in ("arch", "scale"):
        if hasattr(model, attr):
            setattr(out, attr, copy.deepcopy(getattr(model, attr)))
    return out
