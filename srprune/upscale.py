"""Tiled super-resolution of images of any size with bounded memory.

The LR image is cut into tiles that overlap by at least the network's
receptive-field radius; each tile's output keeps only its own (non-overlap)
region. Since every kept output pixel then sees exactly the input it would see
untiled (zero padding at the image border is the same in both cases), the
result equals untiled inference up to float rounding.

`check_memory` refuses, from the image header and before any work, an upscale whose output is
over the pixel limit or whose untiled feature maps would not fit (then it suggests --tile).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from srprune.errors import InputError
from srprune.imageio import BYTES_PER_PIXEL, MAX_PIXELS_ENV, check_pixels, pixels_text


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


def widest_layer(model: nn.Module) -> int:
    """The most channels any conv of `model` outputs (its feature maps dominate untiled memory)."""
    return max((m.out_channels for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))),
               default=3)


def untiled_bytes(model: nn.Module, height: int, width: int) -> int:
    """Rough memory of the feature maps of one untiled pass: two float32 maps of the widest layer."""
    return 2 * 4 * widest_layer(model) * height * width


def check_memory(what: str, model: nn.Module, height: int, width: int, scale: int, tile: int, limit: int) -> None:
    """Refuse an upscale of a `width` x `height` input that would not fit: output over `limit` pixels, or
    untiled (`tile` 0) feature maps over the memory the limit stands for."""
    check_pixels(f"{what}: output", width * scale, height * scale, limit, f"--max-pixels or {MAX_PIXELS_ENV}")
    if tile <= 0 and untiled_bytes(model, height, width) > limit * BYTES_PER_PIXEL:
        need = untiled_bytes(model, height, width) / 2**20
        raise InputError(f"{what}: {width}x{height} untiled needs about {need:,.0f} MiB of feature maps, more than "
                         f"the pixel limit allows ({pixels_text(limit)}); use --tile 256")


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
