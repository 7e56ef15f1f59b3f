"""A user's own SR network as MODEL: an ONNX file or a torch.export ExportedProgram (.pt2).

Both are converted into the `graph` architecture (srprune.models.graphnet), so everything that takes our own
models takes them: the compiler sees nn.Conv2d/PReLU/PixelShuffle exactly as in our models (our kernels where the
graph matches them), pruning sees named conv layers, and a pruned copy saves as an ordinary model file.

Contract for the network: input NCHW RGB in [0, 1], output the upscaled image. The scale is read by running a
small input through the converted network. Every conversion is checked against an independent reference on that
input before it is used (ONNX Runtime for an ONNX file, the ExportedProgram's own module for a .pt2): a graph we
would run differently is refused, never silently served. An operator outside the set SR networks use is one
line naming it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from srprune.errors import InputError

SUFFIXES = (".onnx", ".pt2")
TOLERANCE = 1e-4          # max abs diff of the converted network against the reference, as for compiled models
_PROBE = (16, 20)         # (H, W) of the probe input where the graph's input size is free (H != W on purpose)


def is_foreign(spec: str) -> bool:
    """True if `spec` names an ONNX or .pt2 file (by suffix)."""
    return isinstance(spec, str) and spec.lower().endswith(SUFFIXES)


class _Builder:
    """Collects graph nodes and their weights; names layers after the source's weight names where it can."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.nodes: list[dict[str, Any]] = []
        self.state: dict[str, torch.Tensor] = {}
        self.names: set[str] = set()

    def unique(self, hint: str) -> str:
        base = re.sub(r"\W", "_", hint).strip("_") or "layer"
        base = re.sub(r"_(weight|bias|slope)$", "", base) or "layer"
        if base[0].isdigit():
            base = f"l{base}"
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def add(self, op: str, inputs: list[str], out: str, **settings: Any) -> None:
        self.nodes.append({"op": op, "in": list(inputs), "out": out, **settings})

    def conv(self, x: str, out: str, w: torch.Tensor, b: torch.Tensor | None, hint: str, *, stride, padding,
             dilation, groups: int, transposed: bool = False, output_padding=(0, 0)) -> None:
        name = self.unique(hint)
        if w.dim() != 4:
            raise InputError(f"{self.path}: only 2-D convolutions are supported ({hint} has a {w.dim()}-D weight)")
        cin, cout = (w.shape[0], w.shape[1] * groups) if transposed else (w.shape[1] * groups, w.shape[0])
        settings = dict(name=name, in_channels=int(cin), out_channels=int(cout), kernel=list(w.shape[2:]),
                        stride=_pair(stride), padding=_pair(padding), dilation=_pair(dilation), groups=int(groups),
                        bias=b is not None)
        if transposed:
            settings["output_padding"] = _pair(output_padding)
        self.add("deconv" if transposed else "conv", [x], out, **settings)
        self.state[f"layers.{name}.weight"] = w.detach().float().clone()
        if b is not None:
            self.state[f"layers.{name}.bias"] = b.detach().float().reshape(-1).clone()

    def prelu(self, x: str, out: str, slope: torch.Tensor, hint: str) -> None:
        name = self.unique(hint)
        slope = slope.detach().float().reshape(-1).clone()
        self.add("prelu", [x], out, name=name, channels=int(slope.numel()))
        self.state[f"layers.{name}.weight"] = slope

    def const(self, value: torch.Tensor, hint: str) -> str:
        name = self.unique(f"const_{hint}")
        self.add("const", [], f"const:{name}", name=name, shape=list(value.shape))
        self.state[f"consts.{name}"] = value.detach().float().clone()
        return f"const:{name}"


class _DoesNotRun(InputError):
    """The network (converted, or in its own runtime) fails on the probe's size, or is no upscaler there (sizes
    rounded down inside it): another size may do."""


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def _pair(v: Any) -> list[int]:
    if isinstance(v, (list, tuple)):
        vals = [int(x) for x in v]
        return vals * 2 if len(vals) == 1 else vals
    return [int(v), int(v)]


def _scalar_or_tensor(b: _Builder, value: torch.Tensor | float, hint: str) -> dict[str, Any] | str:
    """A constant operand: a float setting when it is one number, else a `const` node's value name."""
    if isinstance(value, (int, float)):
        return {"value": float(value)}
    if value.numel() == 1:
        return {"value": float(value.reshape(-1)[0])}
    return b.const(value, hint)


def _binary(b: _Builder, op: str, out: str, left: Any, right: Any, is_value: Callable[[Any], bool],
            const: Callable[[Any], Any]) -> None:
    """out = left OP right, where either side may be a constant of the source graph."""
    lv, rv = is_value(left), is_value(right)
    if lv and rv:
        b.add(op, [left, right], out)
        return
    if not lv and not rv:
        raise InputError(f"{b.path}: {op} of two constants is not supported (fold it before exporting)")
    value, first = (const(right), False) if lv else (const(left), True)
    operand = _scalar_or_tensor(b, value, out)
    x = left if lv else right
    if isinstance(operand, dict):
        b.add(op, [x], out, **operand, **({"value_first": True} if first else {}))
    else:
        b.add(op, [operand, x] if first else [x, operand], out)


# ---------------------------------------------------------------------------------------------------- ONNX

_ONNX_OPS = ("Conv", "ConvTranspose", "Relu", "PRelu", "LeakyRelu", "Tanh", "Sigmoid", "Clip", "Add", "Sub", "Mul",
             "Div", "DepthToSpace", "Resize", "Concat", "Pad", "Identity", "Constant",
             "Reshape + Transpose + Reshape (a pixel shuffle)")
# Reshape to 6-D -> Transpose -> Reshape to 4-D is how exporters before DepthToSpace (and tf2onnx) write a pixel
# shuffle: (position of the two block axes in the 6-D shape, permutation) -> DepthToSpace mode.
_SHUFFLES = {((2, 3), (0, 1, 4, 2, 5, 3)): "CRD", ((1, 2), (0, 3, 4, 1, 5, 2)): "DCR"}


def _onnx_graph(path: Path, b: _Builder) -> tuple[str, str, list[int | None]]:
    """Convert the ONNX file's graph into `b`; returns (input name, output name, input dims (None: free))."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise InputError(f"{path}: reading ONNX files needs the onnx package (pip install 'srprune[onnx]')") from None
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001  (protobuf errors of a damaged or foreign file)
        raise InputError(f"{path} is not a readable ONNX file ({_first_line(exc, 120)})") from None
    g = model.graph
    consts: dict[str, torch.Tensor] = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise InputError(f"{path}: an SR network has one input and one output; this graph has {len(inputs)} "
                         f"inputs and {len(g.output)} outputs")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise InputError(f"{path}: the input must be NCHW (4-D), got {len(dims)}-D")
    alias: dict[str, str] = {}
    reshaped: dict[str, tuple[str, list[int]]] = {}                  # 6-D Reshape outputs, awaiting a Transpose
    transposed: dict[str, tuple[str, int, str]] = {}                 # ... and then the 4-D Reshape

    def name(v: str) -> str:
        return alias.get(v, v)

    def is_value(v: str) -> bool:
        return name(v) not in consts

    def const(v: str) -> torch.Tensor:
        v = name(v)
        if v not in consts:
            raise InputError(f"{path}: {v} must be a constant (an initializer) for this converter")
        return consts[v]

    for node in g.node:
        op = node.op_type
        a = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
        a = {k: v.decode() if isinstance(v, bytes) else v for k, v in a.items()}
        ins = [name(v) for v in node.input]
        out = node.output[0] if node.output else ""
        label = node.name or out
        if node.domain not in ("", "ai.onnx"):
            raise InputError(f"{path}: operator {node.domain}.{op} (node {label}) is not supported")
        if op == "Constant":
            if "value" not in a:
                raise InputError(f"{path}: Constant node {label} without a tensor value is not supported")
            consts[out] = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
        elif op == "Identity":
            alias[out] = ins[0]
        elif op in ("Conv", "ConvTranspose"):
            w = const(ins[1])
            bias = const(ins[2]) if len(ins) > 2 and ins[2] else None
            k = list(w.shape[2:])
            dil = list(a.get("dilations", [1, 1]))
            pads = list(a.get("pads", [0, 0, 0, 0]))
            auto = a.get("auto_pad", "NOTSET")
            if auto in ("SAME_UPPER", "SAME_LOWER") and op == "Conv" and list(a.get("strides", [1, 1])) == [1, 1] \
                    and all(kk % 2 for kk in k):
                pads = [(k[0] - 1) // 2 * dil[0], (k[1] - 1) // 2 * dil[1]] * 2
            elif auto not in ("NOTSET", "VALID"):
                raise InputError(f"{path}: {op} {label} with auto_pad {auto} is not supported")
            if op == "ConvTranspose" and "output_shape" in a:
                raise InputError(f"{path}: ConvTranspose {label} with a fixed output_shape is not supported")
            x = ins[0]
            if pads[:2] != pads[2:]:  # asymmetric: an explicit zero pad first
                padded = f"{out}:pad"
                b.add("pad", [x], padded, pads=[pads[1], pads[3], pads[0], pads[2]], mode="constant", value=0.0)
                x, pads = padded, [0, 0, 0, 0]
            b.conv(x, out, w, bias, ins[1], stride=a.get("strides", [1, 1]), padding=pads[:2], dilation=dil,
                   groups=a.get("group", 1), transposed=op == "ConvTranspose",
                   output_padding=a.get("output_padding", [0, 0]))
        elif op == "PRelu":  # exporters share equal slopes in one initializer (val_5): name it after its conv
            before = next((n.get("name") for n in reversed(b.nodes) if n["out"] == ins[0]), None)
            b.prelu(ins[0], out, const(ins[1]), ins[1] if "." in ins[1] or not before else f"{before}_prelu")
        elif op in ("Relu", "Tanh", "Sigmoid"):
            b.add(op.lower(), [ins[0]], out)
        elif op == "LeakyRelu":
            b.add("leaky_relu", [ins[0]], out, slope=float(a.get("alpha", 0.01)))
        elif op == "Clip":
            lo = a.get("min") if len(ins) < 2 or not ins[1] else float(const(ins[1]))
            hi = a.get("max") if len(ins) < 3 or not ins[2] else float(const(ins[2]))
            b.add("clip", [ins[0]], out, min=None if lo is None else float(lo), max=None if hi is None else float(hi))
        elif op in ("Add", "Sub", "Mul", "Div"):
            _binary(b, op.lower(), out, ins[0], ins[1], is_value, const)
        elif op == "DepthToSpace":
            b.add("pixel_shuffle", [ins[0]], out, factor=int(a["blocksize"]), mode=a.get("mode", "DCR"))
        elif op == "Resize":
            _onnx_resize(path, b, ins, out, a, label, const)
        elif op == "Concat":
            if a.get("axis") not in (1, -3):
                raise InputError(f"{path}: Concat {label} along axis {a.get('axis')} (only channels, axis 1)")
            b.add("concat", [v for v in ins], out, dim=1)
            for v in ins:
                if not is_value(v):
                    raise InputError(f"{path}: Concat {label} of a constant is not supported")
        elif op == "Reshape" and ins[0] in transposed and len(const(ins[1]).reshape(-1)) == 4:
            src, r, mode = transposed.pop(ins[0])
            b.add("pixel_shuffle", [src], out, factor=r, mode=mode)
        elif op == "Reshape" and len(const(ins[1]).reshape(-1)) == 6 and is_value(ins[0]):
            reshaped[out] = (ins[0], [int(d) for d in const(ins[1]).reshape(-1).tolist()])
        elif op == "Transpose" and ins[0] in reshaped:
            src, shape = reshaped.pop(ins[0])
            perm = tuple(int(p) for p in a.get("perm", []))
            found = [(axes, mode) for (axes, p), mode in _SHUFFLES.items()
                     if p == perm and shape[axes[0]] == shape[axes[1]] > 1]
            if not found:
                raise InputError(f"{path}: Reshape + Transpose {label} is not a pixel shuffle (perm {list(perm)})")
            (axes, mode), = found
            transposed[out] = (src, shape[axes[0]], mode)
        elif op == "Pad":
            pads = [int(p) for p in (const(ins[1]).tolist() if len(ins) > 1 and ins[1] else a.get("pads", []))]
            mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}.get(a.get("mode", "constant"))
            value = float(const(ins[2])) if len(ins) > 2 and ins[2] else float(a.get("value", 0.0))
            if mode is None or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or (len(ins) > 3 and ins[3]):
                raise InputError(f"{path}: Pad {label} is supported on height and width only "
                                 "(modes constant, reflect, edge)")
            b.add("pad", [ins[0]], out, pads=[pads[3], pads[7], pads[2], pads[6]], mode=mode, value=value)
        else:
            raise InputError(f"{path}: ONNX operator {op} (node {label}) is not supported; supported: "
                             f"{', '.join(_ONNX_OPS)}")
    left = sorted(set(reshaped) | set(transposed))
    if left:
        raise InputError(f"{path}: Reshape/Transpose outside a pixel shuffle pattern (at {left[0]}) is not supported")
    output = name(g.output[0].name)
    if output in consts:
        raise InputError(f"{path}: the output is a constant")
    return inputs[0].name, output, dims


def _onnx_resize(path: Path, b: _Builder, ins: list[str], out: str, a: dict, label: str, const) -> None:
    """ONNX Resize with constant scales -> nearest (floor, asymmetric) or bilinear upsampling."""
    mode, ctm = a.get("mode", "nearest"), a.get("coordinate_transformation_mode", "half_pixel")
    scales = const(ins[2]).tolist() if len(ins) > 2 and ins[2] else []
    if not scales:
        raise InputError(f"{path}: Resize {label} with fixed output sizes is not supported (export with "
                         "scale factors, e.g. F.interpolate(scale_factor=...))")
    if len(scales) != 4 or scales[:2] != [1.0, 1.0]:
        raise InputError(f"{path}: Resize {label} must scale height and width only, got scales {scales}")
    if mode == "nearest" and ctm == "asymmetric" and a.get("nearest_mode", "round_prefer_floor") == "floor":
        b.add("upsample", [ins[0]], out, mode="nearest", scale=scales[2:], align_corners=False)
    elif mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        b.add("upsample", [ins[0]], out, mode="bilinear", scale=scales[2:], align_corners=ctm == "align_corners")
    else:
        raise InputError(f"{path}: Resize {label} in mode {mode} with coordinate_transformation_mode {ctm} is not "
                         "supported (nearest with asymmetric/floor, or linear)")


def _onnx_reference(path: Path, x: np.ndarray) -> np.ndarray:
    """The ONNX file's own output for `x`, run by ONNX Runtime (the independent check of the conversion)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


# ---------------------------------------------------------------------------------------------------- .pt2

_SKIP = {"_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size", "_assert_async"}
_SAME = {"clone", "contiguous", "alias", "detach", "dropout", "lift_fresh_copy", "_to_copy", "to"}
_PT2_OPS = ("conv2d", "convolution", "conv_transpose2d", "prelu", "relu", "leaky_relu", "tanh", "sigmoid", "clamp",
            "hardtanh", "add", "sub", "mul", "div", "pixel_shuffle", "pixel_unshuffle", "upsample_nearest2d",
            "upsample_bilinear2d", "cat", "constant_pad_nd", "reflection_pad2d", "replication_pad2d", "pad")


def _load_pt2(path: Path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001  (zip/format/version errors of a damaged or foreign file)
        raise InputError(f"{path} is not a readable torch.export program (.pt2): {_first_line(exc)}") from None


def _pt2_graph(path: Path, ep, b: _Builder) -> tuple[str, str, list[int | None]]:
    """Convert an ExportedProgram's ATen graph into `b`; returns (input name, output name, input dims)."""
    sig = ep.graph_signature
    params = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    lifted = dict(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
    consts: dict[str, torch.Tensor] = {}
    for node, target in params.items():
        consts[node] = ep.state_dict[target] if target in ep.state_dict else ep.constants[target]
    for node, target in lifted.items():
        consts[node] = ep.constants[target]
    user = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name not in consts]
    if len(user) != 1:
        raise InputError(f"{path}: an SR network has one input; this program has {len(user)}")
    val = user[0].meta.get("val")
    dims = [int(d) if isinstance(d, int) else None for d in (val.shape if val is not None else [None] * 4)]
    for i, d in enumerate(val.shape if val is not None and len(val.shape) == 4 else []):
        if i >= 2 and not isinstance(d, int):  # a free size: probe inside the range the program was exported for
            rng = ep.range_constraints.get(getattr(getattr(d, "node", None), "expr", None))
            want = _PROBE[i - 2]
            if rng is not None:
                want = max(want, _bound(rng.lower) or 0)
                want = min(want, _bound(rng.upper) or want)
            dims[i] = want
    if len(dims) != 4:
        raise InputError(f"{path}: the input must be NCHW (4-D), got {len(dims)}-D")
    alias: dict[str, str] = {}

    def ref(v: Any) -> Any:
        if isinstance(v, torch.fx.Node):
            return alias.get(v.name, v.name)
        return v

    def is_value(v: Any) -> bool:
        return isinstance(v, str) and v not in consts

    def const(v: Any) -> Any:
        if isinstance(v, str):
            if v not in consts:  # e.g. a weight computed in the graph (weight norm): fold it before exporting
                raise InputError(f"{path}: {v} must be a constant (a parameter or buffer) for this converter")
            return consts[v]
        return v

    output = None
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            outs = node.args[0]
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            if len(outs) != 1:
                raise InputError(f"{path}: an SR network has one output; this program has {len(outs)}")
            output = ref(outs[0])
            continue
        if node.op != "call_function":
            raise InputError(f"{path}: graph node {node.name} ({node.op}) is not supported")
        full = str(node.target)
        op = full.split(".")[1] if full.startswith("aten.") else full
        args = [ref(a) if not isinstance(a, (list, tuple)) else [ref(x) for x in a] for a in node.args]
        kw = {k: ref(v) for k, v in node.kwargs.items()}
        out = node.name

        def arg(i: int, key: str, default: Any = None) -> Any:
            return args[i] if len(args) > i else kw.get(key, default)

        if op in _SKIP:
            continue
        if op in _SAME:
            alias[out] = args[0]
            continue
        names = [v for v in [*args, *kw.values()] for v in (v if isinstance(v, list) else [v]) if isinstance(v, str)]
        if names and all(v in consts for v in names) and full.startswith("aten."):
            # computed only from weights (weight norm, a scaled kernel): evaluate it once, as torch would
            real = [[consts.get(v, v) if isinstance(v, str) else v for v in a] if isinstance(a, list)
                    else (consts[a] if isinstance(a, str) else a) for a in args]
            with torch.no_grad():
                consts[out] = node.target(*real, **{k: consts[v] if isinstance(v, str) else v for k, v in kw.items()})
            continue
        if op in ("conv2d", "convolution", "conv_transpose2d"):
            x, w, bias = args[0], const(args[1]), arg(2, "bias")
            bias = const(bias) if bias is not None else None
            if op == "conv2d":
                stride, pad, dil, groups, tr, opad = arg(3, "stride", 1), arg(4, "padding", 0), arg(5, "dilation", 1), \
                    arg(6, "groups", 1), False, 0
            elif op == "convolution":
                stride, pad, dil, tr, opad, groups = args[3:9]
            else:
                stride, pad, opad, groups, dil, tr = arg(3, "stride", 1), arg(4, "padding", 0), \
                    arg(5, "output_padding", 0), arg(6, "groups", 1), arg(7, "dilation", 1), True
            if isinstance(pad, str):
                k, d = list(w.shape[2:]), _pair(dil)
                pad = [0, 0] if pad == "valid" else [(k[0] - 1) // 2 * d[0], (k[1] - 1) // 2 * d[1]]
            b.conv(x, out, w, bias, params.get(args[1], out), stride=stride, padding=pad, dilation=dil,
                   groups=groups, transposed=bool(tr), output_padding=opad)
        elif op in ("prelu", "_prelu_kernel"):
            b.prelu(args[0], out, const(args[1]), params.get(args[1], out))
        elif op in ("relu", "relu_", "tanh", "sigmoid"):
            b.add(op.rstrip("_"), [args[0]], out)
        elif op == "leaky_relu":
            b.add("leaky_relu", [args[0]], out, slope=float(arg(1, "negative_slope", 0.01)))
        elif op in ("clamp", "hardtanh"):
            lo, hi = (arg(1, "min"), arg(2, "max")) if op == "clamp" else \
                (arg(1, "min_val", -1.0), arg(2, "max_val", 1.0))
            b.add("clip", [args[0]], out, min=None if lo is None else float(lo), max=None if hi is None else float(hi))
        elif op in ("add", "sub", "mul", "div"):
            if kw.get("alpha", 1) != 1 or (len(args) > 2 and args[2] != 1) or kw.get("rounding_mode"):
                raise InputError(f"{path}: aten.{op} with alpha or rounding_mode (node {out}) is not supported")
            _binary(b, op, out, args[0], args[1], is_value, const)
        elif op == "pixel_shuffle":
            b.add("pixel_shuffle", [args[0]], out, factor=int(args[1]), mode="CRD")
        elif op == "pixel_unshuffle":
            b.add("pixel_unshuffle", [args[0]], out, factor=int(args[1]))
        elif op in ("upsample_nearest2d", "upsample_bilinear2d"):
            scale = _pt2_upsample_scale(path, node, out)
            b.add("upsample", [args[0]], out, mode="nearest" if "nearest" in op else "bilinear", scale=scale,
                  align_corners=bool(arg(2, "align_corners", False)) if "bilinear" in op else False)
        elif op == "cat":
            dim = arg(1, "dim", 0)
            if dim not in (1, -3):
                raise InputError(f"{path}: aten.cat along dim {dim} (node {out}); only channels (dim 1)")
            b.add("concat", list(args[0]), out, dim=1)
        elif op in ("constant_pad_nd", "reflection_pad2d", "replication_pad2d", "pad"):
            pads = [int(p) for p in args[1]]
            mode = {"constant_pad_nd": "constant", "reflection_pad2d": "reflect",
                    "replication_pad2d": "replicate"}.get(op) or arg(2, "mode", "constant")
            value = float((arg(2, "value") if op == "constant_pad_nd" else arg(3, "value")) or 0.0)
            if len(pads) != 4 or mode not in ("constant", "reflect", "replicate"):
                raise InputError(f"{path}: aten.{op} (node {out}) is supported on height and width only")
            b.add("pad", [args[0]], out, pads=pads, mode=mode, value=value)
        else:
            raise InputError(f"{path}: operator {full} (node {out}) is not supported; supported: "
                             f"{', '.join(_PT2_OPS)}")
    if output is None or output in consts:
        raise InputError(f"{path}: the program has no tensor output")
    return user[0].name, output, dims


def _bound(value: Any) -> int | None:
    """A range constraint's bound as an int; None for infinity (sympy's or torch's own)."""
    try:
        return int(str(value)) if str(value).lstrip("-").isdigit() else None
    except ValueError:
        return None


def _pt2_upsample_scale(path: Path, node, out: str) -> list[float]:
    """An upsampling node's scale factors: given in the graph, or read from the traced shapes."""
    facs = node.args[3] if "bilinear" in str(node.target) and len(node.args) > 3 else \
        (node.args[2] if len(node.args) > 2 else node.kwargs.get("scale_factors"))
    if isinstance(facs, (list, tuple)) and len(facs) == 2 and all(isinstance(f, (int, float)) for f in facs):
        return [float(f) for f in facs]
    src, dst = node.args[0].meta.get("val"), node.meta.get("val")
    try:
        sh, sw = int(dst.shape[2]) / int(src.shape[2]), int(dst.shape[3]) / int(src.shape[3])
    except (TypeError, AttributeError, ValueError, ZeroDivisionError):
        sh = sw = None
    if not sh or not sw or sh != int(sh) or sw != int(sw):
        raise InputError(f"{path}: upsampling node {out} has no fixed integer scale factor")
    return [sh, sw]


# ---------------------------------------------------------------------------------------------------- loading

def _probe_shape(dims: list[int | None], colors: int) -> tuple[int, int, int, int]:
    return (dims[0] or 1, colors, dims[2] or _PROBE[0], dims[3] or _PROBE[1])


def _probe(path: Path, fmt: str, ep, model: nn.Module, shape: tuple[int, int, int, int]) -> tuple[int, float]:
    """(scale, max abs diff against the file's own runtime) from one random input of `shape`."""
    x = torch.from_numpy(np.random.default_rng(0).random(shape, dtype=np.float32))
    with torch.no_grad():
        try:
            y = model(x)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001  (shape mismatches inside the user's graph)
            raise _DoesNotRun(f"{path}: the converted network does not run on a {'x'.join(map(str, shape))} "
                             f"input ({_first_line(exc)})") from None
    scale = _scale_of(path, shape, tuple(y.shape))
    ref = _reference(path, fmt, ep, x)
    diff = float(np.abs(ref - y.numpy()).max()) if ref.shape == tuple(y.shape) else float("inf")
    if not diff <= TOLERANCE:
        raise InputError(f"{path}: the converted network differs from the file's own runtime by {diff:.2e} "
                         f"(> {TOLERANCE:g}) on a {'x'.join(map(str, shape))} input; it is not used")
    return scale, diff


def load_foreign(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Convert an ONNX or .pt2 file into a `graph` model (eval mode) checked against the file's own runtime.

    Returns (model, info) with info = {"name", "scale", "config", "meta"} like srprune.models.load_model.
    """
    from srprune.models.registry import build_model
    from srprune.models import graphnet  # noqa: F401  (registers "graph")

    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} " + ("is not a file" if path.exists() else "does not exist"))
    fmt = "onnx" if path.suffix.lower() == ".onnx" else "pt2"
    b = _Builder(path)
    ep = None
    if fmt == "onnx":
        inp, out, dims = _onnx_graph(path, b)
    else:
        ep = _load_pt2(path)
        inp, out, dims = _pt2_graph(path, ep, b)
    colors = dims[1] or next((n["in_channels"] for n in b.nodes if n["op"] in ("conv", "deconv")), 3)
    source = {"format": fmt, "file": path.name}
    model = build_model(graphnet.NAME, 1, nodes=b.nodes, input=inp, output=out, colors=int(colors), source=path.name)
    _load_state(path, model, b.state)
    model.eval()
    shapes = [_probe_shape(dims, int(colors))]
    if None in dims[2:]:  # free sizes: a network that needs multiples of 8 or 16 (a U-Net) gets a second try
        shapes.append((shapes[0][0], shapes[0][1], dims[2] or 64, dims[3] or 64))
    for i, shape in enumerate(shapes):
        try:
            scale, diff = _probe(path, fmt, ep, model, shape)
            break
        except _DoesNotRun:
            if i == len(shapes) - 1:
                raise
    model.scale = scale
    model.arch["scale"] = scale
    meta = {"foreign": {**source, "check_max_abs_diff": diff,
                        "reference": "onnxruntime" if fmt == "onnx" else "torch.export.load(...).module()"}}
    return model, {"name": graphnet.NAME, "scale": scale, "config": model.arch["config"], "meta": meta}


def _load_state(path: Path, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    for key, value in state.items():
        if tuple(expected[key].shape) != tuple(value.shape):
            if expected[key].numel() != value.numel():
                raise InputError(f"{path}: weight {key} has shape {tuple(value.shape)}, the layer needs "
                                 f"{tuple(expected[key].shape)}")
            state[key] = value.reshape(expected[key].shape)
    model.load_state_dict(state)


def _scale_of(path: Path, shape: tuple[int, ...], out: tuple[int, ...]) -> int:
    """The integer upscaling factor from one probe, or a one-line refusal of a network that is not an upscaler."""
    if len(out) != 4 or out[:2] != shape[:2]:
        raise _DoesNotRun(f"{path}: output {'x'.join(map(str, out))} for input {'x'.join(map(str, shape))}; an SR "
                         "network maps NCHW images to NCHW images with the same channels")
    sh, sw = out[2] / shape[2], out[3] / shape[3]
    if sh != sw or sh != int(sh) or not 1 <= sh <= 8:
        raise _DoesNotRun(f"{path}: output {out[3]}x{out[2]} for input {shape[3]}x{shape[2]} is not an integer "
                         "upscale (x1 to x8) of the input")
    return int(sh)


def _reference(path: Path, fmt: str, ep, x: torch.Tensor) -> np.ndarray:
    """The source file's own output for `x` (ONNX Runtime, or the ExportedProgram's module)."""
    if fmt == "onnx":
        try:
            return _onnx_reference(path, x.numpy())
        except ImportError:
            raise InputError(f"{path}: checking an ONNX file needs onnxruntime (pip install 'srprune[onnx]')") from None
        except Exception as exc:  # noqa: BLE001
            raise _DoesNotRun(f"{path}: ONNX Runtime cannot run this file on a {'x'.join(map(str, x.shape))} "
                              f"input ({_first_line(exc)})") from None
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = ep.module()(x)
    except Exception as exc:  # noqa: BLE001
        raise _DoesNotRun(f"{path}: the program does not run on a {'x'.join(map(str, x.shape))} input "
                         f"({_first_line(exc)})") from None
    out = out[0] if isinstance(out, (list, tuple)) else out
    return out.detach().numpy()
