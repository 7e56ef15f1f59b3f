"""`res`: conv3x3 (-> l0) -> act -> conv3x3 (-> w), + skip (EDSR's residual block without scaling)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.blocks.base import BlockType, DeployedConv, activate, adapter, skip_add


class Res(BlockType):
    """Two conv3x3 around an activation, the inner width searched."""

    name = "res"
    inner = 1
    params = {"c1_w": ("l0", "cin", 3, 3), "c1_b": ("l0",), "act_w": ("l0",),
              "c2_w": ("w", "l0", 3, 3), "c2_b": ("w",)}

    def forward(self, x: torch.Tensor, p: dict[str, torch.Tensor], activation: str) -> torch.Tensor:  # noqa: D102
        h = activate(F.conv2d(x, p["c1_w"], p["c1_b"], padding=1), activation, p.get("act_w"))
        return skip_add(F.conv2d(h, p["c2_w"], p["c2_b"], padding=1), x)

    def module_forward(self, cell: nn.Module, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return skip_add(cell.c2(cell.act(cell.c1(x))), x)

    def deployed_convs(self, cin: int, width: int, layers: list[int], activation: str) -> list[DeployedConv]:
        """conv3x3 cin -> l0 + act; [adapter]; conv3x3 l0 -> w + residual."""
        return [DeployedConv("c1", cin, layers[0], 3, act=activation), *adapter(cin, width),
                DeployedConv("c2", layers[0], width, 3, residual=True)]


RES = Res()
