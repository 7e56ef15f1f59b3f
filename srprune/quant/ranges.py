"""Ranges of activation tensors -> uint8 quantisation parameters (scale, zero point), per tensor.

Calibration (post-training) collects each tensor over the calibration images: "minmax" takes the extremes,
"percentile" the p-th and (100-p)-th percentiles of a fixed-seed sample of the values (clipping rare outliers
buys resolution for the bulk of the values). QAT then moves the ranges by an exponential moving average of the
same statistic per batch. Every range includes 0, so the real zero is an exact code (zero padding stays exact).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from srprune.errors import InputError

METHODS = ("minmax", "percentile")
_SAMPLE = 1 << 18  # values kept per calibration batch for percentiles
_EMA_SAMPLE = 1 << 16  # values per training batch for percentiles


def check_method(method: str, percentile: float) -> None:
    """InputError for an unknown method or a percentile outside (50, 100]."""
    if method not in METHODS:
        raise InputError(f"unknown calibration method {method!r} (known: {', '.join(METHODS)})")
    if not 50.0 < float(percentile) <= 100.0:
        raise InputError(f"percentile must be in (50, 100], got {percentile}")


def qparams_from_range(lo: float, hi: float) -> tuple[float, int]:
    """(scale as a float32 value, zero point in [0, 255]) of uint8 codes covering [min(lo, 0), max(hi, 0)]."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-8:  # a dead tensor (all zeros): any positive scale is exact
        hi = lo + 1e-8 * 255
    scale = float(np.float32((hi - lo) / 255.0))
    zero = int(np.clip(np.rint(-lo / scale), 0, 255))
    return scale, zero


def _stat(values: torch.Tensor, method: str, percentile: float) -> tuple[float, float]:
    if method == "minmax":
        return float(values.min()), float(values.max())
    q = torch.tensor([1.0 - percentile / 100.0, percentile / 100.0], dtype=values.dtype)
    lo, hi = torch.quantile(values, q)
    return float(lo), float(hi)


def _sample(y: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    flat = y.detach().reshape(-1).float().cpu()
    if flat.numel() <= n:
        return flat
    return flat[torch.randint(flat.numel(), (n,), generator=gen)]


class RangeObserver(nn.Module):
    """The range of one uint8 tensor: calibrated (`collect` then `finish`), EMA-updated in QAT, fake quantisation."""

    def __init__(self, method: str = "minmax", percentile: float = 99.99, momentum: float = 0.01) -> None:
        super().__init__()
        check_method(method, percentile)
        self.method, self.percentile, self.momentum = method, float(percentile), momentum
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))
        self._samples: list[torch.Tensor] = []
        self._gen = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def collect(self, y: torch.Tensor) -> None:
        """Calibration: remember extremes (minmax) or a sample of the values (percentile)."""
        if self.method == "minmax":
            lo, hi = float(y.min()), float(y.max())
            if bool(self.ready):
                lo, hi = min(lo, float(self.lo)), max(hi, float(self.hi))
            self.lo.fill_(lo), self.hi.fill_(hi), self.ready.fill_(True)
        else:
            self._samples.append(_sample(y, _SAMPLE, self._gen))

    def finish(self) -> None:
        """Calibration done: the percentile range of everything collected."""
        if self.method == "percentile" and self._samples:
            values = torch.cat(self._samples)
            if values.numel() > (1 << 23):  # torch.quantile's input limit is 2^24
                values = values[torch.randperm(values.numel(), generator=self._gen)[: 1 << 23]]
            lo, hi = _stat(values, self.method, self.percentile)
            self.lo.fill_(lo), self.hi.fill_(hi), self.ready.fill_(True)
            self._samples = []
        if not bool(self.ready):
            raise InputError("calibration saw no data")

    @torch.no_grad()
    def ema(self, y: torch.Tensor) -> None:
        """QAT: move the range towards this batch's statistic."""
        lo, hi = _stat(_sample(y, _EMA_SAMPLE, self._gen), self.method, self.percentile)
        m = self.momentum
        self.lo.mul_(1 - m).add_(m * lo)
        self.hi.mul_(1 - m).add_(m * hi)

    def qparams(self) -> tuple[float, int]:
        """(scale, zero point) of the current range."""
        return qparams_from_range(float(self.lo), float(self.hi))

    def fake_quant(self, y: torch.Tensor) -> torch.Tensor:
        """uint8 quantise-dequantise with a straight-through gradient (inside the range)."""
        scale, zero = self.qparams()
        q = torch.clamp(torch.round(y / scale) + zero, 0, 255)
        out = (q - zero) * scale
        return y + (out - y).detach()
