"""`skip`: the cell is absent (the output is the input), which is how the space searches depth."""

from __future__ import annotations

import torch
from torch import nn

from supernet.blocks.base import BlockType, DeployedConv


class Skip(BlockType):
    """No weights, no layers, no cost; a skip cell has width 0 in a genome and leaves the trunk width as it was."""

    name = "skip"

    def forward(self, x: torch.Tensor, p: dict[str, torch.Tensor], activation: str) -> torch.Tensor:  # noqa: D102
        return x

    def module_forward(self, cell: nn.Module, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x

    def deployed_convs(self, cin: int, width: int, layers: list[int], activation: str) -> list[DeployedConv]:
        """Nothing runs."""
        return []


SKIP = Skip()
