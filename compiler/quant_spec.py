"""The int8 layer contract (docs/quantization.md) as data, plus its numpy integer reference.

One home for the arithmetic both sides must agree on: srprune/quant produces `QConv` layers from a calibrated
model and evaluates with the same numbers; the compiler's int8 kernels consume them and are tested against
`reference_conv`. numpy int64 arithmetic is the independent reference (no TVM, no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ACTIVATIONS_WITHOUT_PARAMS = ("none", "relu", "tanh", "sigmoid", "silu", "hardswish", "gelu", "gelu_tanh")


@dataclass(frozen=True)
class QParams:
    """uint8 asymmetric per-tensor quantisation: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be finite and > 0, not {self.scale}")
        if not 0 <= int(self.zero_point) <= 255:
            raise ValueError(f"zero_point must be in [0, 255], not {self.zero_point}")


IMAGE_INPUT = QParams(scale=1.0 / 255.0, zero_point=0)  # the network input is the uint8 image itself


@dataclass
class QConv:
    """One int8 conv: int8 weights (O, I, kh, kw) per output channel, int32 bias, fused epilogue.

    `output is None`: the layer writes float32 (the tail, before PixelShuffle and the global skip, or in a
    mixed-precision network a tensor that only fp32 layers read: `FloatConv`).
    `activation` is one of ACTIVATIONS_WITHOUT_PARAMS, "prelu" (slopes per output channel in `act_param`)
    or "leaky_relu" (one slope in `act_param`).
    """

    weight: np.ndarray  # int8 (O, I, kh, kw), values in [-127, 127]
    weight_scale: np.ndarray  # float32 (O,)
    bias: np.ndarray  # int32 (O,)
    input: QParams
    output: QParams | None
    activation: str = "none"
    act_param: np.ndarray | None = None
    padding: int = 1
    residual: QParams | None = None  # an extra uint8 input added after the activation
    name: str = field(default="")

    def __post_init__(self) -> None:
        if self.weight.dtype != np.int8 or self.weight.ndim != 4:
            raise ValueError("weight must be int8 (O, I, kh, kw)")
        if self.weight.min(initial=0) < -127:
            raise ValueError("weight holds -128; the contract allows [-127, 127]")
        out_ch = self.weight.shape[0]
        if self.weight_scale.shape != (out_ch,) or self.bias.shape != (out_ch,):
            raise ValueError("weight_scale and bias need one value per output channel")
        if self.bias.dtype != np.int32:
            raise ValueError("bias must be int32")

    def multiplier(self) -> np.ndarray:
        """m[o] = float32(s_x * s_w[o]): what turns the int32 accumulator into a real value."""
        return (np.float64(self.input.scale) * self.weight_scale.astype(np.float64)).astype(np.float32)


@dataclass
class FloatConv:
    """A layer kept in fp32 inside an int8 network (a mixed-precision model): float32 weights, bias and epilogue.

    Its tensors are uint8 codes where an int8 layer produces or reads them: `input` / `residual` are the QParams of
    a uint8 input / residual (dequantised where read, s * float32(q - z)) or None for a float32 one (whether the
    layer has a residual at all is the network's wiring); `output` the QParams it requantises its result to, or
    None to write float32 (the tail, or a tensor that only fp32 layers read).
    """

    weight: np.ndarray  # float32 (O, I / groups, kh, kw)
    bias: np.ndarray  # float32 (O,)
    input: QParams | None
    output: QParams | None
    activation: str = "none"
    act_param: np.ndarray | None = None
    padding: int = 1
    residual: QParams | None = None
    groups: int = 1
    name: str = field(default="")

    def __post_init__(self) -> None:
        self.weight = np.asarray(self.weight, np.float32)
        self.bias = np.asarray(self.bias, np.float32)
        if self.weight.ndim != 4 or self.weight.shape[0] % self.groups or self.bias.shape != self.weight.shape[:1]:
            raise ValueError("weight must be float32 (O, I / groups, kh, kw) with one bias per output channel")


def dequantize(t: np.ndarray, params: QParams | None) -> np.ndarray:
    """uint8 codes as float32 s * float32(q - z) (params given), or a float32 tensor as it is (None)."""
    if params is None:
        return np.asarray(t, np.float32)
    return (np.float32(params.scale) * (t.astype(np.int32) - int(params.zero_point)).astype(np.float32)).astype(
        np.float32)


def quantize_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weight in [-127, 127], float32 scale per output channel): symmetric, max |w| -> 127 (an all-zero
    channel gets scale 1). One home for the contract's weight rule: srprune's PTQ/QAT and the latency table's int8
    entries quantise with it, so an exact zero (a pruned weight) stays an exact int8 zero."""
    w = np.asarray(weight, np.float32)
    amax = np.abs(w).reshape(w.shape[0], -1).max(axis=1) if w.size else np.zeros(w.shape[0], np.float32)
    scale = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(w.astype(np.float64) / scale.astype(np.float64).reshape(-1, *[1] * (w.ndim - 1))), -127, 127)
    return q.astype(np.int8), scale


def block_diagonal(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped weight (O, I/g, k, k) as the dense block-diagonal (O, I, k, k) it equals (zeros elsewhere): how a
    grouped conv reaches the int8 kernels, which have no grouped form."""
    out_ch, per, k, kw = weight.shape
    dense = np.zeros((out_ch, per * groups, k, kw), dtype=weight.dtype)
    per_out = out_ch // groups
    for g in range(groups):
        dense[g * per_out:(g + 1) * per_out, g * per:(g + 1) * per] = weight[g * per_out:(g + 1) * per_out]
    return dense


def quantize_bias(bias: np.ndarray, input_scale: float, weight_scale: np.ndarray) -> np.ndarray:
    """b_q[o] = round_half_even(b[o] / (s_x * s_w[o])) as int32."""
    q = np.rint(bias.astype(np.float64) / (np.float64(input_scale) * weight_scale.astype(np.float64)))
    return np.clip(q, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)


def activation_f32(y: np.ndarray, name: str, param: np.ndarray | None = None) -> np.ndarray:
    """The float32 activations of step 3 (exact functions; kernels approximate within the fp32 tolerance)."""
    y = y.astype(np.float32)
    if name == "none":
        return y
    if name == "relu":
        return np.maximum(y, np.float32(0))
    if name == "prelu":
        slope = np.asarray(param, np.float32).reshape(1, -1, 1, 1)
        return np.where(y >= 0, y, y * slope).astype(np.float32)
    if name == "leaky_relu":
        return np.where(y >= 0, y, y * np.float32(param)).astype(np.float32)
    if name == "tanh":
        return np.tanh(y).astype(np.float32)
    if name == "sigmoid":
        return (1.0 / (1.0 + np.exp(-y.astype(np.float64)))).astype(np.float32)
    if name == "silu":
        return (y / (1.0 + np.exp(-y.astype(np.float64)))).astype(np.float32)
    if name == "hardswish":
        return (y * np.clip(y + 3.0, 0.0, 6.0) / 6.0).astype(np.float32)
    if name in ("gelu", "gelu_tanh"):
        from math import erf, pi, sqrt

        y64 = y.astype(np.float64)
        if name == "gelu":
            return (0.5 * y64 * (1.0 + np.vectorize(erf)(y64 / sqrt(2.0)))).astype(np.float32)
        return (0.5 * y64 * (1.0 + np.tanh(sqrt(2.0 / pi) * (y64 + 0.044715 * y64**3)))).astype(np.float32)
    raise ValueError(f"unknown activation {name!r}")


def accumulate(q_x: np.ndarray, layer: QConv) -> np.ndarray:
    """Step 1: acc[n, o, y, x] = sum (q_x - z_x) * w_q in exact integers (int64, checked to fit int32)."""
    pad = layer.padding
    x = q_x.astype(np.int64) - int(layer.input.zero_point)
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))  # padding holds z_x: zero after the shift
    kh, kw = layer.weight.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))  # n, i, h, w, kh, kw
    acc = np.einsum("nihwab,oiab->nohw", windows, layer.weight.astype(np.int64), optimize=True)
    if acc.size and (acc.max() > np.iinfo(np.int32).max or acc.min() < np.iinfo(np.int32).min):
        raise OverflowError(f"{layer.name or 'conv'}: int32 accumulator overflows")
    return acc


def reference_conv(q_x: np.ndarray, layer: QConv, q_residual: np.ndarray | None = None) -> np.ndarray:
    """The whole contract for one layer: uint8 NCHW in, uint8 NCHW out (float32 for the tail)."""
    acc = accumulate(q_x, layer) + layer.bias.astype(np.int64).reshape(1, -1, 1, 1)
    y = acc.astype(np.float32) * layer.multiplier().reshape(1, -1, 1, 1)
    y = activation_f32(y, layer.activation, layer.act_param)
    if layer.residual is not None:
        if q_residual is None:
            raise ValueError("layer has a residual input but none was given")
        r = (q_residual.astype(np.int32) - int(layer.residual.zero_point)).astype(np.float32)
        y = (y + np.float32(layer.residual.scale) * r).astype(np.float32)
    if layer.output is None:
        return y.astype(np.float32)
    inv = np.float32(1.0 / layer.output.scale)
    q = np.rint((y * inv).astype(np.float32)) + int(layer.output.zero_point)
    return np.clip(q, 0, 255).astype(np.uint8)


def reference_float_conv(x: np.ndarray, layer: FloatConv, residual: np.ndarray | None = None) -> np.ndarray:
    """An fp32 layer of a mixed network: input dequantised, conv summed in float64 and rounded to float32, + bias,
    activation, + residual (dequantised, already sliced or padded to the width), requantised unless output is None.
    (The kernel sums in float32: the two agree to float32 rounding, so a requantised code may differ by one.)"""
    pad = layer.padding
    w = layer.weight if layer.groups == 1 else block_diagonal(layer.weight, layer.groups)
    xf = np.pad(dequantize(x, layer.input).astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(xf, (kh, kw), axis=(2, 3))
    acc = np.einsum("nihwab,oiab->nohw", windows, w.astype(np.float64), optimize=True).astype(np.float32)
    y = activation_f32(acc + layer.bias.reshape(1, -1, 1, 1), layer.activation, layer.act_param)
    if residual is not None:
        y = (y + dequantize(residual, layer.residual)).astype(np.float32)
    if layer.output is None:
        return y.astype(np.float32)
    inv = np.float32(1.0 / layer.output.scale)
    q = np.rint((y * inv).astype(np.float32)) + int(layer.output.zero_point)
    return np.clip(q, 0, 255).astype(np.uint8)
