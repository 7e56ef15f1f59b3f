"""FSRCNN (Dong, Loy, Tang, ECCV 2016), on RGB: the classic compact SR network with a learned upsampler."""

from __future__ import annotations

import math

import torch
from torch import nn

from srprune.models._config import positive_int
from srprune.models.registry import register


@register("fsrcnn", scales=(2, 3, 4))
class FSRCNN(nn.Module):
    """FSRCNN(d, s, m): conv5x5 d -> conv1x1 s -> m x conv3x3 s -> conv1x1 d -> deconv9x9 (stride = scale).

    Every conv is followed by a per-channel PReLU, as in the paper. The paper works on the Y
    channel (`colors=1`); here the default is RGB (`colors=3`). There is no global skip (the
    paper has none). The 9x9 deconvolution uses padding 4 and output_padding scale-1, so an
    HxW input gives exactly (scale*H)x(scale*W).
    """

    def __init__(self, scale: int, d: int = 56, s: int = 12, m: int = 4, colors: int = 3) -> None:
        super().__init__()
        name = "fsrcnn"
        d, s = positive_int(name, "d", d), positive_int(name, "s", s)
        m, colors = positive_int(name, "m", m, minimum=0), positive_int(name, "colors", colors)
        self.scale = scale
        self.feature = nn.Sequential(nn.Conv2d(colors, d, 5, padding=2), nn.PReLU(d))
        self.shrink = nn.Sequential(nn.Conv2d(d, s, 1), nn.PReLU(s))
        mapping: list[nn.Module] = []
        for _ in range(m):
            mapping += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        self.mapping = nn.Sequential(*mapping)
        self.expand = nn.Sequential(nn.Conv2d(s, d, 1), nn.PReLU(d))
        self.deconv = nn.ConvTranspose2d(d, colors, 9, stride=scale, padding=4, output_padding=scale - 1)
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper: He (MSRA) init for convs, N(0, 0.001) for the deconvolution, zero biases.
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                fan_out = mod.out_channels * mod.kernel_size[0] * mod.kernel_size[1]
                nn.init.normal_(mod.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.deconv.weight, 0.0, 0.001)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.deconv(self.expand(self.mapping(self.shrink(self.feature(x)))))
