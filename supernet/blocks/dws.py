"""`dws`: depthwise conv3x3 -> pointwise conv1x1 (-> w) -> act, + skip (MobileNet's separable conv)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.blocks.base import BlockType, DeployedConv, activate, adapter, shape_of, skip_add


class Dws(BlockType):
    """Depthwise-separable conv: the depthwise weight is (cin, 1, 3, 3), one group per input channel."""

    name = "dws"
    params = {"dw_w": ("cin", 1, 3, 3), "dw_b": ("cin",), "pw_w": ("w", "cin", 1, 1), "pw_b": ("w",),
              "act_w": ("w",)}

    def conv_layout(self, name: str, sizes: dict[str, int]) -> tuple[int, int]:
        """The depthwise conv has one group per input channel."""
        groups = sizes["cin"] if name == "dw_w" else 1
        return groups, shape_of(self.params[name], sizes)[2] // 2

    def forward(self, x: torch.Tensor, p: dict[str, torch.Tensor], activation: str) -> torch.Tensor:  # noqa: D102
        h = F.conv2d(x, p["dw_w"], p["dw_b"], padding=1, groups=x.shape[1])
        return skip_add(activate(F.conv2d(h, p["pw_w"], p["pw_b"]), activation, p.get("act_w")), x)

    def module_forward(self, cell: nn.Module, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return skip_add(cell.act(cell.pw(cell.dw(x))), x)

    def deployed_convs(self, cin: int, width: int, layers: list[int], activation: str) -> list[DeployedConv]:
        """dwconv3x3 cin -> cin; [adapter]; conv1x1 cin -> w + act + residual."""
        return [DeployedConv("dw", cin, cin, 3, groups=cin), *adapter(cin, width),
                DeployedConv("pw", cin, width, 1, act=activation, residual=True)]


DWS = Dws()
