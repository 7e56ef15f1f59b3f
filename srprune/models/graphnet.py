"""`graph`: an SR network given as plain data (a list of operator nodes), the form a user's own ONNX or
torch.export model is converted into (srprune.models.foreign).

Why a registered architecture and not the foreign module itself: as an ordinary registry model it has named
nn.Conv2d layers (so pruning, the receptive field of tiled inference, MACs and the compiler's kernel matching work
as for our own models), it runs at any input size, and a pruned or fine-tuned copy saves as an ordinary model file
(`build_model("graph", scale, nodes=..., input=..., output=...)` rebuilds it; weights in the state_dict).

A node is `{"op", "in": [value names], "out": value name, ...settings}`; ops and settings are in `_OPS` below.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srprune.errors import InputError
from srprune.models.registry import register

NAME = "graph"

# op -> the settings it needs besides "in"/"out" (checked when the network is built).
_OPS: dict[str, tuple[str, ...]] = {
    "conv": ("name", "in_channels", "out_channels", "kernel", "stride", "padding", "dilation", "groups", "bias"),
    "deconv": ("name", "in_channels", "out_channels", "kernel", "stride", "padding", "output_padding", "dilation",
               "groups", "bias"),
    "prelu": ("name", "channels"),
    "const": ("name", "shape"),          # a constant tensor (a buffer), e.g. a per-channel mean
    "identity": (), "relu": (), "tanh": (), "sigmoid": (),
    "leaky_relu": ("slope",),
    "clip": ("min", "max"),              # either may be None
    "add": (), "sub": (), "mul": (), "div": (),  # two inputs, or one input and "value" (+ "value_first")
    "pixel_shuffle": ("factor", "mode"),  # mode CRD (PyTorch's PixelShuffle) or DCR (ONNX DepthToSpace default)
    "pixel_unshuffle": ("factor",),
    "upsample": ("mode", "scale", "align_corners"),  # nearest (floor, asymmetric) | bilinear
    "concat": ("dim",),
    "pad": ("pads", "mode", "value"),    # pads = [left, right, top, bottom]; constant | reflect | replicate
}
OPS = tuple(_OPS)
_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}


def _check_node(i: int, node: Any) -> None:
    if not isinstance(node, dict) or node.get("op") not in _OPS:
        what = node.get("op") if isinstance(node, dict) else node
        raise InputError(f"model {NAME}: node {i} has unknown op {what!r}")
    missing = [k for k in ("in", "out", *_OPS[node["op"]]) if k not in node]
    if missing:
        raise InputError(f"model {NAME}: node {i} ({node['op']}) lacks {missing[0]!r}")


@register(NAME)
class GraphNet(nn.Module):
    """Runs `nodes` in order on a dict of named values; convs, deconvs and PReLUs are modules in `layers`."""

    def __init__(self, scale: int, nodes: list, input: str = "input", output: str = "output",
                 colors: int = 3, source: str = "") -> None:
        super().__init__()
        if not isinstance(nodes, list) or not nodes:
            raise InputError(f"model {NAME}: nodes must be a non-empty list")
        self.scale = scale
        self.nodes = nodes
        self.input_name, self.output_name = input, output
        self.layers = nn.ModuleDict()
        self.consts = nn.Module()
        known = {input}
        for i, node in enumerate(nodes):
            _check_node(i, node)
            unknown = [v for v in node["in"] if v not in known]
            if unknown:
                raise InputError(f"model {NAME}: node {i} ({node['op']}) reads {unknown[0]!r} before it is computed")
            known.add(node["out"])
            op = node["op"]
            if op == "conv":
                self.layers[node["name"]] = nn.Conv2d(
                    node["in_channels"], node["out_channels"], tuple(node["kernel"]), tuple(node["stride"]),
                    tuple(node["padding"]), tuple(node["dilation"]), node["groups"], bool(node["bias"]))
            elif op == "deconv":
                self.layers[node["name"]] = nn.ConvTranspose2d(
                    node["in_channels"], node["out_channels"], tuple(node["kernel"]), tuple(node["stride"]),
                    tuple(node["padding"]), tuple(node["output_padding"]), node["groups"], bool(node["bias"]),
                    tuple(node["dilation"]))
            elif op == "prelu":
                self.layers[node["name"]] = nn.PReLU(node["channels"])
            elif op == "const":
                self.consts.register_buffer(node["name"], torch.zeros(node["shape"]))
        if output not in known:
            raise InputError(f"model {NAME}: the output {output!r} is never computed")

    def _run(self, node: dict, args: list[torch.Tensor]) -> torch.Tensor:
        op = node["op"]
        if op in ("conv", "deconv", "prelu"):
            return self.layers[node["name"]](args[0])
        if op == "const":
            return getattr(self.consts, node["name"])
        x = args[0]
        if op == "identity":
            return x
        if op == "relu":
            return F.relu(x)
        if op == "tanh":
            return torch.tanh(x)
        if op == "sigmoid":
            return torch.sigmoid(x)
        if op == "leaky_relu":
            return F.leaky_relu(x, node["slope"])
        if op == "clip":
            return torch.clamp(x, node["min"], node["max"])
        if op in _BINARY:
            if len(args) == 2:
                return _BINARY[op](args[0], args[1])
            if node.get("value_first"):
                return _BINARY[op](node["value"], x)
            return _BINARY[op](x, node["value"])
        if op == "pixel_shuffle":
            r = node["factor"]
            if node["mode"] == "CRD":
                return F.pixel_shuffle(x, r)
            n, c, h, w = x.shape  # DCR: the channel index is (block row, block column, colour)
            y = x.reshape(n, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)
            return y.reshape(n, c // (r * r), h * r, w * r)
        if op == "pixel_unshuffle":
            return F.pixel_unshuffle(x, node["factor"])
        if op == "upsample":
            if node["mode"] == "nearest":
                return F.interpolate(x, scale_factor=tuple(node["scale"]), mode="nearest")
            return F.interpolate(x, scale_factor=tuple(node["scale"]), mode="bilinear",
                                 align_corners=bool(node["align_corners"]))
        if op == "concat":
            return torch.cat(args, dim=node["dim"])
        if op == "pad":
            if node["mode"] == "constant":
                return F.pad(x, tuple(node["pads"]), mode="constant", value=float(node["value"]))
            return F.pad(x, tuple(node["pads"]), mode=node["mode"])
        raise InputError(f"model {NAME}: unknown op {op!r}")  # unreachable: checked in __init__

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        env = {self.input_name: x}
        for node in self.nodes:
            env[node["out"]] = self._run(node, [env[name] for name in node["in"]])
        return env[self.output_name]
