"""The quantised model: the registered architecture "quantized", which runs the int8 contract in PyTorch.

Why a registered architecture: a quantised model file is then an ordinary model file (plain-data arch + a
state_dict of tensors, loaded with weights_only=True), and `srprune eval`, `upscale` and `info` take it like any
other model, running exactly the integer arithmetic of docs/quantization.md (so PSNR of a quantised model is the
PSNR of what ships). Its config records the structure and per-layer precision; the state_dict holds int8
weights, int32 biases, float32 weight scales, PReLU slopes and the per-tensor (scale, zero point) as float64 /
int32 vectors (float64 so that the image's exact s = 1/255 of the contract is kept; other scales are float32
values).

Mixed precision (a searched network whose fragile layers stay fp32): a layer's precision is int8 or fp32. A
tensor is uint8 codes exactly when an int8 layer reads it (the image always is); an fp32 layer reads codes
dequantised ((q - z) * s in float32) and computes in float32 (weights and bias as float32 buffers); its output is
requantised when an int8 layer reads it, else it stays float32, and so does an int8 layer's output that only fp32
layers read. A mixed model compiles to the same int8 c-lib: its fp32 layers are compiler.quant_spec.FloatConv layers
(the fp32 kernels with the codes converted at their edges, `to_layers`).

The integer path: a conv of (q_x - z_x) with int8 weights in float64 is exact (every partial sum is an integer
far below 2^53), then the contract's float32 steps in its order. `to_layers` hands the same numbers to the
compiler as `compiler.quant_spec.QConv` objects; tests/test_quant.py checks both against `reference_conv`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compiler.quant_spec import IMAGE_INPUT, FloatConv, QConv, QParams, activation_f32, block_diagonal
from srprune.errors import InputError
from srprune.models.registry import register

NAME = "quantized"
PRECISIONS = ("int8",)  # weights int8, activations uint8, the tail's output float32
LAYER_PRECISIONS = ("int8", "fp32")  # a layer of a mixed-precision model (module docstring)
ACTS = ("none", "relu", "prelu", "tanh")
_SKIPS = ("none", "repeat", "bicubic")
_LAYER_KEYS = ("name", "precision", "act", "in", "out", "k", "groups", "src", "residual", "tail")


class QLayer(nn.Module):
    """One conv's tensors (buffers: nothing here is trained): int8 weights, float32 scales and int32 bias, or for an
    fp32 layer float32 weights and bias."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        o, i, k, g = spec["out"], spec["in"], spec["k"], spec["groups"]
        self.spec = spec
        if spec["precision"] == "fp32":
            self.register_buffer("weight", torch.zeros((o, i // g, k, k), dtype=torch.float32))
            self.register_buffer("bias", torch.zeros(o, dtype=torch.float32))
        else:
            self.register_buffer("weight", torch.zeros((o, i // g, k, k), dtype=torch.int8))
            self.register_buffer("weight_scale", torch.ones(o, dtype=torch.float32))
            self.register_buffer("bias", torch.zeros(o, dtype=torch.int32))
        if spec["act"] == "prelu":
            self.register_buffer("act_param", torch.zeros(o, dtype=torch.float32))


def _check_layers(layers: Any) -> list[dict[str, Any]]:
    if not isinstance(layers, list) or not layers:
        raise InputError(f"model {NAME}: layers must be a non-empty list")
    out = []
    for n, spec in enumerate(layers):
        if not isinstance(spec, dict) or set(_LAYER_KEYS) - set(spec):
            raise InputError(f"model {NAME}: layer {n} must have keys {', '.join(_LAYER_KEYS)}")
        if spec["precision"] not in LAYER_PRECISIONS:
            raise InputError(f"model {NAME}: layer {spec['name']}: unknown precision {spec['precision']!r} "
                             f"(known: {', '.join(LAYER_PRECISIONS)})")
        if spec["act"] not in ACTS:
            raise InputError(f"model {NAME}: layer {spec['name']}: unknown activation {spec['act']!r}")
        for key in ("in", "out", "k", "groups"):
            if isinstance(spec[key], bool) or not isinstance(spec[key], int) or spec[key] < 1:
                raise InputError(f"model {NAME}: layer {spec['name']}: {key} must be a positive integer")
        ids = [spec["src"]] + ([spec["residual"]] if spec["residual"] is not None else [])
        if any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= n for t in ids):
            raise InputError(f"model {NAME}: layer {spec['name']}: inputs must be earlier tensors")
        if bool(spec["tail"]) != (n == len(layers) - 1):
            raise InputError(f"model {NAME}: exactly the last layer is the tail")
        out.append(dict(spec))
    return out


@register(NAME)
class QuantizedSR(nn.Module):
    """An int8 SR network: layers (the int8 contract) -> tail float32 + global skip -> PixelShuffle -> uint8.

    `forward` takes and returns float images in [0, 1] like every model (input rounded to uint8 codes, output
    the shipped uint8 image / 255), so evaluation and tiled upscaling need nothing special.
    """

    def __init__(self, scale: int, base: dict, layers: list, skip: str = "none", colors: int = 3) -> None:
        super().__init__()
        if skip not in _SKIPS:
            raise InputError(f"model {NAME}: unknown skip {skip!r} (known: {', '.join(_SKIPS)})")
        self.scale, self.skip, self.colors = scale, skip, colors
        self.base = base
        self.specs = _check_layers(layers)
        self.layers = nn.ModuleList(QLayer(s) for s in self.specs)
        n = len(self.specs)
        self.register_buffer("tensor_scale", torch.ones(n, dtype=torch.float64))  # tensor t's s (t=0: image)
        self.register_buffer("tensor_zero", torch.zeros(n, dtype=torch.int32))
        if skip == "bicubic":
            self.register_buffer("skip_weight", torch.zeros(colors * scale * scale, 1, 5, 5))
        # which tensors are uint8 codes: the image and whatever an int8 layer reads (module docstring)
        self.codes = [True] + [False] * n
        for spec in self.specs:
            if spec["precision"] == "int8":
                for t in (spec["src"], spec["residual"]):
                    if t is not None:
                        self.codes[t] = True
        # how far an output pixel looks into the input (tiled upscaling): every conv's reach + the skip's
        self.lr_reach = sum(s["k"] // 2 for s in self.specs) + (2 if skip == "bicubic" else 0)

    # --- the contract's arithmetic ---------------------------------------------------------------------------

    def qparams(self, t: int) -> QParams:
        """(scale, zero point) of uint8 tensor `t` (0: the image, exactly the contract's IMAGE_INPUT)."""
        if t == 0:
            return IMAGE_INPUT
        return QParams(float(self.tensor_scale[t]), int(self.tensor_zero[t]))

    def run_codes(self, q_image: torch.Tensor, keep: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """uint8 image codes N x C x H x W -> the uint8 SR image (or, with `keep`, every tensor: uint8 codes of
        each layer's output, the tail's float32 output, then the uint8 image)."""
        tensors: list[torch.Tensor] = [q_image.to(torch.uint8)]
        for n, (layer, spec) in enumerate(zip(self.layers, self.specs)):
            if spec["precision"] == "fp32":
                y = self._float_layer(layer, spec, tensors)
                tensors.append(self._store(y, n + 1, spec["tail"]))
                continue
            src = self.qparams(spec["src"])
            x = tensors[spec["src"]].double() - src.zero_point
            acc = F.conv2d(x, layer.weight.double(), padding=spec["k"] // 2, groups=spec["groups"])
            acc = acc + layer.bias.double().view(1, -1, 1, 1)  # exact integers
            mult = (torch.tensor(src.scale, dtype=torch.float64) * layer.weight_scale.double()).float()
            y = acc.float() * mult.view(1, -1, 1, 1)
            y = _activation(y, spec["act"], getattr(layer, "act_param", None))
            if spec["residual"] is not None:
                res = self.qparams(spec["residual"])
                r = tensors[spec["residual"]].to(torch.int32) - res.zero_point
                r = _adapt(r, y.shape[1]).float()
                y = y + torch.tensor(res.scale, dtype=torch.float32) * r
            tensors.append(self._store(y, n + 1, spec["tail"]))
        y = tensors[-1]
        skip = self._skip(tensors[0].float() / 255.0)
        if skip is not None:
            y = y + skip
        image = torch.round(F.pixel_shuffle(y, self.scale).clamp(0, 1) * 255.0).to(torch.uint8)
        return tensors + [image] if keep else image

    def _store(self, y: torch.Tensor, t: int, tail: bool) -> torch.Tensor:
        """Layer output `y` (float32) as tensor `t`: requantised to uint8 codes when an int8 layer reads it."""
        if tail or not self.codes[t]:
            return y
        out = self.qparams(t)
        inv = torch.tensor(1.0 / out.scale, dtype=torch.float64).float()
        q = torch.round(y * inv) + out.zero_point
        return q.clamp(0, 255).to(torch.uint8)

    def _float(self, tensors: list[torch.Tensor], t: int) -> torch.Tensor:
        """Tensor `t` in float32: codes dequantised, float tensors as they are."""
        if not self.codes[t]:
            return tensors[t]
        qp = self.qparams(t)
        return torch.tensor(qp.scale, dtype=torch.float32) * (tensors[t].to(torch.int32) - qp.zero_point).float()

    def _float_layer(self, layer: QLayer, spec: dict[str, Any], tensors: list[torch.Tensor]) -> torch.Tensor:
        """An fp32 layer of a mixed model: conv + bias, activation, residual, all float32."""
        y = F.conv2d(self._float(tensors, spec["src"]), layer.weight, layer.bias, padding=spec["k"] // 2,
                     groups=spec["groups"])
        y = _activation(y, spec["act"], getattr(layer, "act_param", None))
        if spec["residual"] is not None:
            y = y + _adapt(self._float(tensors, spec["residual"]), y.shape[1])
        return y

    def _skip(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.skip == "repeat":
            return x.repeat_interleave(self.scale * self.scale, dim=1)
        if self.skip == "bicubic":
            return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.skip_weight, groups=x.shape[1])
        return None

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        codes = torch.round(x.float().clamp(0, 1) * 255.0)
        return self.run_codes(codes).float() / 255.0

    # --- for the compiler and for people ---------------------------------------------------------------------

    def compiler_layer(self, n: int) -> QConv | FloatConv:
        """Layer `n` for the compiler: an int8 layer as the contract's QConv (a grouped conv as its dense,
        block-diagonal equivalent), an fp32 one as a FloatConv; a tensor is uint8 codes (QParams) exactly where
        `codes` says, else float32 (None)."""
        layer, spec = self.layers[n], self.specs[n]
        if spec["precision"] == "fp32":
            def params(t: int | None) -> QParams | None:
                return self.qparams(t) if t is not None and self.codes[t] else None

            slopes = layer.act_param.numpy().copy() if spec["act"] == "prelu" else None
            return FloatConv(layer.weight.numpy().copy(), layer.bias.numpy().copy(), params(spec["src"]),
                             None if spec["tail"] else params(n + 1), spec["act"], slopes, spec["k"] // 2,
                             params(spec["residual"]), spec["groups"], spec["name"])
        weight = layer.weight.numpy()
        if spec["groups"] > 1:
            weight = block_diagonal(weight, spec["groups"])
        act_param = layer.act_param.numpy().copy() if spec["act"] == "prelu" else None
        out = None if spec["tail"] or not self.codes[n + 1] else self.qparams(n + 1)  # float32: only fp32 reads it
        return QConv(weight.copy(), layer.weight_scale.numpy().copy(), layer.bias.numpy().copy(),
                     self.qparams(spec["src"]), out, spec["act"],
                     act_param, padding=spec["k"] // 2,
                     residual=None if spec["residual"] is None else self.qparams(spec["residual"]),
                     name=spec["name"])

    def check_all_int8(self, what: str) -> None:
        """InputError naming the first fp32 layer: `what` (a c-lib, a QDQ graph, ...) needs every layer int8."""
        for spec in self.specs:
            if spec["precision"] != "int8":
                raise InputError(f"layer {spec['name']} is {spec['precision']}: a mixed-precision model has no "
                                 f"{what} yet (only models with every layer int8)")

    def weight_bytes(self) -> int:
        """Bytes of what the device stores per layer: int8 weights, int32 biases, float32 scales (+ slopes); an fp32
        layer's float32 weights and biases."""
        return sum(layer.weight.numel() * layer.weight.element_size() + 8 * layer.weight.shape[0]
                   + (4 * layer.act_param.numel() if hasattr(layer, "act_param") else 0) for layer in self.layers)

    def describe(self) -> list[str]:
        """One line per layer: precision, weight shape and bytes, input and output quantisation."""
        lines = []
        def tensor(t: int) -> str:
            if not self.codes[t]:
                return "float32"
            return f"uint8 s={self.qparams(t).scale:.6g} z={self.qparams(t).zero_point}"

        for n, (layer, spec) in enumerate(zip(self.layers, self.specs)):
            out = "float32 (tail: + skip, PixelShuffle, clamp, round)" if spec["tail"] else tensor(n + 1)
            shape = "x".join(map(str, layer.weight.shape))
            zeros = float((layer.weight == 0).float().mean())
            res = f" + residual t{spec['residual']}" if spec["residual"] is not None else ""
            size = layer.weight.numel() * layer.weight.element_size()
            lines.append(f"{spec['name']:<16} {spec['precision']:<5} w {shape:<12} {size:>7} B  "
                         f"zeros {zeros:.2f}  in t{spec['src']} {tensor(spec['src'])}"
                         f"  {spec['act']}{res} -> {out}")
        lines.append(f"{'global skip':<16} float32 ({self.skip})")
        return lines


def _activation(y: torch.Tensor, name: str, param: torch.Tensor | None) -> torch.Tensor:
    """Step 3 of the contract in float32: relu/prelu here, other functions exactly as the numpy reference."""
    if name == "none":
        return y
    if name == "relu":
        return torch.where(y >= 0, y, torch.zeros_like(y))
    if name == "prelu":
        return torch.where(y >= 0, y, y * param.view(1, -1, 1, 1))
    return torch.from_numpy(activation_f32(y.numpy(), name))


def _adapt(r: torch.Tensor, channels: int) -> torch.Tensor:
    """The residual's codes minus its zero point, sliced or zero-padded to `channels` (a width-changing skip)."""
    from srprune.quant.plan import adapt_channels

    return adapt_channels(r, channels)


def is_quantized(model: nn.Module) -> bool:
    """True for a model of the "quantized" architecture."""
    return isinstance(model, QuantizedSR)


def to_layers(model: QuantizedSR) -> list[QConv | FloatConv]:
    """Every layer for the compiler (`QuantizedSR.compiler_layer`), in execution order (wiring:
    `model.specs[n]["src"/"residual"]`)."""
    if not is_quantized(model):
        raise InputError(f"{type(model).__name__} is not a quantised model (run srprune quantize first)")
    return [model.compiler_layer(n) for n in range(len(model.specs))]
