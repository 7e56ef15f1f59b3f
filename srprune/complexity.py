"""Model size and compute: parameters and multiply-accumulates (MACs) per frame.

MACs follow the SR literature: one multiply-add per kernel tap per output element of each
convolution and linear layer; biases, activations, additions, PixelShuffle and resizing are
not counted. A MAC count is only meaningful with its frame size, so `macs_for_output` states
it as an output resolution (720p = 1280x720 by default).

Models with a training-only form (ECBSR) are counted in their deployed form by default,
because that is what runs on the device.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from srprune.errors import InputError
from srprune.models.registry import deploy


def count_params(model: nn.Module, deployed: bool = True) -> int:
    """Number of parameters (weights, biases, PReLU slopes), of the deployed form unless `deployed=False`.

    Buffers (e.g. ECB's fixed Sobel masks) are not parameters and are not counted.
    """
    target = deploy(model) if deployed else model
    return sum(p.numel() for p in target.parameters())


def _conv_macs(mod: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    kernel = math.prod(mod.kernel_size)
    if isinstance(mod, _ConvTransposeNd):
        # A transposed conv scatters every input element into out_ch/groups x kernel outputs.
        return inp.numel() * (mod.out_channels // mod.groups) * kernel
    return out.numel() * (mod.in_channels // mod.groups) * kernel


def _check_hw(input_hw: tuple[int, int], what: str) -> tuple[int, int]:
    if (not isinstance(input_hw, (tuple, list)) or len(input_hw) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_hw)):
        raise InputError(f"{what} must be two positive integers (height, width), got {input_hw!r}")
    return int(input_hw[0]), int(input_hw[1])


def count_macs(model: nn.Module, input_hw: tuple[int, int], channels: int | None = None,
               deployed: bool = True) -> int:
    """MACs of one forward pass on a batch-1 frame of `input_hw` = (height, width).

    Runs the model on the meta device (shapes only, no arithmetic, no copy of the weights),
    counting Conv*/ConvTranspose*/Linear layers through forward hooks. Convolutions done with
    functional calls inside a module's forward are invisible to the hooks; the deployed forms
    of the reference models use modules only. `channels` defaults to the model's
    `arch["config"]["colors"]`, else 3.
    """
    h, w = _check_hw(input_hw, "input_hw")
    target = deploy(model) if deployed else model
    if channels is None:
        channels = getattr(target, "arch", {}).get("config", {}).get("colors", 3)
    total = 0

    def hook(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, _ConvNd):
            total += _conv_macs(mod, args[0], out)
        else:  # nn.Linear: in_features MACs per output element
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in target.modules() if isinstance(m, (_ConvNd, nn.Linear))]
    try:
        tensors = {name: torch.empty_like(t, device="meta") for name, t in
                   [*target.named_parameters(), *target.named_buffers()]}
        x = torch.empty(1, channels, h, w, device="meta")
        with torch.no_grad():
            torch.func.functional_call(target, tensors, (x,))
    finally:
        for handle in handles:
            handle.remove()
    return total


def macs_for_output(model: nn.Module, scale: int, out_hw: tuple[int, int] = (720, 1280)) -> int:
    """MACs per frame for an output of `out_hw` = (height, width), 720p (1280x720) by default.

    The input is out_hw // scale in each dimension. Where the output is not a multiple of the
    scale the input is floored: x3 at 720p counts a 240x426 input (a 720x1278 output).
    """
    out_h, out_w = _check_hw(out_hw, "out_hw")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale!r}")
    model_scale = getattr(model, "scale", None)
    if model_scale is not None and model_scale != scale:
        raise InputError(f"model is for x{model_scale}, not x{scale}")
    if out_h < scale or out_w < scale:
        raise InputError(f"output {out_w}x{out_h} is smaller than one input pixel at x{scale}")
    return count_macs(model, (out_h // scale, out_w // scale))
