"""The parts of the network around the cells that block code shares: the head's roles and the bicubic skip."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from supernet.blocks.base import Role

HEAD_ROLES: dict[str, tuple[Role, ...]] = {"head_w": ("w", 3, 3, 3), "head_b": ("w",)}


def keys_cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel (a = -0.5: MATLAB's imresize bicubic)."""
    ax = x.abs()
    near = (a + 2) * ax**3 - (a + 3) * ax**2 + 1
    far = a * ax**3 - 5 * a * ax**2 + 8 * a * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def bicubic_kernel(scale: int) -> torch.Tensor:
    """Weights (3*s^2, 1, 5, 5) of a grouped conv that, before PixelShuffle(s), upsamples x s bicubically.

    Output phase p of LR pixel k samples the input at k + (p + 0.5)/s - 0.5 (pixel-centre
    alignment, as MATLAB and torch with align_corners=False); the taps k-2..k+2 cover every phase.
    Channel c*s^2 + i*s + j is colour c, sub-pixel row i, column j: PixelShuffle's order.
    """
    taps = torch.arange(-2, 3, dtype=torch.float64)
    phases = [(p + 0.5) / scale - 0.5 for p in range(scale)]
    w1d = torch.stack([keys_cubic(d - taps) for d in phases])  # (s, 5)
    w1d = w1d / w1d.sum(dim=1, keepdim=True)
    w2d = torch.einsum("it,ju->ijtu", w1d, w1d).reshape(scale * scale, 1, 5, 5)
    return w2d.repeat(3, 1, 1, 1).float()


def bicubic_skip(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The global skip before PixelShuffle: edge-replicated input through the fixed bicubic conv."""
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=3)
