"""The block types of the supernet: one `BlockType` per module, registered in the one table below.

Everything that depends on the block type asks its entry: the search space (`BLOCKS`, inner layers and
their width choices), the supernet (parameter roles, `forward` on sliced shared weights, weights shared
between blocks), the standalone net (nn.Conv2d layout, `module_forward`, `deploys_to` + `fuse`), the
cost model (MACs, params) and the latency model (`deployed_convs`). Adding a block type = one module
here + one entry in `BLOCK_TYPES` (see docs/architecture.md, "Supernet").

The functions below are the block-type-indexed API the rest of supernet uses.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from supernet.blocks.base import (
    BlockType,
    DeployedConv,
    Role,
    activate,
    block_sizes,
    init_param,
    shape_of,
    skip_add,
)
from supernet.blocks.conv import CONV
from supernet.blocks.dws import DWS
from supernet.blocks.ecb import ECB, ECB_MASKS, ecb_linear, fuse_ecb
from supernet.blocks.network import HEAD_ROLES, bicubic_kernel, bicubic_skip, keys_cubic
from supernet.blocks.plain import PLAIN
from supernet.blocks.res import RES
from supernet.blocks.skip import SKIP as _SKIP
from supernet.blocks.wide import WIDE
from supernet.errors import SpaceError

# The one list of block types. Order is the search space's (the default `blocks`, error messages).
BLOCK_TYPES: dict[str, BlockType] = {b.name: b for b in (CONV, RES, WIDE, ECB, DWS, _SKIP, PLAIN)}
SKIP: str = _SKIP.name  # the absent cell: the space's way of searching depth
# Block types a genome may name -> number of inner layers whose width each one searches.
BLOCKS: dict[str, int] = {n: b.inner for n, b in BLOCK_TYPES.items() if b.searchable}
DEFAULT_BLOCKS: tuple[str, ...] = tuple(n for n, b in BLOCK_TYPES.items() if b.searchable and b.in_default_space)
PARAM_ROLES: dict[str, dict[str, tuple[Role, ...]]] = {n: dict(b.params) for n, b in BLOCK_TYPES.items()}

__all__ = ["BLOCKS", "BLOCK_TYPES", "BlockType", "DEFAULT_BLOCKS", "DeployedConv", "ECB_MASKS", "HEAD_ROLES",
           "PARAM_ROLES", "SKIP", "activate", "bicubic_kernel", "bicubic_skip", "block_forward",
           "block_macs_per_pixel", "block_params", "block_sizes", "block_type", "deployed_convs",
           "deployed_kernel_sizes", "ecb_linear",
           "fuse_ecb", "init_param", "keys_cubic", "param_names", "shape_of", "skip_add"]


def block_type(block: str) -> BlockType:
    """The registry entry of `block`; an unknown name is a SpaceError listing the known ones."""
    try:
        return BLOCK_TYPES[block]
    except (KeyError, TypeError):
        raise SpaceError(f"unknown block type {block!r} (known: {', '.join(BLOCK_TYPES)})") from None


def param_names(block: str, activation: str) -> list[str]:
    """Names of a block's tensors for this activation."""
    return block_type(block).param_names(activation)


def block_forward(block: str, x: torch.Tensor, p: dict[str, torch.Tensor], activation: str) -> torch.Tensor:
    """Run one cell of type `block` on `x` with weights `p` (shapes as in PARAM_ROLES)."""
    return block_type(block).forward(x, p, activation)


def block_macs_per_pixel(block: str, cin: int, width: int, layers: list[int], deployed: bool = True) -> int:
    """MACs per LR pixel of one cell."""
    return block_type(block).macs_per_pixel(cin, width, layers, deployed)


def block_params(block: str, cin: int, width: int, layers: list[int], activation: str, deployed: bool = True) -> int:
    """Learnable values of one cell."""
    return block_type(block).param_count(cin, width, layers, activation, deployed)


def deployed_convs(block: str, cin: int, width: int, layers: list[int], activation: str) -> list[DeployedConv]:
    """The deployed cell's layers in execution order, module names relative to the cell (for the latency model).

    Each is a `DeployedConv(name, cin, cout, k, groups, act, residual, kind)`; `kind` "adapter" is the skip's
    channel pad/slice across a width change (named "skip", no module, no MACs).
    """
    return block_type(block).deployed_convs(cin, width, layers, activation)


def deployed_kernel_sizes(blocks: Iterable[str]) -> list[int]:
    """Kernel sizes of the convs these block types deploy to, largest first (which conv shapes to time)."""
    sizes = {c.k for b in blocks for c in block_type(b).deployed_convs(8, 8, [8] * block_type(b).inner, "relu")
             if c.kind == "conv"}
    return sorted(sizes, reverse=True)
