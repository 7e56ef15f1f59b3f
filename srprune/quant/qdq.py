"""An int8 model (the `quantized` architecture) as QDQ ONNX: `srprune export QMODEL --format onnx`.

The graph computes what `QuantizedSR.run_codes` computes (docs/quantization.md), in ONNX's QDQ form so that
runtimes with int8 kernels (ONNX Runtime's QDQ fusion into QLinearConv, and others) can run it as int8:

- input float [0, 1] -> QuantizeLinear(s = 1/255, z = 0, uint8): the image codes (tensor 0);
- each conv: DequantizeLinear of its uint8 input (calibrated s, z per tensor), of its int8 weight initializer
  (per-output-channel scales, axis=0; `weights="uint8"`: the same weight + 128 as uint8, zero point 128) and of
  its int32 bias (scale s_x * s_w[o], zero point 0, axis=0), a float Conv, the activation (Relu, PRelu, Tanh),
  the residual (DequantizeLinear of its uint8 tensor, sliced or zero-padded to the conv's width) added in float,
  then QuantizeLinear to the next uint8 tensor (s, z);
- the tail stays float32: + the global skip (from the dequantised image: repeat as a Gather of channels, bicubic as
  an edge-padded depthwise Conv), DepthToSpace (CRD, = PixelShuffle), Clip [0, 1], and round(255 y) / 255 as the
  model's forward returns.

A runtime's int8 kernels requantise with their own rounding (ONNX Runtime folds s_x s_w / s_y into one multiplier),
so an activation code may differ by one step and the image is not bit-exact: the check is `check_close`.

Why two weight forms: int8 weights (zero point 0) are the standard form (XNNPACK's per-channel qs8, NNAPI, TensorRT
take only these), but ONNX Runtime's fused u8 x s8 convs on x86 CPUs without VNNI add pairs of products into
int16 (vpmaddubsw), which saturates: on an AVX2 Zen 3, 59% of a searched network's output values came out more than
one level off. Its u8 x u8 kernels widen to int16 first and are exact everywhere, so `uint8` is the form for ONNX
Runtime on such CPUs (all of its values within one level there). Where the host's ONNX Runtime saturates, an int8
file is checked with ONNX Runtime's graph optimisations off (the QDQ graph evaluated as written, in float): the file
is verified, and the export says that this CPU's ONNX Runtime would not run it right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srprune.errors import InputError

# What the written file must hold against the integer path (`srprune eval`): every pixel within MAX_DIFF, and all
# but FRACTION of pixels within one uint8 level (1/255, plus float rounding).
LEVEL = 1.0 / 255.0 + 1e-6
FRACTION = 1e-3
MAX_DIFF = 4.0 / 255.0 + 1e-6
WEIGHT_FORMS = ("int8", "uint8")
UINT8_WEIGHT_ZERO = 128  # int8 weights are symmetric in [-127, 127]: + 128 is exact in uint8


def ort_int8_saturates() -> bool:
    """Whether ONNX Runtime's fused int8-weight convs saturate on this CPU (module docstring): x86 without AVX-512
    VNNI or AVX-VNNI."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    from compiler.targets import host_cpu_features

    return not {"avx512vnni", "avxvnni"} & host_cpu_features()


def check_close(got: np.ndarray, want: np.ndarray) -> tuple[float, float, bool]:
    """(max |diff|, fraction of values beyond one level, within the tolerance stated above)."""
    if got.shape != want.shape:
        return float("inf"), 1.0, False
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    worst, beyond = float(diff.max()), float((diff > LEVEL).mean())
    return worst, beyond, worst <= MAX_DIFF and beyond <= FRACTION


def qdq_graph(model, opset: int = 18, weights: str = "int8"):
    """The onnx ModelProto of a QuantizedSR, its weights in `weights` form (WEIGHT_FORMS, module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if weights not in WEIGHT_FORMS:
        raise InputError(f"unknown QDQ weight form {weights!r} (use {' or '.join(WEIGHT_FORMS)})")
    model.check_all_int8("QDQ ONNX export")

    inits: list = []
    nodes: list = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def qp(t: int) -> tuple[str, str]:
        p = model.qparams(t)
        return (const(f"t{t}_scale", np.array(p.scale, np.float32)),
                const(f"t{t}_zero", np.array(p.zero_point, np.uint8)))

    def deq(t: int) -> str:  # the float value of uint8 tensor t (one DequantizeLinear per use: QDQ convention)
        s, z = f"t{t}_scale", f"t{t}_zero"
        deq.count += 1
        return node("DequantizeLinear", [codes[t], s, z], f"t{t}_dq{deq.count}")
    deq.count = 0

    s0, z0 = qp(0)
    codes = [node("QuantizeLinear", ["input", s0, z0], "t0")]
    y = None
    for n, (layer, spec) in enumerate(zip(model.layers, model.specs)):
        name = f"l{n}"
        src = model.qparams(spec["src"])
        w_s = layer.weight_scale.numpy().astype(np.float32)
        out_ch = w_s.shape[0]
        w_codes, w_zero = layer.weight.numpy().astype(np.int8), np.zeros(out_ch, np.int8)
        if weights == "uint8":
            w_codes = (w_codes.astype(np.int16) + UINT8_WEIGHT_ZERO).astype(np.uint8)
            w_zero = np.full(out_ch, UINT8_WEIGHT_ZERO, np.uint8)
        w = node("DequantizeLinear", [const(f"{name}_w", w_codes), const(f"{name}_w_scale", w_s),
                                      const(f"{name}_w_zero", w_zero)], f"{name}_w_dq", axis=0)
        b_s = (np.float64(src.scale) * w_s.astype(np.float64)).astype(np.float32)
        b = node("DequantizeLinear", [const(f"{name}_b", layer.bias.numpy().astype(np.int32)),
                                      const(f"{name}_b_scale", b_s),
                                      const(f"{name}_b_zero", np.zeros(out_ch, np.int32))], f"{name}_b_dq", axis=0)
        pad = spec["k"] // 2
        y = node("Conv", [deq(spec["src"]), w, b], f"{name}_conv", pads=[pad] * 4, group=spec["groups"],
                 kernel_shape=[spec["k"]] * 2)
        if spec["act"] == "relu":
            y = node("Relu", [y], f"{name}_relu")
        elif spec["act"] == "prelu":
            slope = layer.act_param.numpy().astype(np.float32).reshape(-1, 1, 1)
            y = node("PRelu", [y, const(f"{name}_slope", slope)], f"{name}_prelu")
        elif spec["act"] == "tanh":
            y = node("Tanh", [y], f"{name}_tanh")
        elif spec["act"] != "none":
            raise InputError(f"layer {spec['name']}: activation {spec['act']!r} has no QDQ ONNX form")
        if spec["residual"] is not None:
            r = deq(spec["residual"])
            width = model.layers[spec["residual"] - 1].weight.shape[0] if spec["residual"] else model.colors
            if width > out_ch:
                r = node("Slice", [r, const(f"{name}_rs0", np.array([0])), const(f"{name}_rs1", np.array([out_ch])),
                                   const(f"{name}_rs_axis", np.array([1]))], f"{name}_res_slice")
            elif width < out_ch:
                r = node("Pad", [r, const(f"{name}_rpad", np.array([0, 0, 0, 0, 0, out_ch - width, 0, 0]))],
                         f"{name}_res_pad")
            y = node("Add", [y, r], f"{name}_res")
        if not spec["tail"]:
            s, z = qp(n + 1)
            codes.append(node("QuantizeLinear", [y, s, z], f"t{n + 1}"))
    r2 = model.scale * model.scale
    if model.skip == "repeat":
        idx = np.repeat(np.arange(model.colors, dtype=np.int64), r2)
        skip = node("Gather", [deq(0), const("skip_index", idx)], "skip", axis=1)
        y = node("Add", [y, skip], "tail_skip")
    elif model.skip == "bicubic":
        padded = node("Pad", [deq(0), const("skip_pads", np.array([0, 0, 2, 2, 0, 0, 2, 2]))], "skip_pad",
                      mode="edge")
        skip = node("Conv", [padded, const("skip_weight", model.skip_weight.numpy().astype(np.float32))], "skip",
                    group=model.colors, kernel_shape=[5, 5])
        y = node("Add", [y, skip], "tail_skip")
    y = node("DepthToSpace", [y], "shuffle", blocksize=model.scale, mode="CRD")
    y = node("Clip", [y, const("zero", np.array(0, np.float32)), const("one", np.array(1, np.float32))], "clip")
    y = node("Round", [node("Mul", [y, const("c255", np.array(255, np.float32))], "times255")], "rounded")
    nodes.append(helper.make_node("Div", [y, "c255"], ["output"], name="output"))
    graph = helper.make_graph(
        nodes, "srprune_int8_qdq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", model.colors, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                       ["N", model.colors, "H_out", "W_out"])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="srprune")
    proto.ir_version = min(proto.ir_version, 9)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def write_qdq(net, tmp: Path, opset: int, weights: str = "int8") -> None:
    """Write `net` (a QuantizedSR) as QDQ ONNX of `opset` to `tmp` (srprune.interchange runs and checks it)."""
    try:
        import onnx
    except ImportError:
        raise InputError("exporting ONNX needs the onnx package (pip install 'srprune[onnx]')") from None
    onnx.save(qdq_graph(net, opset, weights), str(tmp))
