"""`plain`: conv3x3 -> act, the inference form that `conv` and `ecb` cells fold into (never searched)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.blocks.base import BlockType, DeployedConv, activate


class Plain(BlockType):
    """One plain conv3x3 + activation: what runs on the device for conv and ECB cells."""

    name = "plain"
    params = {"conv_w": ("w", "cin", 3, 3), "conv_b": ("w",), "act_w": ("w",)}
    searchable = False
    in_default_space = False

    def forward(self, x: torch.Tensor, p: dict[str, torch.Tensor], activation: str) -> torch.Tensor:  # noqa: D102
        return activate(F.conv2d(x, p["conv_w"], p["conv_b"], padding=1), activation, p.get("act_w"))

    def module_forward(self, cell: nn.Module, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return cell.act(cell.conv(x))

    def deployed_convs(self, cin: int, width: int, layers: list[int], activation: str) -> list[DeployedConv]:
        """One conv3x3 cin -> w + act."""
        return [DeployedConv("conv", cin, width, 3, act=activation)]


PLAIN = Plain()
