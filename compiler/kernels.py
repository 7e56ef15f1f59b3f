"""Our own CPU conv2d kernels: TE compute + a TIR schedule, one template for x86 and aarch64.

TVM 0.27 has no default CPU schedule for conv2d (untuned builds run naive scalar loops), so every
conv our SR networks use goes through this template instead. Layout: the tensors stay NCHW (no layout
transforms anywhere, so residual adds and PixelShuffle see the framework layout); the kernel vectorises
along the output width (`vec` floats = the SIMD width), keeps an `oc_tile x (2 * vec)` block of outputs
in registers while it reduces over input channels and taps, and runs rows in parallel on all cores.
Weights are pre-packed at compile time to [Cout/oc_tile, Cin/groups, KH, KW, oc_tile] so the
per-tap weights of one register tile are contiguous. Bias, activation (ReLU/PReLU) and a residual
add are fused into the write-back of the tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from compiler.errors import CompilerError

ACTIVATIONS = ("none", "relu", "prelu")


@dataclass(frozen=True)
class ConvSpec:
    """Everything that fixes one conv kernel's code (used as a cache key: equal specs share code)."""

    n: int
    cin: int
    h: int
    w: int
    cout: int
    kh: int
    kw: int
    pad: tuple[int, int, int, int]  # top, left, bottom, right
    groups: int = 1
    bias: bool = True
    act: str = "none"
    residual: bool = False

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output height and width (stride 1, dilation 1)."""
        top, left, bottom, right = self.pad
        return self.h + top + bottom - self.kh + 1, self.w + left + right - self.kw + 1

    def macs(self) -> int:
        """Multiply-accumulates of one call."""
        oh, ow = self.out_hw
        return self.n * self.cout * oh * ow * (self.cin // self.groups) * self.kh * self.kw


@dataclass(frozen=True)
class Schedule:
    """The template's parameters: SIMD width in floats, vectors per tile row, output-channel tile."""

    vec: int
    nvec: int
    oc_tile: int

    @property
    def w_tile(self) -> int:
        """Output pixels along a row kept in registers per output channel."""
        return self.vec * self.nvec


def choose_schedule(spec: ConvSpec, vec: int, registers: int = 32) -> Schedule:
    """Pick the register tile for a conv on a machine with `registers` vector registers of `vec` floats.

    Accumulators (oc_tile * nvec) take at most about half the register file; the rest hold the
    input vectors and broadcast weights. oc_tile divides the per-group output channels so no
    output-channel predicate is needed.
    """
    ow = spec.out_hw[1]
    nvec = 2 if ow > vec else 1
    budget = max(1, registers // 2 // nvec)
    per_group = spec.cout // spec.groups
    if spec.groups > 1 and per_group == 1:
        nvec = 4 if ow > 3 * vec else nvec  # depthwise: no channel reuse, widen along the row instead
        return Schedule(vec=vec, nvec=nvec, oc_tile=1)
    oc_tile = max(d for d in range(1, min(per_group, budget) + 1) if per_group % d == 0)
    return Schedule(vec=vec, nvec=nvec, oc_tile=oc_tile)


def pack_weight(weight: np.ndarray, oc_tile: int) -> np.ndarray:
    """OIHW -> [O/oc_tile, I, H, W, oc_tile] so one tap's weights for a register tile are contiguous."""
    o, i, kh, kw = weight.shape
    if o % oc_tile:
        raise CompilerError(f"output channels {o} are not a multiple of the tile {oc_tile}")
    packed = weight.reshape(o // oc_tile, oc_tile, i, kh, kw).transpose(0, 2, 3, 4, 1)
    return np.ascontiguousarray(packed, dtype="float32")


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def conv2d_primfunc(spec: ConvSpec, sched: Schedule) -> tirx.PrimFunc:
    """The scheduled PrimFunc (data, packed weight[, bias][, alpha][, residual], out) for one conv."""
    if spec.act not in ACTIVATIONS:
        raise CompilerError(f"unknown activation {spec.act!r}; expected one of {ACTIVATIONS}")
    if spec.cin % spec.groups or spec.cout % spec.groups:
        raise CompilerError(f"channels {spec.cin}->{spec.cout} do not split into {spec.groups} groups")
    n, cin, h, w, cout = spec.n, spec.cin, spec.h, spec.w, spec.cout
    top, left, _, _ = spec.pad
    oh, ow = spec.out_hw
    ot, wt = sched.oc_tile, sched.w_tile
    owp = _round_up(ow, wt)  # the conv is computed on whole tiles; the write-back drops the overhang
    cin_g, cout_g = cin // spec.groups, cout // spec.groups

    data = te.placeholder((n, cin, h, w), "float32", name="data")
    weight = te.placeholder((cout // ot, cin_g, spec.kh, spec.kw, ot), "float32", name="weight")
    padded = te.compute(
        (n, cin, oh + spec.kh - 1, owp + spec.kw - 1),
        lambda b, c, y, x: tirx.if_then_else(
            tirx.all(y >= top, y < h + top, x >= left, x < w + left),
            data[b, c, y - top, x - left], tirx.const(0.0, "float32")),
        name="pad")
    ric = te.reduce_axis((0, cin_g), "ric")
    rkh = te.reduce_axis((0, spec.kh), "rkh")
    rkw = te.reduce_axis((0, spec.kw), "rkw")

    def _in_channel(oc):
        return ric if spec.groups == 1 else (oc // cout_g) * cin_g + ric

    conv = te.compute(
        (n, cout, oh, owp),
        lambda b, oc, y, x: te.sum(
            padded[b, _in_channel(oc), y + rkh, x + rkw] * weight[oc // ot, ric, rkh, rkw, oc % ot],
            axis=[ric, rkh, rkw]),
        name="conv")
    args = [data, weight]
    bias = alpha = resid = None
    if spec.bias:
        bias = te.placeholder((cout,), "float32", name="bias")
        args.append(bias)
    if spec.act == "prelu":
        alpha = te.placeholder((cout,), "float32", name="alpha")
        args.append(alpha)
    if spec.residual:
        resid = te.placeholder((n, cout, oh, ow), "float32", name="residual")
        args.append(resid)

    def _epilogue(b, oc, y, x):
        v = conv[b, oc, y, x]
        if bias is not None:
            v = v + bias[oc]
        if spec.act == "relu":
            v = tirx.max(v, tirx.const(0.0, "float32"))
        elif spec.act == "prelu":
            v = tirx.Select(v > 0, v, v * alpha[oc])
        if resid is not None:
            v = v + resid[b, oc, y, x]
        return v

    out = te.compute((n, cout, oh, ow), _epilogue, name="out")
    func = te.create_prim_func(args + [out])
    return _schedule(func, spec, sched, owp)


def _schedule(func: tirx.PrimFunc, spec: ConvSpec, sched: Schedule, owp: int) -> tirx.PrimFunc:
    """Register-tiled, vectorised, parallel schedule (the template; `sched` is its only parameter)."""
    from tvm import s_tir

    ot, wt, vec = sched.oc_tile, sched.w_tile, sched.vec
    oh, ow = spec.out_hw
    sch = s_tir.Schedule(func)
    pad_b, conv_b, out_b = sch.get_sblock("pad"), sch.get_sblock("conv"), sch.get_sblock("out")
    sch.set_scope(conv_b, 0, "local")

    # Write-back loops: (n, row) parallel, then output-channel tiles, then width tiles.
    b, oc, y, x = sch.get_loops(out_b)
    oco, oci = sch.split(oc, factors=[None, ot])
    xo, xi = sch.split(x, factors=[None, wt])  # may carry a predicate when ow % wt != 0
    sch.reorder(b, y, oco, xo, oci, xi)
    outer = sch.fuse(b, y)
    sch.parallel(outer)
    sch.compute_at(conv_b, xo, preserve_unit_loops=True)
    if ow % wt == 0:
        xiv, xii = sch.split(xi, factors=[None, vec])
        sch.unroll(oci)
        sch.unroll(xiv)
        sch.vectorize(xii)

    # The tile itself: reduce over (ic, kh, kw) outside, the oc_tile x w_tile accumulators inside.
    loops = sch.get_loops(conv_b)
    c_b, c_oc, c_y, c_x, ric, rkh, rkw = loops[-7:]
    c_xo, c_xv, c_xi = sch.split(c_x, factors=[None, sched.nvec, vec])
    sch.reorder(ric, rkh, rkw, c_oc, c_xo, c_xv, c_xi)
    sch.unroll(c_oc)
    sch.unroll(c_xo)
    sch.unroll(c_xv)
    sch.vectorize(c_xi)
    sch.decompose_reduction(conv_b, ric)  # the init copies the unrolled/vectorised inner loops

    # Zero padding: its own parallel pass over (n, channel, row) with a vectorised-friendly inner loop.
    p_b, p_c, p_y, p_x = sch.get_loops(pad_b)
    sch.parallel(sch.fuse(p_b, p_c, p_y))
    # op_pattern 8 = kOpaque: FuseOps must not merge other ops into this hand-scheduled kernel.
    return sch.mod["main"].with_attr("tir.is_scheduled", True).with_attr("op_pattern", 8)
