"""Fast accuracy proxy: a genome's PSNR with the shared weights, no training of its own.

PSNR follows the project protocol (DESIGN.md): the SR output rounded to uint8, ITU-R BT.601 Y
(Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 on [0, 255] RGB) in float64, `crop_border =
scale`. It is reimplemented here on tensors because `supernet` must not import `srprune`; a
caller who wants srprune's metric passes it as `metric`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from supernet.space import Genome

Pair = tuple[torch.Tensor, torch.Tensor]
Metric = Callable[[torch.Tensor, torch.Tensor, int], float]

_Y = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64) / 255.0


def to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float image -> float64 in {0..255}, rounded as the protocol does before measuring."""
    return (x.detach().double().clamp(0, 1) * 255.0).round()


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, crop_border: int) -> float:
    """PSNR-Y in dB of one 3xHxW (or 1x3xHxW) image pair in [0, 1]; inf when identical."""
    sr, hr = sr.reshape(-1, *sr.shape[-2:]), hr.reshape(-1, *hr.shape[-2:])
    if sr.shape != hr.shape or sr.shape[0] != 3:
        raise ValueError(f"expected two 3xHxW images of one size, got {tuple(sr.shape)} and {tuple(hr.shape)}")
    ys = torch.einsum("chw,c->hw", to_uint8_levels(sr), _Y) + 16.0
    yh = torch.einsum("chw,c->hw", to_uint8_levels(hr), _Y) + 16.0
    if crop_border:
        ys = ys[crop_border:-crop_border, crop_border:-crop_border]
        yh = yh[crop_border:-crop_border, crop_border:-crop_border]
    mse = float(((ys - yh) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


@torch.no_grad()
def proxy_psnr(supernet: nn.Module, genome: Genome | dict, val_pairs: Sequence[Pair],
               metric: Metric | None = None) -> float:
    """Mean PSNR over `val_pairs` ((lr, hr) float tensors, 3xhxw or 1x3xhxw) of `genome` on the shared weights.

    `metric(sr, hr, crop_border)` replaces the built-in PSNR-Y when given.
    """
    g = supernet.check(genome) if hasattr(supernet, "check") else Genome.coerce(genome)
    metric = metric or psnr_y
    was_training = supernet.training
    supernet.eval()
    ref = next(supernet.parameters())
    scores = []
    try:
        for lr, hr in val_pairs:
            lr = lr.reshape(1, *lr.shape[-3:]).to(device=ref.device, dtype=ref.dtype)
            sr = supernet(lr, g)[0].cpu()
            scores.append(metric(sr, hr.reshape(hr.shape[-3:]).cpu(), g.scale))
    finally:
        supernet.train(was_training)
    return float(sum(scores) / len(scores))
