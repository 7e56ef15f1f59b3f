"""A quantised model as the compiler's int8 network, and as its float counterpart (for `srprune bench`).

Why here and not in the compiler: the wiring of a quantised model (tensor ids in `specs[n]["src"/"residual"]`,
layer n writes tensor n + 1, tensor 0 is the image) is srprune's file format; the compiler takes
`compiler.int8.network.Int8Network` (a chain, residuals named by the producing layer, IMAGE for the image, sliced or
zero-padded to the layer's width; a nearest-neighbour or depthwise (bicubic) global skip, or none). What it cannot
express is refused here with one line naming it: a layer that does not read its predecessor's output. Grouped convs
are handed over as their dense block-diagonal equivalent (`to_layers`: the same numbers, the other weights exact
int8 zeros).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from srprune.errors import InputError
from srprune.quant.qmodel import QuantizedSR, to_layers


def to_int8_network(model: QuantizedSR, label: str = "the int8 model"):
    """The compiler's Int8Network of a quantised model; InputError naming the structure it cannot express."""
    from compiler.int8.network import IMAGE, Int8Network

    layers = to_layers(model)
    residual_from: list[int | None] = []
    for n, spec in enumerate(model.specs):
        if spec["src"] != n:
            raise InputError(f"{label}: layer {spec['name']} reads tensor {spec['src']}, not the previous layer's "
                             "output; the int8 c-lib runs a chain of layers")
        res = spec["residual"]
        residual_from.append(None if res is None else IMAGE if res == 0 else res - 1)
    weight = model.skip_weight.numpy().astype(np.float32) if model.skip == "bicubic" else None
    return Int8Network(layers, model.scale, residual_from, skip=model.skip != "none", skip_weight=weight)


def float_counterpart(model: QuantizedSR) -> nn.Module:
    """The deployed float architecture the model was quantised from, with the dequantised weights
    (w = s_w * w_q, b = s_x * s_w * b_q, PReLU slopes): what fp32 engines run when `srprune bench` compares.

    Its function is the quantised model's without activation rounding; pruned weights stay exact zeros, so the
    fp32 build keeps the same sparsity.
    """
    from srprune.models import build_model, deploy

    model.check_all_int8("float counterpart")
    base = model.base or {}
    try:
        net = deploy(build_model(base["name"], model.scale, **dict(base.get("config") or {}))).eval()
    except (InputError, KeyError, TypeError) as exc:
        raise InputError(f"cannot rebuild the float architecture {base.get('name')!r} of the int8 model: {exc}") \
            from None
    with torch.no_grad():
        for n, (layer, spec) in enumerate(zip(model.layers, model.specs)):
            try:
                conv = net.get_submodule(spec["name"])
            except AttributeError:
                raise InputError(f"the float architecture {base['name']!r} has no layer {spec['name']}") from None
            if not isinstance(conv, nn.Conv2d) or conv.weight.shape != layer.weight.shape:
                raise InputError(f"layer {spec['name']} of the float architecture {base['name']!r} does not match "
                                 "the int8 model's")
            s_w = layer.weight_scale.double().view(-1, 1, 1, 1)
            conv.weight.copy_((layer.weight.double() * s_w).float())
            s_x = torch.tensor(model.qparams(spec["src"]).scale, dtype=torch.float64)
            if conv.bias is not None:
                conv.bias.copy_((layer.bias.double() * s_x * layer.weight_scale.double()).float())
            if spec["act"] == "prelu":
                _set_prelu(net, spec["name"], layer.act_param)
    return net


def _set_prelu(net: nn.Module, conv_name: str, slopes: torch.Tensor) -> None:
    """Copy the slopes into the PReLU that follows `conv_name` (ECBSR: the conv's sibling `act`)."""
    parent = net.get_submodule(conv_name.rsplit(".", 1)[0]) if "." in conv_name else net
    act = getattr(parent, "act", None)
    if isinstance(act, nn.PReLU):
        act.weight.copy_(slopes if act.weight.numel() == slopes.numel() else slopes[:1])


def bench_int8(model: QuantizedSR, shape: tuple[int, int, int, int], *, threads: int | None = None,
               engines: tuple[str, ...] = ("tvm", "torch", "onnxruntime"), repeat: int = 10,
               tuning_root: str | None = None, label: str = "int8 model") -> dict:
    """`srprune bench` of an int8 model: its host int8 c-lib timed in the same interleaved rounds as the fp32
    engines running its float counterpart (compiler.bench.bench_engines; key "int8 c-lib")."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from compiler.bench import bench_engines
    from compiler.clib.runner import CLib, aligned_empty
    from compiler.int8.network import build_int8_clib
    from compiler.targets import get_target

    net = to_int8_network(model, label)
    target = get_target("host", threads)
    floats = float_counterpart(model)
    with tempfile.TemporaryDirectory(prefix="srprune-int8-bench-") as tmp:
        folder = Path(tmp) / "int8"
        manifest = build_int8_clib(net, shape, target, folder, name=label)
        with CLib(folder / manifest["library"]) as lib:
            lib.set_threads(target.threads)
            x = np.random.default_rng(0).random(shape, dtype=np.float32)
            out = aligned_empty(lib.output_shape)
            result = bench_engines(floats, shape, threads=target.threads, engines=engines, repeat=repeat,
                                   tuning_root=tuning_root, extra={"int8 c-lib": lambda: lib.run(x, out)})
    return {**result, "int8_isa": manifest["int8_isa"]}
