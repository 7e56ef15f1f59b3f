"""The search space and the genome: plain data that every stage (search, report, compiler) can read.

An SR network of the space is: head conv3x3 (3 -> head) -> `num_cells` cells -> tail conv3x3
(-> 3*scale^2) -> PixelShuffle(scale), plus a global skip (fixed bicubic upsampling of the input).
Each cell picks a block type and an output width; blocks with inner layers also pick each inner
layer's width. A `skip` cell is absent, so depth is searched too.

A `Genome` is one point of the space. It carries everything needed to build the network (the
activation and the inner widths included), so a genome alone rebuilds a standalone model.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from supernet.blocks import BLOCKS, DEFAULT_BLOCKS, SKIP, block_macs_per_pixel, block_type
from supernet.errors import SpaceError

# BLOCKS (block type -> number of inner layers whose width it searches) is the registry's, supernet.blocks.
ACTIVATIONS: tuple[str, ...] = ("relu", "prelu")


def _int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise SpaceError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _int_list(value: Any, what: str, minimum: int = 1) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise SpaceError(f"{what} must be a non-empty list of integers, got {value!r}")
    return [_int(v, f"{what}[{i}]", minimum) for i, v in enumerate(value)]


def _keys(data: Any, allowed: set[str], what: str) -> dict:
    if not isinstance(data, dict):
        raise SpaceError(f"{what} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SpaceError(f"{what}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(allowed))})")
    return data


@dataclass(frozen=True)
class SearchSpace:
    """What the supernet is built for: depth, width choices, block types, activation and scales.

    `wide_expand` and `ecb_expand` turn the width list into the choices of the WDSR-B expansion
    layer and of the ECB 1x1->3x3 branch (those layers are wider than the trunk by design).
    `min_depth` is the least number of non-skip cells a sampled genome may have.
    `share_weights` lets the `conv` block and the ECB's main 3x3 branch share one weight.
    """

    num_cells: int = 4
    widths: tuple[int, ...] = (8, 16, 24, 32, 48, 64)
    blocks: tuple[str, ...] = DEFAULT_BLOCKS
    activation: str = "relu"
    scales: tuple[int, ...] = (2,)
    wide_expand: int = 4
    ecb_expand: int = 2
    min_depth: int = 1
    share_weights: bool = True

    def __post_init__(self) -> None:
        _int(self.num_cells, "num_cells")
        widths = _int_list(self.widths, "widths")
        if len(set(widths)) != len(widths):
            raise SpaceError(f"widths has duplicates: {widths}")
        object.__setattr__(self, "widths", tuple(sorted(widths)))
        if not isinstance(self.blocks, (list, tuple)) or not self.blocks:
            raise SpaceError(f"blocks must be a non-empty list, got {self.blocks!r}")
        for b in self.blocks:
            if b not in BLOCKS:
                raise SpaceError(f"blocks: unknown block type {b!r} (known: {', '.join(BLOCKS)})")
        if len(set(self.blocks)) != len(self.blocks):
            raise SpaceError(f"blocks has duplicates: {list(self.blocks)}")
        if all(b == SKIP for b in self.blocks):
            raise SpaceError("blocks must contain at least one block type other than 'skip'")
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if self.activation not in ACTIVATIONS:
            raise SpaceError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        scales = _int_list(self.scales, "scales", minimum=2)
        object.__setattr__(self, "scales", tuple(sorted(set(scales))))
        _int(self.wide_expand, "wide_expand")
        _int(self.ecb_expand, "ecb_expand")
        _int(self.min_depth, "min_depth", minimum=0)
        if self.min_depth > self.num_cells:
            raise SpaceError(f"min_depth {self.min_depth} is larger than num_cells {self.num_cells}")
        if not isinstance(self.share_weights, bool):
            raise SpaceError(f"share_weights must be true or false, got {self.share_weights!r}")

    @property
    def max_width(self) -> int:
        """The widest trunk width (the size of every elastic layer's trunk side)."""
        return self.widths[-1]

    def layer_choices(self, block: str, layer: int) -> tuple[int, ...]:
        """Width choices of inner layer `layer` of `block` (the block's entry decides, reading this space)."""
        return block_type(block).layer_choices(self, layer)

    def inner_choices(self, block: str) -> list[list[int]]:
        """Every combination of inner layer widths of `block` (one empty list for a block without inner layers)."""
        return [list(c) for c in itertools.product(*(self.layer_choices(block, i) for i in range(BLOCKS[block])))]

    @classmethod
    def from_dict(cls, data: Any) -> SearchSpace:
        """Build from a config mapping; unknown fields and bad values raise SpaceError naming the field."""
        data = _keys(data, {f for f in cls.__dataclass_fields__}, "search space")
        kwargs = dict(data)
        for key in ("widths", "blocks", "scales"):
            if key in kwargs and isinstance(kwargs[key], list):
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (lists, not tuples)."""
        d = asdict(self)
        for key in ("widths", "blocks", "scales"):
            d[key] = list(d[key])
        return d

    # --- sampling -------------------------------------------------------------------------------

    def _cell(self, block: str, choose) -> Cell:
        if block == SKIP:
            return Cell(SKIP, 0, [])
        return Cell(block, choose(self.widths), [choose(self.layer_choices(block, i)) for i in range(BLOCKS[block])])

    def sample(self, rng: np.random.Generator, scale: int | None = None, blocks: list[str] | None = None) -> Genome:
        """A uniformly random genome (block and every width drawn independently), with >= min_depth cells.

        `blocks`: the block of every cell, given (widths are still drawn); skips past min_depth are replaced.
        """
        scale = self.check_scale(scale)

        def choose(options):
            return int(options[int(rng.integers(len(options)))])

        if blocks is None:
            blocks = [str(self.blocks[int(rng.integers(len(self.blocks)))]) for _ in range(self.num_cells)]
        else:
            blocks = [str(b) for b in blocks]
        real = [b for b in self.blocks if b != SKIP]
        skipped = [i for i, b in enumerate(blocks) if b == SKIP]
        missing = self.min_depth - (self.num_cells - len(skipped))
        if missing > 0:
            for i in rng.permutation(skipped)[:missing]:
                blocks[int(i)] = str(real[int(rng.integers(len(real)))])
        return Genome(scale, choose(self.widths), self.activation, [self._cell(b, choose) for b in blocks])

    @property
    def real_blocks(self) -> list[str]:
        """The block types of the space other than skip."""
        return [b for b in self.blocks if b != SKIP]

    def largest(self, scale: int | None = None, block: str | None = None) -> Genome:
        """Every cell the costliest block (or `block`) at the widest widths (the teacher of in-place distillation)."""
        scale = self.check_scale(scale)
        w = self.max_width
        real = self.real_blocks
        big = block or max(real, key=lambda b: block_macs_per_pixel(b, w, w, [max(self.layer_choices(b, i))
                                                                                for i in range(BLOCKS[b])]))
        cell = self._cell(big, max)
        return Genome(scale, w, self.activation, [Cell(cell.block, cell.width, list(cell.layers))
                                                  for _ in range(self.num_cells)])

    def smallest(self, scale: int | None = None, block: str | None = None) -> Genome:
        """The cheapest block (or `block`) at the narrowest widths in the first `min_depth` cells, the rest skipped."""
        scale = self.check_scale(scale)
        w = self.widths[0]
        real = self.real_blocks
        small = block or min(real, key=lambda b: block_macs_per_pixel(b, w, w, [min(self.layer_choices(b, i))
                                                                                  for i in range(BLOCKS[b])]))
        depth = self.min_depth if SKIP in self.blocks else self.num_cells
        cells = [self._cell(small, min) if i < depth else Cell(SKIP, 0, []) for i in range(self.num_cells)]
        return Genome(scale, w, self.activation, cells)

    def check_scale(self, scale: int | None) -> int:
        """`scale`, or the space's first scale for None; a scale the space was not built for is a SpaceError."""
        if scale is None:
            return self.scales[0]
        if scale not in self.scales:
            raise SpaceError(f"scale {scale!r} is not one the space was built for ({', '.join(map(str, self.scales))})")
        return int(scale)


@dataclass
class Cell:
    """One cell of a genome: block type, output width (0 for skip) and inner layer widths."""

    block: str
    width: int
    layers: list[int] = field(default_factory=list)


@dataclass
class Genome:
    """One network of the space; JSON-serialisable via to_dict/from_dict and self-contained."""

    scale: int
    head: int
    activation: str
    cells: list[Cell]

    def to_dict(self) -> dict[str, Any]:
        """Plain data: {"scale", "head", "activation", "cells": [{"block", "width", "layers"}]}."""
        return {"scale": self.scale, "head": self.head, "activation": self.activation,
                "cells": [{"block": c.block, "width": c.width, "layers": list(c.layers)} for c in self.cells]}

    def to_json(self) -> str:
        """Compact one-line JSON (sorted keys) that names this genome uniquely."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> Genome:
        """Parse and check the genome's own consistency (not yet against a space: see `validate`)."""
        data = _keys(data, {"scale", "head", "activation", "cells"}, "genome")
        for key in ("scale", "head", "activation", "cells"):
            if key not in data:
                raise SpaceError(f"genome: missing field {key!r}")
        scale = _int(data["scale"], "genome.scale", minimum=2)
        head = _int(data["head"], "genome.head")
        act = data["activation"]
        if act not in ACTIVATIONS:
            raise SpaceError(f"genome.activation must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
        if not isinstance(data["cells"], (list, tuple)):
            raise SpaceError(f"genome.cells must be a list, got {type(data['cells']).__name__}")
        cells = []
        for i, c in enumerate(data["cells"]):
            what = f"genome.cells[{i}]"
            c = _keys(c, {"block", "width", "layers"}, what)
            block = c.get("block")
            if block not in BLOCKS:
                raise SpaceError(f"{what}.block: unknown block type {block!r} (known: {', '.join(BLOCKS)})")
            layers = c.get("layers", [])
            if not isinstance(layers, (list, tuple)):
                raise SpaceError(f"{what}.layers must be a list, got {layers!r}")
            if len(layers) != BLOCKS[block]:
                raise SpaceError(f"{what}.layers: block {block!r} has {BLOCKS[block]} inner layer width(s), "
                                 f"got {len(layers)}")
            if block == SKIP:
                if c.get("width", 0) != 0:
                    raise SpaceError(f"{what}.width: a skip cell has width 0, got {c.get('width')!r}")
                cells.append(Cell(SKIP, 0, []))
                continue
            if "width" not in c:
                raise SpaceError(f"{what}: missing field 'width'")
            width = _int(c["width"], f"{what}.width")
            cells.append(Cell(block, width, [_int(v, f"{what}.layers[{j}]") for j, v in enumerate(layers)]))
        return cls(scale, head, act, cells)

    @classmethod
    def coerce(cls, genome: Genome | dict) -> Genome:
        """A Genome from a Genome or its dict form."""
        return genome if isinstance(genome, Genome) else cls.from_dict(genome)

    def widths_in(self) -> list[int]:
        """The input (trunk) width of every cell."""
        out, w = [], self.head
        for c in self.cells:
            out.append(w)
            if c.block != SKIP:
                w = c.width
        return out

    @property
    def out_width(self) -> int:
        """Trunk width entering the tail."""
        w = self.head
        for c in self.cells:
            if c.block != SKIP:
                w = c.width
        return w

    @property
    def depth(self) -> int:
        """Number of non-skip cells."""
        return sum(c.block != SKIP for c in self.cells)

    def validate(self, space: SearchSpace) -> Genome:
        """Check that this genome is a point of `space`; raise SpaceError naming the first bad field."""
        if self.scale not in space.scales:
            raise SpaceError(f"genome.scale: {self.scale} is not a scale the supernet was built for "
                             f"({', '.join(map(str, space.scales))})")
        if self.activation != space.activation:
            raise SpaceError(f"genome.activation: {self.activation!r} differs from the space's {space.activation!r}")
        if len(self.cells) != space.num_cells:
            raise SpaceError(f"genome.cells: the space has {space.num_cells} cells, the genome {len(self.cells)}")
        _check_width(self.head, space.widths, "genome.head")
        for i, c in enumerate(self.cells):
            what = f"genome.cells[{i}]"
            if c.block not in space.blocks:
                raise SpaceError(f"{what}.block: {c.block!r} is not in the space (blocks: {', '.join(space.blocks)})")
            if c.block == SKIP:
                continue
            _check_width(c.width, space.widths, f"{what}.width")
            for j, w in enumerate(c.layers):
                _check_width(w, space.layer_choices(c.block, j), f"{what}.layers[{j}]")
        if self.depth < space.min_depth:
            raise SpaceError(f"genome.cells: {self.depth} non-skip cells, the space needs at least {space.min_depth}")
        return self


def _check_width(value: int, choices: tuple[int, ...], what: str) -> None:
    if value > max(choices):
        raise SpaceError(f"{what}: width {value} is larger than the maximum {max(choices)}")
    if value not in choices:
        raise SpaceError(f"{what}: width {value} is not one of the choices {list(choices)}")
