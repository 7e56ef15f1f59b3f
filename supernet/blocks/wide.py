"""`wide`: WDSR-B, conv1x1 (-> l0, wide) -> act -> conv1x1 (-> l1) -> conv3x3 (-> w), + skip."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from supernet.blocks.base import BlockType, DeployedConv, activate, adapter, skip_add


class Wide(BlockType):
    """Wide activation (Yu et al. 2018): the expansion layer's choices are the widths times `space.wide_expand`."""

    name = "wide"
    inner = 2
    params = {"ex_w": ("l0", "cin", 1, 1), "ex_b": ("l0",), "act_w": ("l0",),
              "rd_w": ("l1", "l0", 1, 1), "rd_b": ("l1",), "c3_w": ("w", "l1", 3, 3), "c3_b": ("w",)}

    def layer_choices(self, space: Any, layer: int) -> tuple[int, ...]:
        """Layer 0 (expansion): widths x wide_expand; layer 1 (reduction): the widths."""
        if layer == 0:
            return tuple(w * space.wide_expand for w in space.widths)
        return tuple(space.widths)

    def forward(self, x: torch.Tensor, p: dict[str, torch.Tensor], activation: str) -> torch.Tensor:  # noqa: D102
        h = activate(F.conv2d(x, p["ex_w"], p["ex_b"]), activation, p.get("act_w"))
        h = F.conv2d(h, p["rd_w"], p["rd_b"])
        return skip_add(F.conv2d(h, p["c3_w"], p["c3_b"], padding=1), x)

    def module_forward(self, cell: nn.Module, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return skip_add(cell.c3(cell.rd(cell.act(cell.ex(x)))), x)

    def deployed_convs(self, cin: int, width: int, layers: list[int], activation: str) -> list[DeployedConv]:
        """conv1x1 cin -> l0 + act; conv1x1 l0 -> l1; [adapter]; conv3x3 l1 -> w + residual."""
        return [DeployedConv("ex", cin, layers[0], 1, act=activation), DeployedConv("rd", layers[0], layers[1], 1),
                *adapter(cin, width), DeployedConv("c3", layers[1], width, 3, residual=True)]


WIDE = Wide()
