"""Winograd conv kernels F(m x m, 3 x 3) for dense 3x3 stride-1 convs, one template for x86 and aarch64.

Why: our direct kernel runs near the FMA ceiling (docs/benchmarks.md `fma_ceiling`), so only fewer
multiplications make a 3x3 conv faster. F(m, 3) computes an m x m output tile from an (m+2) x (m+2)
input tile with (m+2)^2 multiplies per (input, output) channel pair instead of 9 m^2: 2.25x fewer for
F(2x2, 3x3), 4x fewer for F(4x4, 3x3) (F(6x6) is left out: its transforms' coefficients up to 32 cost
about one more decimal digit of float32 and its 64 transformed planes overflow the register-tiled GEMM's
working set for the channel counts of SR networks).

The kernel, per parallel task (a band of tile rows, as compiler.kernels.row_tasks splits rows), per tile row
and per block of `w_tile` tiles along the row:

1. input transform V = B^T d B, vectorised along the tiles: each channel's (m+2) padded input rows of the block
   are copied into a small buffer (zero padding folded: rows or columns outside the image read as zeros, no
   padded copy of the tensor), combined row-wise (B^T d, contiguous vectors), and the column transform gathers
   columns x*m + j of `vec` tiles with one vector shuffle of m+1 contiguous vectors;
2. the batched GEMM M[e] = U[e] V[e] for each of the (m+2)^2 transformed positions e: the register tile of the
   direct kernel (oc_tile output channels x nvec vectors of tiles), reducing over input channels in straight-line
   code, weights broadcast from U packed [e, Cout/oc_tile, Cin, oc_tile] (transformed at compile time, a constant);
3. output transform Y = A^T M A, whose m vectors per output row are interleaved lane-wise into contiguous
   columns and written back by compiler.kernels.WriteBack / store_shuffled: bias, activation
   (compiler.epilogue), residual (repeated over channels or not) and a fused PixelShuffle, exactly as the
   direct kernel does.

Numerics (tests/test_winograd.py): relative to the largest output of a float64 PyTorch reference, the
error is below WINOGRAD_RTOL (F(2x2) stays within the direct kernel's 1e-4 absolute checks; F(4x4) loses
about one decimal digit); on the built-in validation images a whole network differs from PyTorch by at
most 1 level of 255 on >= 99.9% of pixels after rounding to uint8.

The compiler picks, per dense conv, between this kernel and the direct one with `choose_conv_kernel`
(a cost model counting vector instructions; benchmarks/winograd.py measures the two side by side).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tvm import tirx

from compiler.epilogue import ACTIVATIONS
from compiler.errors import CompilerError
from compiler.kernels import (ROW_TASKS, ConvSpec, WriteBack, check_edges, choose_schedule, load_as, splat,
                              store_shuffled)

# Transform matrices (Lavin & Gray 2016; interpolation points 0, +-1 for F(2), 0, +-1, +-2 for F(4)):
# Y = A^T [(G g G^T) * (B^T d B)] A for a 3x3 filter g and an (m+2) x (m+2) input tile d.
_MATRICES: dict[int, tuple[list, list, list]] = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}
TILES = tuple(_MATRICES)  # the output tile sizes m we build: F(2x2, 3x3) and F(4x4, 3x3)

# Largest error of a Winograd conv relative to the largest magnitude of its float64 reference output
# (measured by tests/test_winograd.py on random data: F(2) ~1e-7, F(4) ~1e-6; the bound leaves a margin).
WINOGRAD_RTOL = {2: 1e-5, 4: 5e-5}

# "auto": the cost model picks per conv; "direct": never Winograd; "f2" / "f4": every eligible conv.
MODES = ("auto", "direct", "f2", "f4")
_MODE: contextvars.ContextVar[str] = contextvars.ContextVar("winograd_mode", default="auto")


@contextlib.contextmanager
def winograd_mode(mode: str) -> Iterator[None]:
    """Within the block, every compile (compiler.rewrite) and latency-table build chooses kernels by `mode`.

    Why a context rather than a parameter: the choice is threaded through import -> rewrite -> build and the
    latency measurement, and benchmarks only need to force one side; the default ("auto") is what users get.
    """
    if mode not in MODES:
        raise CompilerError(f"unknown Winograd mode {mode!r}; expected one of {MODES}")
    token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(token)


def current_mode() -> str:
    """The Winograd mode in force (see `winograd_mode`)."""
    return _MODE.get()


def matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B^T, G, A^T) of F(m x m, 3 x 3) as float64 arrays."""
    if m not in _MATRICES:
        raise CompilerError(f"no Winograd F({m}x{m}, 3x3) here; tiles: {TILES}")
    bt, g, at = _MATRICES[m]
    return np.array(bt, np.float64), np.array(g, np.float64), np.array(at, np.float64)


def eligible(spec: ConvSpec) -> bool:
    """Whether the Winograd kernel can compute `spec`: an ungrouped 3x3 conv (stride 1: all our kernels are) in
    float32 arithmetic (float32 or uint8 codes at its edges). The one home of this rule: the rewrite, the latency
    table and the int8 network's fp32 layers all ask `choose_conv_kernel`, so an fp16 build keeps its 3x3 convs
    direct everywhere alike."""
    float32 = spec.compute == "float32" and not {spec.data_dtype, spec.residual_dtype, spec.out_dtype} - {
        "float32", "uint8"}
    return float32 and spec.kh == 3 and spec.kw == 3 and spec.groups == 1 and spec.act in ACTIVATIONS


@dataclass(frozen=True)
class WinogradSchedule:
    """Output tile m, SIMD width, vectors of tiles per register row, output channels per register tile."""

    m: int
    vec: int
    nvec: int
    oc_tile: int

    @property
    def alpha(self) -> int:
        """Input tile side m + 2."""
        return self.m + 2

    @property
    def w_tile(self) -> int:
        """Tiles along a row per block (the GEMM's register row)."""
        return self.vec * self.nvec


def choose_winograd_schedule(spec: ConvSpec, m: int, vec: int, registers: int = 32) -> WinogradSchedule:
    """The register tile for F(m) on `spec`: the fewest computed tiles (blocks of nvec * vec tiles must cover the
    row), then the most accumulators within half the register file, then the fewest loads per multiply-add."""
    if m not in _MATRICES:
        raise CompilerError(f"no Winograd F({m}x{m}, 3x3) here; tiles: {TILES}")
    xtiles = -(-spec.out_hw[1] // m)
    budget = max(1, registers // 2)
    step = spec.shuffle
    best = None
    for nvec in (1, 2, 3, 4):
        wt = nvec * vec
        computed = -(-xtiles // wt) * wt
        for ot in range(step, min(spec.cout, budget // nvec) + 1, step):
            if spec.cout % ot:
                continue
            key = (computed, -ot * nvec, ot + nvec)
            if best is None or key < best[0]:
                best = (key, WinogradSchedule(m, vec, nvec, ot))
    if best is None:
        raise CompilerError(f"no Winograd register tile for {spec.cout} output channels with shuffle {step}")
    return best[1]


def transform_weight(weight: np.ndarray, sched: WinogradSchedule) -> np.ndarray:
    """OIHW 3x3 weights -> U = G g G^T (in float64, rounded once), packed [alpha^2, O/oc_tile, I, oc_tile]."""
    o, i, kh, kw = weight.shape
    if (kh, kw) != (3, 3) or o % sched.oc_tile:
        raise CompilerError(f"Winograd needs 3x3 weights with output channels a multiple of {sched.oc_tile}")
    _, g, _ = matrices(sched.m)
    u = np.einsum("ak,oikl,bl->abio", g, weight.astype(np.float64), g)  # [alpha, alpha, I, O]
    a = sched.alpha
    u = u.reshape(a * a, i, o // sched.oc_tile, sched.oc_tile).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(u, dtype="float32")


def input_transform_1d(m: int, d: list) -> list:
    """B^T d for one line of m + 2 values, with the common subexpressions of the rows shared (F(4): 12 operations
    instead of 22 for the matrix product term by term); equal to `matrices(m)[0] @ d` (tests/test_winograd.py)."""
    if m == 2:
        return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
    c4, c5 = (_scalar_like(d[0], v) for v in (4.0, 5.0))
    t1, t2 = d[4] - d[2] * c4, d[3] - d[1] * c4  # rows 1, 2 = t1 +- t2
    t3, t4 = d[4] - d[2], (d[3] - d[1]) * _scalar_like(d[0], 2.0)  # rows 3, 4 = t3 +- t4
    return [d[0] * c4 - d[2] * c5 + d[4], t1 + t2, t1 - t2, t3 + t4, t3 - t4, d[1] * c4 - d[3] * c5 + d[5]]


def output_transform_1d(m: int, v: list) -> list:
    """A^T v for one line of m + 2 values, sharing the sums and differences of the symmetric pairs (F(4): 13
    operations instead of 19); equal to `matrices(m)[2] @ v` (tests/test_winograd.py)."""
    if m == 2:
        return [v[0] + v[1] + v[2], v[1] - v[2] - v[3]]
    p12, m12, p34, m34 = v[1] + v[2], v[1] - v[2], v[3] + v[4], v[3] - v[4]
    c2, c4, c8 = (_scalar_like(v[0], c) for c in (2.0, 4.0, 8.0))
    return [v[0] + p12 + p34, m12 + m34 * c2, p12 + p34 * c4, m12 + m34 * c8 + v[5]]


def _scalar_like(v, c: float):
    """The constant c in v's type: a float32 (vector) immediate for TIR values, the number itself for numpy ones."""
    lanes = getattr(getattr(v, "dtype", None), "lanes", None)
    return c if lanes is None else splat(c, "float32", lanes)


def winograd_primfunc(spec: ConvSpec, sched: WinogradSchedule, prefetch: bool = True) -> tirx.PrimFunc:
    """The PrimFunc (data, U[, bias][, alpha][, residual], out) of one conv as F(m x m, 3 x 3).

    Same arguments and output as compiler.kernels.conv2d_primfunc except the weight: `transform_weight`'s U.
    """
    if not eligible(spec):
        raise CompilerError("the Winograd kernel computes ungrouped 3x3 convs in float32 only")
    if spec.cout % sched.oc_tile or sched.oc_tile % spec.shuffle:
        raise CompilerError(f"oc_tile {sched.oc_tile} must divide {spec.cout} and be a multiple of the shuffle")
    if spec.shuffle > 1 and spec.cout % (spec.shuffle ** 2):
        raise CompilerError(f"a fused PixelShuffle({spec.shuffle}) needs output channels that are a multiple of "
                            f"{spec.shuffle ** 2}")
    if spec.cout % spec.residual_repeat or (spec.residual_repeat > 1 and not spec.residual):
        raise CompilerError(f"residual_repeat {spec.residual_repeat} needs a residual whose channels divide {spec.cout}")
    if spec.compute != "float32":
        raise CompilerError("the Winograd kernel computes in float32 only")
    check_edges(spec)
    func = _build(spec, sched, prefetch)
    return func.with_attr("tir.is_scheduled", True).with_attr("op_pattern", 8)


def _tile_row_tasks(tile_rows: int) -> int:
    """Bands of tile rows run in parallel (a multiple of common thread counts, each at least 2 tile rows)."""
    return next(t for t in ROW_TASKS if tile_rows // t >= 2 or t == 1)


def _build(spec: ConvSpec, sched: WinogradSchedule, prefetch: bool) -> tirx.PrimFunc:  # noqa: PLR0915
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T  # noqa: N812

    n, cin, h, w, cout = spec.n, spec.cin, spec.h, spec.w, spec.cout
    top, left = spec.pad[0], spec.pad[1]
    oh, ow = spec.out_hw
    m, a, vec, nv, ot, wt = sched.m, sched.alpha, sched.vec, sched.nvec, sched.oc_tile, sched.w_tile
    a2 = a * a
    tile_rows, xtiles = -(-oh // m), -(-ow // m)
    nblocks = -(-xtiles // wt)
    pcols = wt * m + vec  # a block's padded input columns: m per tile, + the a - m overlap, rounded to vectors
    nvc = pcols // vec
    tasks = _tile_row_tasks(tile_rows)
    band = -(-tile_rows // tasks)
    chunk = max(d for d in range(1, cin + 1) if cin % d == 0 and d <= 32)
    f32 = "float32"
    s = spec.shuffle
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            T.func_attr({"tir.noalias": True})
            data = T.arg("data", T.buffer((n, cin, h, w), spec.data_dtype))
            ubuf = T.arg("weight", T.buffer((a2, cout // ot, cin, ot), f32))
            bias = T.arg("bias", T.buffer((cout,), f32)) if spec.bias else None
            alpha = T.arg("alpha", T.buffer((cout,), f32)) if spec.act == "prelu" else None
            resid = T.arg("residual", T.buffer(spec.residual_shape, spec.residual_dtype)) if spec.residual else None
            out = T.arg("out", T.buffer(spec.out_shape, spec.out_dtype))
            with T.parallel(0, n * tasks) as btask:
                b = btask // tasks if n > 1 else tirx.const(0, "int32")
                ty0 = (btask % tasks) * band
                pbuf = T.sblock_alloc_buffer((a, pcols), f32)  # one channel's padded input rows of a block
                rbuf = T.sblock_alloc_buffer((a, pcols), f32)  # the same after the row transform B^T d
                vbuf = T.sblock_alloc_buffer((a2, cin, wt), f32)  # V: transformed input of the block
                mbuf = T.sblock_alloc_buffer((a2, ot, wt), f32)  # M: GEMM results of one channel tile
                with T.serial(0, tirx.min(band, tile_rows - ty0)) as dty:
                    ty = ty0 + dty
                    with T.serial(0, nblocks) as xo:
                        col0 = xo * (wt * m) - left  # input column of pbuf[:, 0]
                        with T.serial(0, cin) as c:
                            _fill_rows(T, spec, data, pbuf, b, c, ty * m - top, col0, a, nvc, vec)
                            if prefetch:
                                _prefetch_block(T, spec, data, b, c, ty * m - top, col0 + wt * m, a, wt * m)
                            with T.serial(0, nvc) as v:
                                rows = [T.Bind(tirx.BufferLoad(pbuf, [k, tirx.Ramp(v * vec, 1, vec)])) for k in range(a)]
                                for i, row in enumerate(input_transform_1d(m, rows)):
                                    T.buffer_store(rbuf, row, [i, tirx.Ramp(v * vec, 1, vec)])
                            with T.serial(0, nv) as xv:
                                base = xv * (vec * m)
                                for i in range(a):
                                    loads = [T.Bind(tirx.BufferLoad(rbuf, [i, tirx.Ramp(base + q * vec, 1, vec)]))
                                             for q in range(m + 1)]
                                    cols = [T.Bind(tirx.Shuffle(loads, [lane * m + j for lane in range(vec)]))
                                            for j in range(a)]
                                    for jj, col in enumerate(input_transform_1d(m, cols)):
                                        T.buffer_store(vbuf, col, [i * a + jj, c, tirx.Ramp(xv * vec, 1, vec)])
                        with T.serial(0, cout // ot) as oco:
                            with T.serial(0, a2) as e:
                                _gemm(T, ubuf, vbuf, mbuf, e, oco, cin, chunk, ot, nv, vec)
                            with T.serial(0, ot // s) as g:
                                with T.serial(0, nv) as xv:
                                    _output_tile(T, spec, sched, mbuf, bias, alpha, resid, out, b, ty,
                                                 oco * ot + g * s, g * s, xo * wt + xv * vec, xv,
                                                 cols_whole=nblocks * wt * m == ow, rows_whole=tile_rows * m == oh)
    return ib.get()


def _fill_rows(T, spec: ConvSpec, data, pbuf, b, c, row0, col0, a: int, nvc: int, vec: int) -> None:  # noqa: N803
    """pbuf[k, :] = input rows row0 + k of channel c from column col0, zero outside the image (the padding)."""
    h, w = spec.h, spec.w
    zero = tirx.const(0.0, "float32")
    for k in range(a):
        row = row0 + k
        with T.If(tirx.all(row >= 0, row < h)):
            with T.Then():
                with T.serial(0, nvc) as v:
                    x = col0 + v * vec
                    with T.If(tirx.all(x >= 0, x + vec <= w)):
                        with T.Then():
                            T.buffer_store(pbuf, load_as(tirx.BufferLoad(data, [b, c, row, tirx.Ramp(x, 1, vec)]),
                                                         spec.data_dtype, spec.data_q, vec),
                                           [k, tirx.Ramp(v * vec, 1, vec)])
                        with T.Else():
                            with T.serial(0, vec) as lane:
                                xl = x + lane
                                pixel = load_as(data[b, c, row, tirx.max(0, tirx.min(xl, w - 1))], spec.data_dtype,
                                                spec.data_q, 1)
                                T.buffer_store(pbuf, tirx.Select(tirx.all(xl >= 0, xl < w), pixel, zero),
                                               [k, v * vec + lane])
            with T.Else():
                with T.serial(0, nvc) as v:
                    T.buffer_store(pbuf, tirx.Broadcast(zero, vec), [k, tirx.Ramp(v * vec, 1, vec)])


def _prefetch_block(T, spec: ConvSpec, data, b, c, row0, col0, a: int, cols: int) -> None:  # noqa: N803
    """Software-prefetch channel c's a input rows from row0 at the next block's columns (col0 .. col0 + cols).

    Why: a block reads short runs of a rows from every channel (a x cin streams), which the hardware prefetcher
    does not follow; the copy into the block buffer then waited on memory (about a quarter of the kernel's time in
    a perf profile of conv3x3 32->32 at 640x360). One block ahead, the loads overlap with this block's work.
    """
    h, w = spec.h, spec.w
    for k in range(a):
        row = row0 + k
        with T.If(tirx.all(row >= 0, row < h)):
            with T.Then():
                for line in range(0, cols, 16):  # one 64-byte line per 16 floats
                    x = tirx.max(0, tirx.min(col0 + line, w - 1))
                    addr = tirx.call_intrin("handle", "tirx.address_of", tirx.BufferLoad(data, [b, c, row, x]))
                    T.evaluate(tirx.call_intrin("void", "tirx.prefetch", addr, 0, 3, 1))


def _gemm(T, ubuf, vbuf, mbuf, e, oco, cin: int, chunk: int, ot: int, nv: int, vec: int) -> None:  # noqa: N803
    """M[e, oi, :] = sum_c U[e, oco, c, oi] V[e, c, :]: oc_tile x nvec accumulators as SSA values (so LLVM keeps
    them in registers) over straight-line chunks of `chunk` input channels, M holding the partial sums between."""

    def accumulate(acc: list, c0) -> list:
        for cl in range(chunk):
            c = c0 + cl
            inp = [T.Bind(tirx.BufferLoad(vbuf, [e, c, tirx.Ramp(xv * vec, 1, vec)])) for xv in range(nv)]
            for oi in range(ot):
                wv = tirx.Broadcast(tirx.BufferLoad(ubuf, [e, oco, c, oi]), vec)
                for xv in range(nv):
                    prod = wv * inp[xv]
                    acc[oi][xv] = T.Bind(prod if acc[oi][xv] is None else acc[oi][xv] + prod)
        return acc

    def store(acc: list) -> None:
        for oi in range(ot):
            for xv in range(nv):
                T.buffer_store(mbuf, acc[oi][xv], [e, oi, tirx.Ramp(xv * vec, 1, vec)])

    store(accumulate([[None] * nv for _ in range(ot)], 0))
    if chunk < cin:
        with T.serial(1, cin // chunk) as cc:
            loaded = [[T.Bind(tirx.BufferLoad(mbuf, [e, oi, tirx.Ramp(xv * vec, 1, vec)])) for xv in range(nv)]
                      for oi in range(ot)]
            store(accumulate(loaded, cc * chunk))


def _output_tile(T, spec: ConvSpec, sched: WinogradSchedule, mbuf, bias, alpha, resid, out,  # noqa: N803
                 b, ty, oc0, oi0, tile0, xv, cols_whole: bool, rows_whole: bool) -> None:
    """Y = A^T M A for `vec` tiles (from tile0) of the s = shuffle output channels oc0.., then the fused write-back:
    each output row's m vectors of tiles interleaved into m vectors of contiguous columns."""
    m, a, vec = sched.m, sched.alpha, sched.vec
    s = spec.shuffle
    per_channel = []
    for j in range(s):
        mv = [T.Bind(tirx.BufferLoad(mbuf, [e, oi0 + j, tirx.Ramp(xv * vec, 1, vec)])) for e in range(a * a)]
        by_col = [[T.Bind(x) for x in output_transform_1d(m, [mv[i * a + jj] for i in range(a)])] for jj in range(a)]
        per_channel.append([[T.Bind(x) for x in output_transform_1d(m, [by_col[jj][r] for jj in range(a)])]
                            for r in range(m)])
    for r in range(m):
        y = ty * m + r
        backs = [WriteBack(spec, out, resid, b, y, oc0 + j,
                           None if bias is None else tirx.BufferLoad(bias, [oc0 + j]),
                           None if alpha is None else tirx.BufferLoad(alpha, [oc0 + j])) for j in range(s)]
        body = []
        for q in range(m):
            idx = [(col % m) * vec + col // m for col in range(q * vec, (q + 1) * vec)]
            body.append((tile0 * m + q * vec, [tirx.Shuffle(per_channel[j][r], idx) for j in range(s)]))

        def emit(body=body, backs=backs) -> None:
            for x, vals in body:
                if s == 1:
                    backs[0].store_vector(T, vals[0], x, vec, whole=cols_whole)
                else:
                    store_shuffled(T, backs, vals, x, vec, whole=cols_whole)

        if rows_whole:
            emit()
        else:
            with T.If(y < spec.out_hw[0]):
                with T.Then():
                    emit()


# ---- the per-layer choice ----------------------------------------------------------------------------------

# Relative cost of a vector instruction of the transforms against one of the GEMM's multiply-adds (the
# transforms are loads, shuffles, adds and stores through L1, the GEMM a dependency-free FMA stream): fitted by
# least squares to a first run of benchmarks/winograd.py (2-core AVX-512 host, loaded machine, 640x360; measured
# F(4) / direct 0.35-0.75 and F(2) / direct 0.52-0.95 on 64-, 32- and 16-channel bodies and a shuffled tail; the
# model is within 0.07 of each). Re-fit it from `python benchmarks/winograd.py` when the kernels change.
TRANSFORM_WEIGHT = 2.0


def direct_cost(spec: ConvSpec, vec: int, registers: int = 32) -> float:
    """Modelled vector multiply-adds (+ loads not hidden by them) of the direct kernel."""
    sched = choose_schedule(spec, vec, registers)
    oh, ow = spec.out_hw
    cols = -(-ow // sched.w_tile) * sched.w_tile
    fma = spec.n * oh * cols / vec * spec.cout * spec.cin // spec.groups * spec.kh * spec.kw
    loads = fma * (1 / sched.oc_tile + 1 / sched.nvec) / 2
    return fma + loads


def winograd_cost(spec: ConvSpec, m: int, vec: int, registers: int = 32) -> float:
    """Modelled cost of F(m) in the same units: GEMM multiply-adds and loads, plus weighted transform work."""
    sched = choose_winograd_schedule(spec, m, vec, registers)
    a = sched.alpha
    oh, ow = spec.out_hw
    xtiles = -(-ow // m)
    blocks = -(-xtiles // sched.w_tile)  # blocks of w_tile tiles covering a row of tiles
    tiles = spec.n * -(-oh // m) * blocks * sched.w_tile
    fma = tiles / vec * a * a * spec.cin * spec.cout
    loads = fma * (1 / sched.oc_tile + 1 / sched.nvec) / 2
    bt, _, at = matrices(m)
    per_in = 2 * a * a + 2 * np.count_nonzero(bt) * a  # copies + row and column transforms, per channel and tile
    per_out = a * a + np.count_nonzero(at) * (a + m) + 3 * m * m  # loads, transforms, shuffles and epilogue stores
    transforms = tiles / vec * (spec.cin * per_in + spec.cout * per_out + spec.cout * spec.cin * a * a / 4 / vec)
    return fma + loads + TRANSFORM_WEIGHT * transforms


def choose_conv_kernel(spec: ConvSpec, vec: int, registers: int = 32, mode: str | None = None) -> int:
    """The Winograd tile m for this dense conv, or 0 for the direct kernel (`mode`: see `winograd_mode`)."""
    mode = current_mode() if mode is None else mode
    if mode not in MODES:
        raise CompilerError(f"unknown Winograd mode {mode!r}; expected one of {MODES}")
    if mode == "direct" or not eligible(spec):
        return 0
    if mode in ("f2", "f4"):
        m = int(mode[1])
        with contextlib.suppress(CompilerError):
            choose_winograd_schedule(spec, m, vec, registers)
            return m
        return 0
    best, best_cost = 0, direct_cost(spec, vec, registers)
    for m in TILES:
        try:
            cost = winograd_cost(spec, m, vec, registers)
        except CompilerError:
            continue
        if cost < best_cost:
            best, best_cost = m, cost
    return best


def dense_relative_cost(spec: ConvSpec, vec: int, registers: int = 32) -> float:
    """Modelled cost of the dense kernel `choose_conv_kernel` picks, relative to the direct kernel's (1.0 = direct).

    Why: a pruned conv's sparse kernel is a direct kernel that skips pruned weights, so `compiler.sparse` rates it
    against the direct kernel; where Winograd is the dense choice the sparse kernel must beat Winograd instead, or
    pruning would make a layer slower (a 50%-pruned 32->32 conv runs at about 0.55 of direct, F(4x4) at 0.46).
    Winograd kernels compute in float32 only (`eligible`), so any other arithmetic (fp16 builds) compares against
    the direct kernel.
    """
    m = choose_conv_kernel(spec, vec, registers)
    # at most 1: a Winograd tile forced by `winograd_mode` where it costs more than direct leaves the direct bar
    return min(1.0, winograd_cost(spec, m, vec, registers) / direct_cost(spec, vec, registers)) if m else 1.0


def kernel_name(m: int) -> str:
    """How the latency table and the rewrite's report name the kernel of a dense conv."""
    return "direct" if m == 0 else f"winograd{m}"

