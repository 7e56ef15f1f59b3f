"""Channel sorting: keep the shared channels ordered by importance, so narrow sub-networks stay good.

A sub-network of width w uses the leading w channels of every elastic dimension. Sorting puts the
channels the network relies on most first (OFA, Cai et al. 2020; BigNAS), without changing what the
widest network computes: every tensor that touches a channel is permuted the same way.

Channel groups (each gets one permutation):
- the trunk (role "w" and "cin" of every block, the head's outputs, every tail's inputs). One
  permutation for the whole trunk, because the identity skips (skip_add, and the "+ identity" of the
  conv/ECB kernels) give trunk channel i one meaning in every cell;
- each inner layer of each cell and block (roles "l0", "l1"), on its own: only that block reads it.

Importance of a channel = sum over the conv weights (4-D tensors) that touch it of the L1 norm of its
slice, each tensor's term divided by that tensor's mean slice norm, so large and small layers count
alike. Optimizer state (Adam moments) is permuted with the weights, so training continues as if the
sort had not happened for the widest network.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from supernet.blocks import HEAD_ROLES, block_type

TRUNK = "trunk"
Perms = dict[str, torch.Tensor]


def _group(role: str | int, cell: int, block: str) -> str | None:
    """Permutation group of a dimension with `role` in `block` of `cell` (None: not elastic)."""
    if role in ("w", "cin"):
        return TRUNK
    if isinstance(role, str):
        return f"cells.{cell}.{block}.{role}"
    return None


def _tensors(supernet: nn.Module) -> Iterator[tuple[nn.Parameter, list[str | None]]]:
    """Every distinct shared parameter with the permutation group of each of its dimensions."""
    seen: set[int] = set()

    def once(p: nn.Parameter, groups: list[str | None]):
        if id(p) in seen:  # the ECB's main branch is the conv block's tensor (share_weights)
            return None
        seen.add(id(p))
        return p, groups

    for name, roles in HEAD_ROLES.items():
        item = once(getattr(supernet, name), [_group(r, -1, "head") for r in roles])
        if item:
            yield item
    for i, cell in enumerate(supernet.cells):
        for block, holder in cell.blocks.items():
            for name, p in holder._parameters.items():
                item = once(p, [_group(r, i, block) for r in block_type(block).params[name]])
                if item:
                    yield item
    for s in supernet.space.scales:
        item = once(supernet.tails[f"w{s}"], [None, TRUNK, None, None])
        if item:
            yield item


@torch.no_grad()
def channel_importance(supernet: nn.Module) -> dict[str, torch.Tensor]:
    """Importance (float64, one value per channel) of every channel group."""
    scores: dict[str, torch.Tensor] = {}
    for p, groups in _tensors(supernet):
        if p.ndim != 4:
            continue
        a = p.detach().abs().double()
        for dim, group in enumerate(groups):
            if group is None:
                continue
            norms = a.transpose(0, dim).reshape(a.shape[dim], -1).sum(dim=1)
            term = norms / norms.mean().clamp_min(1e-12)
            scores[group] = scores[group] + term.cpu() if group in scores else term.cpu()
    return scores


def channel_order(supernet: nn.Module) -> Perms:
    """The permutation of every channel group that sorts it by decreasing importance (stable)."""
    return {g: torch.sort(s, descending=True, stable=True).indices for g, s in channel_importance(supernet).items()}


@torch.no_grad()
def apply_permutation(supernet: nn.Module, perms: Perms, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Reorder every parameter (and its optimizer state) in place: new channel k = old channel perms[g][k]."""
    for p, groups in _tensors(supernet):
        new = p.data
        states = []
        if optimizer is not None and p in optimizer.state:
            states = [(k, v) for k, v in optimizer.state[p].items()
                      if torch.is_tensor(v) and v.shape == p.shape]
        moved = [v for _, v in states]
        for dim, group in enumerate(groups):
            if group is None or group not in perms:
                continue
            idx = perms[group].to(p.device)
            new = new.index_select(dim, idx)
            moved = [v.index_select(dim, idx) for v in moved]
        p.data.copy_(new)
        for (k, v), m in zip(states, moved):
            v.copy_(m)


def sort_channels(supernet: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> Perms:
    """Sort every channel group of `supernet` by importance, in place; return the permutations applied."""
    perms = channel_order(supernet)
    apply_permutation(supernet, perms, optimizer)
    return perms
