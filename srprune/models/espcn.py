"""ESPCN (Shi et al., CVPR 2016): three convs in LR space and a sub-pixel (PixelShuffle) upsampler."""

from __future__ import annotations

import torch
from torch import nn

from srprune.models._config import activation, choice, positive_int
from srprune.models.registry import register


@register("espcn", scales=(2, 3, 4))
class ESPCN(nn.Module):
    """conv5x5 f1 -> act -> conv3x3 f2 -> act -> conv3x3 colors*scale^2 -> PixelShuffle(scale).

    The paper's setting is f1=64, f2=32 with tanh; relu is offered as the common variant.
    No activation after the last conv and no global skip (the paper has none).
    """

    def __init__(self, scale: int, f1: int = 64, f2: int = 32, act: str = "tanh", colors: int = 3) -> None:
        super().__init__()
        name = "espcn"
        f1, f2 = positive_int(name, "f1", f1), positive_int(name, "f2", f2)
        colors = positive_int(name, "colors", colors)
        act = choice(name, "act", act, ("tanh", "relu"))
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(colors, f1, 5, padding=2), activation(act, f1),
            nn.Conv2d(f1, f2, 3, padding=1), activation(act, f2),
            nn.Conv2d(f2, colors * scale * scale, 3, padding=1),
        )
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.upsampler(self.body(x))
