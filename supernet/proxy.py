"""Fast accuracy proxy: a genome's PSNR with the shared weights, no training of its own.

PSNR follows the project protocol (DESIGN.md): the SR output rounded to uint8, ITU-R BT.601 Y
(Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 on [0, 255] RGB) in float64, `crop_border =
scale`. `psnr_y` is srcommon.metrics' (the one home of the formula, shared with srprune's
evaluation: supernet must not import srprune); a caller may pass another `metric`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from srcommon.metrics import psnr_y
from supernet.space import Genome

__all__ = ["Metric", "Pair", "proxy_psnr", "psnr_y"]

Pair = tuple[torch.Tensor, torch.Tensor]
Metric = Callable[[torch.Tensor, torch.Tensor, int], float]


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
