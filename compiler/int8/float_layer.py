"""An fp32 layer inside an int8 network (a mixed-precision model): the fp32 kernels with uint8 codes at their edges.

Why the fp32 kernels and not a separate pass: the conversions live where the data is touched anyway. A uint8 input is
dequantised (s * (q - z)) in the row copy into the kernel's window (direct and sparse kernels) or into the Winograd
block buffer, so the multiply-adds run in float32 on the window as in any fp32 layer; a uint8 residual is
dequantised in the write-back; the result is requantised to uint8 codes in the write-back (docs/quantization.md's
rounding), or written float32. No pass over memory is added at a precision boundary.

The kernel is the one the fp32 compiler would pick for the conv (compiler.rewrite's order): a sparse kernel for a
pruned conv where it beats the dense choice, else Winograd where `choose_conv_kernel` prefers it, else the direct
kernel. The tail writes the image: PixelShuffle fused, the global skip added as its residual (the uint8 image
repeated over the s^2 channels of each pixel, or the float32 bicubic skip tensor) and the clamp to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import tirx

from compiler.errors import CompilerError
from compiler.int8.isa import Int8Isa
from compiler.kernels import ConvSpec, choose_schedule, conv2d_primfunc, pack_weight
from compiler.quant_spec import IMAGE_INPUT, FloatConv
from compiler.sparse import choose_kernel, pack_sparse_weight, sparse_conv2d_primfunc
from compiler.winograd import (choose_conv_kernel, choose_winograd_schedule, dense_relative_cost, kernel_name,
                               transform_weight, winograd_primfunc)

SKIPS = ("none", "image", "tensor")  # the tail's global skip: none, the nearest-neighbour image, a float32 tensor


@dataclass
class FloatKernel:
    """One built fp32 layer: the PrimFunc, its constant arguments in order, and which tensor its residual is."""

    func: tirx.PrimFunc
    consts: list[np.ndarray]
    spec: ConvSpec
    kernel: str  # "direct", "winograd4", "sparse", ... (as the latency table names kernels)
    residual_from: str  # "" (none), "residual" (the layer's own), "image" or "skip" (the tail's global skip)

    @property
    def arg_names(self) -> list[str]:
        """Argument order: data, the constants, [the residual's source], out."""
        return ["data"] + [f"const{i}" for i in range(len(self.consts))] + \
            ([self.residual_from] if self.residual_from else []) + ["out"]

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return self.spec.out_shape

    @property
    def out_dtype(self) -> str:
        return self.spec.out_dtype


def float_spec(layer: FloatConv, n: int, h: int, w: int, *, tail_shuffle: int = 1, skip: str = "none",
               clamp: bool = False, res_channels: int = 0) -> ConvSpec:
    """The ConvSpec of `layer` at an (n, cin, h, w) input; `res_channels` = its residual's channels (0: none)."""
    if skip not in SKIPS:
        raise CompilerError(f"skip must be one of {SKIPS}, not {skip!r}")
    o, per, kh, kw = layer.weight.shape
    if skip != "none" and res_channels:
        raise CompilerError(f"{layer.name or 'conv'}: an fp32 tail with its own residual and the global skip has no "
                            "kernel (no SR plan makes one)")
    slope = float(np.asarray(layer.act_param).reshape(-1)[0]) if layer.activation == "leaky_relu" else 0.0
    residual, repeat, rdtype, rq, rc = False, 1, "float32", None, 0
    if skip == "image":
        residual, repeat, rdtype = True, tail_shuffle * tail_shuffle, "uint8"
        rq = (IMAGE_INPUT.scale, IMAGE_INPUT.zero_point)
    elif skip == "tensor":
        residual = True
    elif res_channels:
        residual, rc = True, (res_channels if res_channels != o else 0)
        if layer.residual is not None:
            rdtype, rq = "uint8", (layer.residual.scale, int(layer.residual.zero_point))
    pad = int(layer.padding)
    dq = None if layer.input is None else (layer.input.scale, int(layer.input.zero_point))
    oq = None if layer.output is None else (layer.output.scale, int(layer.output.zero_point))
    return ConvSpec(n, per * layer.groups, h, w, o, kh, kw, (pad,) * 4, layer.groups, True, layer.activation,
                    residual, repeat, tail_shuffle, slope, data_dtype="uint8" if dq else "float32",
                    residual_dtype=rdtype, out_dtype="uint8" if oq else "float32", data_q=dq, residual_q=rq,
                    out_q=oq, residual_channels=rc, clamp=clamp)


def build_float_kernel(layer: FloatConv, n: int, h: int, w: int, isa: Int8Isa, *, tail_shuffle: int = 1,
                       skip: str = "none", clamp: bool = False, res_channels: int = 0) -> FloatKernel:
    """The fp32 kernel of `layer` with the compiler's own choice of kernel (module docstring); vectors of isa.vec
    float32 lanes (the same register width as the int8 form's int32 lanes)."""
    spec = float_spec(layer, n, h, w, tail_shuffle=tail_shuffle, skip=skip, clamp=clamp, res_channels=res_channels)
    weight, bias = layer.weight, layer.bias
    alpha = np.asarray(layer.act_param, np.float32).reshape(spec.cout) if spec.act == "prelu" else None
    vec, regs = isa.vec, isa.registers
    source = "" if not spec.residual else {"image": "image", "tensor": "skip"}.get(skip, "residual")
    plain = spec.groups == 1 and spec.shuffle == 1 and spec.residual_repeat == 1
    plan = (choose_kernel(spec, weight, vec, regs, dense_relative=dense_relative_cost(spec, vec, regs))
            if plain and not np.all(weight != 0) else None)
    if plan is not None:
        func = sparse_conv2d_primfunc(spec, plan, weight, bias, alpha)
        return FloatKernel(func, [pack_sparse_weight(weight, plan)], spec, "sparse", source)
    tail = [bias] + ([alpha] if alpha is not None else [])
    m = choose_conv_kernel(spec, vec, regs)
    if m:
        sched = choose_winograd_schedule(spec, m, vec, regs)
        return FloatKernel(winograd_primfunc(spec, sched), [transform_weight(weight, sched)] + tail, spec,
                           kernel_name(m), source)
    sched = choose_schedule(spec, vec, regs)
    func = conv2d_primfunc(spec, sched, prefetch=spec.data_dtype == "float32")  # its prefetch counts float32 lines
    return FloatKernel(func, [pack_weight(weight, sched.oc_tile)] + tail, spec, kernel_name(0), source)
