"""MATLAB-compatible bicubic upscaling as a weightless model: the baseline every SR table starts from."""

from __future__ import annotations

import torch
from torch import nn

from srprune.imresize import imresize_tensor
from srprune.models.registry import register


@register("bicubic", scales=(2, 3, 4))
class Bicubic(nn.Module):
    """Upscale NCHW float [0, 1] by `scale` with MATLAB's bicubic (the benchmark protocol's kernel).

    It has no weights and no convolutions, so it counts as 0 params and 0 MACs.
    Its 4-tap kernel looks 2 LR pixels each way (`lr_reach`, used by tiled inference).
    """

    lr_reach = 2

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return imresize_tensor(x, scale=self.scale)
