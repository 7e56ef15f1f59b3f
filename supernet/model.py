"""The weight-sharing supernet: every genome of a space runs on slices of one set of weights.

Elastic width: each tensor is allocated at its widest shape and a sub-network uses the leading
channels of every dimension (weight[:out, :in]), so narrow networks are nested in wide ones.
Elastic block choice: with `share_weights`, a block type that declares `shares` takes those tensors
from the named block of the same cell (the ECB's main 3x3 branch is the `conv` block's weight: both
are "conv3x3 -> act" to the trunk), so the ECB learns only its extra branches. Depth: a `skip` cell
runs nothing. One tail per supported scale. What a block computes and which tensors it has is its
registry entry's (supernet.blocks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.blocks import (
    HEAD_ROLES,
    SKIP,
    bicubic_kernel,
    bicubic_skip,
    block_sizes,
    block_type,
    init_param,
    shape_of,
)
from supernet.errors import SpaceError
from supernet.space import Genome, SearchSpace


def _slice(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The leading-channel slice of `t` with `shape`."""
    return t[tuple(slice(0, n) for n in shape)]


class ElasticCell(nn.Module):
    """All block choices of one cell at their widest shapes."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.activation = space.activation
        self.blocks = nn.ModuleDict()
        for block in space.blocks:
            if block == SKIP:
                continue
            kind = block_type(block)
            layers = [max(space.layer_choices(block, i)) for i in range(kind.inner)]
            sizes = block_sizes(space.max_width, space.max_width, layers)
            owner, shared = kind.shares or ("", ())
            holder = nn.Module()
            for name in kind.param_names(space.activation):
                if name in shared and space.share_weights and owner in self.blocks:
                    holder.register_parameter(name, self.blocks[owner]._parameters[name])
                    continue
                value = init_param(name, shape_of(kind.params[name], sizes))
                holder.register_parameter(name, nn.Parameter(value))
            self.blocks[block] = holder

    def sliced(self, block: str, cin: int, width: int, layers: list[int]) -> dict[str, torch.Tensor]:
        """The block's tensors cut to one genome's widths (views, so gradients reach the shared weights)."""
        sizes = block_sizes(cin, width, layers)
        params = self.blocks[block]._parameters
        kind = block_type(block)
        return {name: _slice(params[name], shape_of(kind.params[name], sizes))
                for name in kind.param_names(self.activation)}

    def forward(self, x: torch.Tensor, block: str, width: int, layers: list[int]) -> torch.Tensor:  # noqa: D102
        if block == SKIP:
            return x
        return block_type(block).forward(x, self.sliced(block, x.shape[1], width, layers), self.activation)


class SuperNet(nn.Module):
    """Shared weights for every genome of `space`; `forward(x, genome)` runs that sub-network."""

    def __init__(self, space: SearchSpace | dict) -> None:
        super().__init__()
        self.space = space if isinstance(space, SearchSpace) else SearchSpace.from_dict(space)
        w = self.space.max_width
        self.head_w = nn.Parameter(init_param("head_w", shape_of(HEAD_ROLES["head_w"], {"w": w})))
        self.head_b = nn.Parameter(torch.zeros(w))
        self.cells = nn.ModuleList(ElasticCell(self.space) for _ in range(self.space.num_cells))
        self.tails = nn.ParameterDict()
        for s in self.space.scales:
            self.tails[f"w{s}"] = nn.Parameter(init_param("tail_w", (3 * s * s, w, 3, 3)))
            self.tails[f"b{s}"] = nn.Parameter(torch.zeros(3 * s * s))
            self.register_buffer(f"up{s}", bicubic_kernel(s))
        self._checked: dict[str, Genome] = {}

    def check(self, genome: Genome | dict) -> Genome:
        """Parse and validate a genome against this supernet's space (cached by its JSON form)."""
        g = Genome.coerce(genome)
        key = g.to_json()
        if key not in self._checked:
            if len(self._checked) > 4096:
                self._checked.clear()
            self._checked[key] = g.validate(self.space)
        return g

    def forward(self, x: torch.Tensor, genome: Genome | dict) -> torch.Tensor:  # noqa: D102
        g = self.check(genome)
        if x.ndim != 4 or x.shape[1] != 3:
            raise SpaceError(f"input must be an N x 3 x H x W tensor, got shape {tuple(x.shape)}")
        h = F.conv2d(x, self.head_w[: g.head], self.head_b[: g.head], padding=1)
        for cell, c in zip(self.cells, g.cells):
            h = cell(h, c.block, c.width, c.layers)
        s = g.scale
        tail_w = self.tails[f"w{s}"][:, : h.shape[1]]
        y = F.conv2d(h, tail_w, self.tails[f"b{s}"], padding=1) + bicubic_skip(x, getattr(self, f"up{s}"))
        return F.pixel_shuffle(y, s)

    def export_state(self, genome: Genome | dict) -> dict[str, torch.Tensor]:
        """The genome's weights as a GenomeNet state_dict (detached contiguous copies)."""
        g = self.check(genome)
        state = {"head_w": self.head_w[: g.head], "head_b": self.head_b[: g.head]}
        for i, (cell, cin, c) in enumerate(zip(self.cells, g.widths_in(), g.cells)):
            if c.block != SKIP:
                for name, t in cell.sliced(c.block, cin, c.width, c.layers).items():
                    state[f"cells.{i}.{name}"] = t
        s = g.scale
        state["tail_w"] = self.tails[f"w{s}"][:, : g.out_width]
        state["tail_b"] = self.tails[f"b{s}"]
        state["up_w"] = getattr(self, f"up{s}")
        return {k: v.detach().clone().contiguous() for k, v in state.items()}
