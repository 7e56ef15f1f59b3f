"""ECBSR (Zhang, Zeng, Zhang, ACM MM 2021): train with multi-branch Edge-oriented Convolution Blocks,
run as plain 3x3 convs.

Every ECB is a sum of linear branches (conv3x3, conv1x1->conv3x3, conv1x1->Sobel-x,
conv1x1->Sobel-y, conv1x1->Laplacian, identity), so it collapses exactly into one conv3x3.
Training gets the richer form; the phone only ever runs the plain one (`deploy`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srprune.models._config import activation, choice, flag, positive_float, positive_int
from srprune.models.registry import register

_SOBEL_X = [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]
_SOBEL_Y = [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]
_LAPLACIAN = [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]
EDGE_FILTERS = {"sobelx": _SOBEL_X, "sobely": _SOBEL_Y, "laplacian": _LAPLACIAN}


def _pad_with_bias(y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Pad a bias-free 1x1 output by one pixel and add the bias everywhere.

    The border then holds the 1x1 conv's bias, which is what a single merged conv3x3 with zero
    padding sees; padding with zeros instead would make the merge inexact at the image border.
    """
    return F.pad(y, (1, 1, 1, 1)) + bias.view(1, -1, 1, 1)


class Conv1x1Conv3x3(nn.Module):
    """conv1x1 (in -> mid) then conv3x3 (mid -> out); mid = out * depth_multiplier."""

    def __init__(self, in_ch: int, out_ch: int, depth_multiplier: float) -> None:
        super().__init__()
        mid = max(1, int(out_ch * depth_multiplier))
        self.conv0 = nn.Conv2d(in_ch, mid, 1)
        self.conv1 = nn.Conv2d(mid, out_ch, 3)  # no padding: the border comes from _pad_with_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y0 = _pad_with_bias(F.conv2d(x, self.conv0.weight), self.conv0.bias)
        return self.conv1(y0)

    def rep_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The equivalent conv3x3 kernel (out, in, 3, 3) and bias (out)."""
        k0 = self.conv0.weight[:, :, 0, 0]  # (mid, in)
        k1 = self.conv1.weight  # (out, mid, 3, 3)
        kernel = torch.einsum("omhw,mi->oihw", k1, k0)
        bias = self.conv1.bias + torch.einsum("omhw,m->o", k1, self.conv0.bias)
        return kernel, bias


class Conv1x1Edge(nn.Module):
    """conv1x1 (in -> out) then a fixed edge filter per channel, scaled by a learned per-channel factor."""

    def __init__(self, in_ch: int, out_ch: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv0 = nn.Conv2d(in_ch, out_ch, 1)
        # Small random scale and bias, as in the reference implementation.
        self.scale = nn.Parameter(torch.randn(out_ch, 1, 1) * 1e-3)
        self.bias = nn.Parameter(torch.randn(out_ch) * 1e-3)
        self.register_buffer("mask", torch.tensor(EDGE_FILTERS[kind]), persistent=False)

    def _depthwise_kernel(self) -> torch.Tensor:
        return self.scale * self.mask  # (out, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y0 = _pad_with_bias(F.conv2d(x, self.conv0.weight), self.conv0.bias)
        kd = self._depthwise_kernel().unsqueeze(1)  # (out, 1, 3, 3)
        return F.conv2d(y0, kd, self.bias, groups=kd.shape[0])

    def rep_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The equivalent conv3x3 kernel (out, in, 3, 3) and bias (out)."""
        kd = self._depthwise_kernel()
        kernel = kd.unsqueeze(1) * self.conv0.weight  # (out,1,3,3) * (out,in,1,1)
        bias = self.bias + self.conv0.bias * kd.sum(dim=(1, 2))
        return kernel, bias


class ECB(nn.Module):
    """Edge-oriented Convolution Block (training form): sum of six linear branches, then the activation."""

    def __init__(self, in_ch: int, out_ch: int, depth_multiplier: float, act: str, with_idt: bool) -> None:
        super().__init__()
        self.in_ch, self.out_ch = in_ch, out_ch
        self.conv3x3 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv1x1_3x3 = Conv1x1Conv3x3(in_ch, out_ch, depth_multiplier)
        self.conv1x1_sbx = Conv1x1Edge(in_ch, out_ch, "sobelx")
        self.conv1x1_sby = Conv1x1Edge(in_ch, out_ch, "sobely")
        self.conv1x1_lpl = Conv1x1Edge(in_ch, out_ch, "laplacian")
        self.with_idt = with_idt and in_ch == out_ch  # identity only where shapes allow
        self.act = activation(act, out_ch)

    def _branches(self) -> tuple[nn.Module, ...]:
        return (self.conv1x1_3x3, self.conv1x1_sbx, self.conv1x1_sby, self.conv1x1_lpl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = self.conv3x3(x)
        for branch in self._branches():
            y = y + branch(x)
        if self.with_idt:
            y = y + x
        return self.act(y)

    def rep_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single conv3x3 (kernel, bias) equal to the sum of all branches."""
        kernel, bias = self.conv3x3.weight, self.conv3x3.bias
        for branch in self._branches():
            k, b = branch.rep_params()
            kernel, bias = kernel + k, bias + b
        if self.with_idt:
            eye = torch.eye(self.out_ch, dtype=kernel.dtype, device=kernel.device)
            kernel = kernel + F.pad(eye.view(self.out_ch, self.out_ch, 1, 1), (1, 1, 1, 1))
        return kernel, bias


class PlainConv(nn.Module):
    """Deployed form of an ECB: one conv3x3 and the activation."""

    def __init__(self, in_ch: int, out_ch: int, act: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.act = activation(act, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.act(self.conv(x))


@register("ecbsr", scales=(2, 3, 4))
class ECBSR(nn.Module):
    """ECBSR-M{blocks}C{width}: head ECB (colors -> width), `blocks` ECBs, tail ECB (width -> colors*scale^2,
    linear), plus the input repeated over scale^2 channels (a nearest-neighbour skip), then PixelShuffle.

    `deployed=True` builds the plain form (one conv3x3 per layer); `deploy()` converts a trained
    multi-branch model into it with the same output.
    """

    def __init__(self, scale: int, blocks: int = 4, width: int = 16, act: str = "prelu", with_idt: bool = True,
                 depth_multiplier: float = 2.0, colors: int = 3, deployed: bool = False) -> None:
        super().__init__()
        name = "ecbsr"
        self.scale = scale
        self.config = {
            "blocks": positive_int(name, "blocks", blocks, minimum=0),
            "width": positive_int(name, "width", width),
            "act": choice(name, "act", act, ("prelu", "relu")),
            "with_idt": flag(name, "with_idt", with_idt),
            "depth_multiplier": positive_float(name, "depth_multiplier", depth_multiplier),
            "colors": positive_int(name, "colors", colors),
            "deployed": flag(name, "deployed", deployed),
        }
        shapes = [(colors, width, act)] + [(width, width, act)] * blocks + [(width, colors * scale * scale, "linear")]
        if deployed:
            layers = [PlainConv(i, o, a) for i, o, a in shapes]
        else:
            layers = [ECB(i, o, depth_multiplier, a, with_idt) for i, o, a in shapes]
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # repeat_interleave puts each input channel on the scale^2 sub-pixels PixelShuffle gathers
        # for that channel: the skip is nearest-neighbour upscaling of the input.
        skip = x.repeat_interleave(self.scale * self.scale, dim=1)
        return self.upsampler(self.body(x) + skip)

    @torch.no_grad()
    def deploy(self) -> "ECBSR":
        """The plain form with re-parameterised weights (self if already plain)."""
        if self.config["deployed"]:
            return self
        plain = ECBSR(self.scale, **{**self.config, "deployed": True})
        for ecb, layer in zip(self.body, plain.body):
            kernel, bias = ecb.rep_params()
            layer.conv.weight.copy_(kernel)
            layer.conv.bias.copy_(bias)
            layer.act.load_state_dict(ecb.act.state_dict())
        return plain
