"""A standalone network built from a genome alone: plain tensors, no elastic machinery.

`GenomeNet(genome)` is what a model file stores (arch {"name": "genome", "config": {"genome": ...}}
plus its state_dict), so running a searched network needs no supernet. `deploy()` returns the
re-parameterised form (ECB and conv blocks collapsed to one conv3x3 each). `extract(supernet, genome)`
slices the supernet's shared weights into a GenomeNet.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from supernet.blocks import SKIP, bicubic_kernel, block_sizes, block_type, init_param, shape_of
from supernet.errors import SpaceError
from supernet.space import Genome


def module_key(name: str) -> str:
    """GenomeNet state_dict key of a block tensor name: "conv_w" -> "conv.weight", "sx_s" stays."""
    if name.endswith("_w"):
        return name[:-2] + ".weight"
    if name.endswith("_b"):
        return name[:-2] + ".bias"
    return name


def _act(activation: str, channels: int) -> nn.Module:
    return nn.PReLU(channels) if activation == "prelu" else nn.ReLU()


class PlainBlock(nn.Module):
    """One cell as ordinary layers (nn.Conv2d, nn.ReLU/PReLU) of exactly the genome's shapes.

    Real nn.Conv2d modules, so module hooks (MAC counters, pruning) see every conv: each weight "NAME_w"
    of the block's entry is a module NAME, laid out as the entry's `conv_layout` says, and the entry's
    `module_forward` runs them. The ECB in training form keeps its edge filters' scales and biases as
    parameters `sx_s`, `sx_t`, ...
    """

    def __init__(self, block: str, cin: int, width: int, layers: list[int], activation: str) -> None:
        super().__init__()
        self.block = block
        kind = block_type(block)
        sizes = block_sizes(cin, width, layers)
        roles = kind.params
        for name in kind.param_names(activation):
            if name == "act_w" or not name.endswith("_w"):
                continue
            out_c, in_c, k, _ = shape_of(roles[name], sizes)
            groups, pad = kind.conv_layout(name, sizes)
            conv = nn.Conv2d(in_c * groups, out_c, k, padding=pad, groups=groups)
            self.add_module(name[:-2], conv)
        self.act = _act(activation, shape_of(roles["act_w"], sizes)[0]) if "act_w" in roles else None
        for name in kind.param_names(activation):  # values from the shared initialiser
            value = init_param(name, shape_of(roles[name], sizes))
            if name.endswith("_s") or name.endswith("_t"):
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.get_parameter(module_key(name)).data.copy_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return block_type(self.block).module_forward(self, x)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The block's weights under the functional names of supernet.blocks."""
        return {n: self.get_parameter(module_key(n)) for n in block_type(self.block).params
                if n != "act_w" or isinstance(self.act, nn.PReLU)}


class GenomeNet(nn.Module):
    """head conv3x3 -> cells -> tail conv3x3 (+ fixed bicubic skip) -> PixelShuffle, as the genome says.

    `deployed=True` builds each cell whose block has a `deploys_to` form in that form (conv and ECB cells as
    single plain conv3x3 cells). The skip is
    an ordinary grouped 5x5 nn.Conv2d (`up`) whose weight is a buffer, on the edge-padded input.
    """

    def __init__(self, genome: Genome | dict, deployed: bool = False) -> None:
        super().__init__()
        g = Genome.coerce(genome)
        self.genome = g.to_dict()
        self.scale = g.scale
        self.deployed = bool(deployed)
        self.head = nn.Conv2d(3, g.head, 3, padding=1)
        with torch.no_grad():
            self.head.weight.copy_(init_param("head_w", tuple(self.head.weight.shape)))
            self.head.bias.zero_()
        cells: list[nn.Module] = []
        for cin, c in zip(g.widths_in(), g.cells):
            if c.block == SKIP:
                cells.append(nn.Identity())
            else:
                target = block_type(c.block).deploys_to if deployed else None
                block, layers = (target.name, []) if target is not None else (c.block, c.layers)
                cells.append(PlainBlock(block, cin, c.width, layers, g.activation))
        self.cells = nn.ModuleList(cells)
        out = 3 * g.scale**2
        self.tail = nn.Conv2d(g.out_width, out, 3, padding=1)
        with torch.no_grad():
            self.tail.weight.copy_(init_param("tail_w", tuple(self.tail.weight.shape)))
            self.tail.bias.zero_()
        self.up = nn.Conv2d(3, out, 5, groups=3, bias=False)
        del self.up.weight  # fixed kernel: a buffer, so it is stored and hooked but neither trained nor counted
        self.up.register_buffer("weight", bicubic_kernel(g.scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.head(x)
        for cell in self.cells:
            h = cell(h)
        y = self.tail(h) + self.up(F.pad(x, (2, 2, 2, 2), mode="replicate"))
        return F.pixel_shuffle(y, self.scale)

    def deploy(self) -> GenomeNet:
        """The inference form: each block's `fuse` (conv: W + identity, ECB: all branches -> one plain conv3x3).

        Equal to the training form up to rounding.
        """
        if self.deployed:
            return self
        out = GenomeNet(self.genome, deployed=True)
        state: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for key, value in self.state_dict().items():
                if not key.startswith("cells."):
                    state[key] = value.clone()
            for i, cell in enumerate(self.cells):
                if isinstance(cell, nn.Identity):
                    continue
                params = {k: v.detach() for k, v in cell.tensors().items()}
                kind = block_type(cell.block)
                if kind.deploys_to is not None:
                    params = kind.fuse(params)
                state.update({f"cells.{i}.{module_key(k)}": v.clone() for k, v in params.items()})
        out.load_state_dict(state)
        ref = self.head.weight
        out = out.to(device=ref.device, dtype=ref.dtype)
        out.train(self.training)
        return out


def build_genome_net(scale: int, genome: dict, deployed: bool = False) -> GenomeNet:
    """Registry factory (`scale` first, plain-data config): the scale must match the genome's."""
    g = Genome.coerce(genome)
    if scale != g.scale:
        raise SpaceError(f"genome.scale is {g.scale} but the model was asked for scale {scale}")
    return GenomeNet(g, deployed=deployed)


def extract(supernet: Any, genome: Genome | dict) -> tuple[GenomeNet, dict[str, torch.Tensor]]:
    """A GenomeNet holding the supernet's shared weights for `genome`, and that state_dict.

    `supernet` is a `supernet.model.SuperNet` (duck-typed: `export_state(genome)` gives the sliced
    tensors under GenomeNet's names); the genome is validated against the supernet's space.
    """
    g = Genome.coerce(genome)
    state = {_net_key(k): v for k, v in supernet.export_state(g).items()}
    net = GenomeNet(g)
    net.load_state_dict(state)
    ref = next(supernet.parameters())
    return net.to(device=ref.device, dtype=ref.dtype), state


def _net_key(key: str) -> str:
    """SuperNet.export_state key ("cells.0.conv_w", "head_w") -> GenomeNet state_dict key."""
    prefix, _, name = key.rpartition(".")
    return f"{prefix}.{module_key(name)}" if prefix else module_key(name)
