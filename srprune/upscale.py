"""Tiled super-resolution of images of any size with bounded memory.

The LR image is cut into tiles that overlap by at least the network's
receptive-field radius; each tile's output keeps only its own (non-overlap)
region. Since every kept output pixel then sees exactly the input it would see
untiled (zero padding at the image border is the same in both cases), the
result equals untiled inference up to float rounding.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def receptive_radius(model: nn.Module, scale: int) -> int:
    """An upper bound, in LR pixels, of how far an output pixel looks into the input.

    Adds the reach of every convolution in the model: a stride-1 conv reaches
    dilation * (k - 1) / 2 input pixels; a transposed conv in HR space
    (stride = scale) reaches ceil((k - 1) / 2 / stride) + 1 LR pixels. Convs
    after a PixelShuffle count in HR pixels and are converted to LR pixels.
    Other modules may declare an `lr_reach` attribute (bicubic resampling: 2).
    """
    radius = 0.0
    for m in model.modules():
        # Modules without convs that still look at neighbours (bicubic skips) declare their reach.
        radius += getattr(m, "lr_reach", 0)
        if isinstance(m, nn.ConvTranspose2d):
            radius += math.ceil((m.kernel_size[0] - 1) / 2 / m.stride[0]) + 1
        elif isinstance(m, nn.Conv2d):
            reach = m.dilation[0] * (m.kernel_size[0] - 1) / 2
            radius += reach / scale if getattr(m, "_after_upsample", False) else reach
    return int(math.ceil(radius))


@torch.no_grad()
def upscale_tensor(model: nn.Module, x: torch.Tensor, scale: int, tile: int = 256, overlap: int | None = None) -> torch.Tensor:
    """Run `model` on a 1x3xHxW tensor in tiles of `tile` LR pixels (0 = no tiling)."""
    model.eval()
    _, _, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return model(x)
    pad = max(receptive_radius(model, scale), overlap or 0)
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(y0 - pad, 0), max(x0 - pad, 0)
            yb, xb = min(y1 + pad, h), min(x1 + pad, w)
            sr = model(x[:, :, ya:yb, xa:xb])
            if out is None:
                out = x.new_zeros((1, sr.shape[1], h * scale, w * scale))
            oy, ox = (y0 - ya) * scale, (x0 - xa) * scale
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                sr[:, :, oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
    return out
