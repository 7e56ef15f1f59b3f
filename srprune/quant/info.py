"""What `srprune info` shows of a quantised model: precision per layer, bytes of weights, MACs."""

from __future__ import annotations

from typing import Any

from torch import nn

from srprune.quant.qmodel import is_quantized


def quant_info(model: nn.Module, out_hw: tuple[int, int]) -> dict[str, Any] | None:
    """{arch, params, bytes, precision, macs, layers (one line each)} of a quantised model; None otherwise."""
    if not is_quantized(model):
        return None
    h, w = out_hw[0] // model.scale, out_hw[1] // model.scale
    per_pixel = sum(s["out"] * (s["in"] // s["groups"]) * s["k"] ** 2 for s in model.specs)
    params = sum(layer.weight.numel() + layer.weight.shape[0] for layer in model.layers)
    base = model.base
    return {"arch": f"quantized x{model.scale} of {base.get('name')} {base.get('config')}",
            "params": params, "bytes": model.weight_bytes(),
            "precision": _precision(model),
            "macs": per_pixel * h * w, "layers": model.describe()}


def _precision(model: nn.Module) -> str:
    """The arithmetic in one line (a mixed model: how many layers of each precision)."""
    int8 = "int8 weights + int32 bias + float32 scales; uint8 activations; float32 tail output"
    fp32 = [s["name"] for s in model.specs if s["precision"] == "fp32"]
    if not fp32:
        return int8
    return f"mixed: {len(model.specs) - len(fp32)} int8 layers ({int8}), {len(fp32)} fp32 ({', '.join(fp32)})"
