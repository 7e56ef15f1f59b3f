"""`conv`: conv3x3 -> act whose kernel is W + identity (RepVGG's identity branch); deployed as one plain conv3x3.

The same function class as a plain conv3x3, but every cell then keeps the trunk's features, which is
what lets cells share one meaning of each trunk channel across block choices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.blocks.base import DeployedConv, activate, add_identity, skip_add
from supernet.blocks.plain import PLAIN, Plain


class Conv(Plain):
    """conv3x3 (+ identity) -> act; folds into `plain` by adding the identity to the kernel."""

    name = "conv"
    searchable = True
    in_default_space = True
    deploys_to = PLAIN

    def forward(self, x: torch.Tensor, p: dict[str, torch.Tensor], activation: str) -> torch.Tensor:  # noqa: D102
        return activate(skip_add(F.conv2d(x, p["conv_w"], p["conv_b"], padding=1), x), activation, p.get("act_w"))

    def module_forward(self, cell: nn.Module, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return cell.act(skip_add(cell.conv(x), x))

    def fuse(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """W + identity as the one plain conv3x3 it is."""
        out = {k: v.clone() for k, v in p.items()}
        add_identity(out["conv_w"])
        return out

    def deployed_convs(self, cin: int, width: int, layers: list[int], activation: str) -> list[DeployedConv]:
        """One conv3x3 cin -> w + act (the identity is folded into the kernel)."""
        return PLAIN.deployed_convs(cin, width, [], activation)


CONV = Conv()
