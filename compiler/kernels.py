"""Our own CPU conv2d kernels, one template for x86 and aarch64 (the SIMD width is a parameter).

TVM 0.27 has no default CPU schedule for conv2d (untuned builds run naive scalar loops), so every
conv our SR networks use goes through this template instead. Layout: the tensors stay NCHW (no layout
transforms anywhere, so residual adds and PixelShuffle see the framework layout); the kernel vectorises
along the output width (`vec` floats = the SIMD width), keeps an `oc_tile x (nvec * vec)` block of
outputs in registers while it reduces over input channels and taps, and runs bands of rows in parallel
on all cores. Zero padding is never materialised: each task keeps a rolling window of the kh padded
input rows it reads (emit_row_bands, shared with the sparse kernels). Weights are pre-packed at
compile time to [Cout/oc_tile, Cin/groups, KH, KW, oc_tile] so the per-tap weights of one register
tile are contiguous. Bias, activation (compiler.epilogue: ReLU, PReLU, leaky ReLU, tanh, sigmoid, SiLU,
hardswish, GELU) and a residual add are fused into the write-back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import tirx

from compiler.epilogue import ACTIVATIONS, LANEWISE, activation
from compiler.errors import CompilerError


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
    act: str = "none"  # one of compiler.epilogue.ACTIVATIONS
    residual: bool = False
    # The residual has cout / residual_repeat channels and conv channel oc adds residual channel
    # oc // residual_repeat (torch's repeat_interleave over channels: ECBSR's nearest-neighbour skip,
    # read from the input itself instead of a materialised copy).
    residual_repeat: int = 1
    # PixelShuffle(shuffle) fused into the write-back: conv channel c*s*s + i*s + j goes to output
    # channel c, row y*s + i, column x*s + j (the tail conv of an SR network writes the image directly).
    shuffle: int = 1
    slope: float = 0.0  # leaky ReLU's negative slope (a constant in the code)
    # Element types (compiler.half): `compute` = weights, the input window and the multiply-adds ("float16" on
    # the fp16 target); the epilogue (bias, activation, residual add) always runs in float32. The tensors
    # between layers are float16 where both ends are our fp16 kernels, float32 elsewhere (model input/output).
    compute: str = "float32"
    data_dtype: str = "float32"
    residual_dtype: str = "float32"
    out_dtype: str = "float32"
    # Quantised tensors at the kernel's edges (a layer kept in fp32 inside an int8 network, compiler.int8.network):
    # (scale, zero point) of a uint8 input or residual, dequantised where it is read as scale * (q - z) (the input
    # in the row copy into the window, so the multiply-adds stay float32), and of a uint8 output, requantised in
    # the write-back as docs/quantization.md's contract does (round half to even, clamp to [0, 255]).
    data_q: tuple[float, int] | None = None
    residual_q: tuple[float, int] | None = None
    out_q: tuple[float, int] | None = None
    # The residual's channels when it is sliced or zero-padded to cout (a width-changing skip; 0: cout / repeat).
    residual_channels: int = 0
    clamp: bool = False  # the output clamped to [0, 1] (an int8 network's fp32 tail writing the image)

    @property
    def out_hw(self) -> tuple[int, int]:
        """Conv output height and width (stride 1, dilation 1), before any fused PixelShuffle."""
        top, left, bottom, right = self.pad
        return self.h + top + bottom - self.kh + 1, self.w + left + right - self.kw + 1

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        """Shape of the kernel's output tensor (after the fused PixelShuffle, if any)."""
        oh, ow, s = *self.out_hw, self.shuffle
        return self.n, self.cout // (s * s), oh * s, ow * s

    @property
    def residual_shape(self) -> tuple[int, int, int, int]:
        """Shape of the residual argument (conv-output space, channels divided by residual_repeat)."""
        oh, ow = self.out_hw
        return self.n, self.residual_channels or self.cout // self.residual_repeat, oh, ow

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


# Register-tile shapes of choose_schedule, per core family. The tile trades vector loads of the input row (nvec per
# tap; at kx = 1, 2 they straddle two cache lines) against weight broadcasts (oc_tile per tap).
# - "pixels": 4 channels x 4 vectors where the row is wide, within half the register file: the fewest loads in
#   all. Fastest or within 4% of the fastest on AMD Zen 4 (an earlier run of benchmarks/conv_tiles.py); the same
#   rule for AVX2 and NEON (not measured on a phone).
# - "channels": 2 vectors x up to 12 channels (24 of 32 registers): fewer vector loads per multiply-add, more
#   broadcasts. On an Intel AVX-512 core (the Xeon of docs `conv_tiles`, LLVM rocketlake) a zmm load, the more so one
#   that splits a cache line, costs more issue bandwidth than a broadcast: this tile took 5-17% less time than 4 x 4
#   on every benchmark layer there in the last run of docs `conv_tiles` before this rule (2 threads, wall time), and
#   2-10% less on the 32- and 64-channel bodies in 1-thread CPU-time checks under load.
TILE_SHAPES = ("pixels", "channels")


def host_tile_shape(vec: int) -> str:
    """The tile shape for a target with `vec`-float vectors: 16 floats (AVX-512, only ever the x86 host) on an
    Intel core -> "channels"; anything else (AMD, AVX2, NEON, fp16 NEON) -> "pixels"."""
    from compiler.targets import cpu_vendor

    return "channels" if vec == 16 and cpu_vendor() == "GenuineIntel" else "pixels"


def choose_schedule(spec: ConvSpec, vec: int, registers: int = 32, shape: str | None = None) -> Schedule:
    """Pick the register tile for a conv on a machine with `registers` vector registers of `vec` floats.

    `shape` (TILE_SHAPES; default host_tile_shape(vec)) sets the accumulator budget and the vectors per row:
    "pixels" keeps oc_tile * nvec within half the register file, 4 vectors x 4 channels on a wide row with 32
    registers (per tap 4 vector loads + 4 weight broadcasts feed 16 multiply-adds); "channels" takes 2 vectors
    and up to three quarters of the register file (8 x 2 on 32 channels: 2 loads + 8 broadcasts per 16). The
    rest of the registers hold the input vectors and the broadcast weights. oc_tile divides the per-group output
    channels so no output-channel predicate is needed. Measured side by side by benchmarks/conv_tiles.py.
    """
    shape = shape or host_tile_shape(vec)
    if shape not in TILE_SHAPES:
        raise CompilerError(f"unknown tile shape {shape!r}; expected one of {TILE_SHAPES}")
    ow = spec.out_hw[1]
    if shape == "channels":
        nvec = 2 if ow > vec else 1
        budget = max(1, registers * 3 // 4 // nvec)
    else:
        nvec = 4 if registers >= 32 and ow >= 4 * vec else 2 if ow > vec else 1
        budget = max(1, registers // 2 // nvec)
    per_group = spec.cout // spec.groups
    if spec.groups > 1 and per_group == 1:
        nvec = 4 if ow > 3 * vec else nvec  # depthwise: no channel reuse, widen along the row instead
        return Schedule(vec=vec, nvec=nvec, oc_tile=1)
    step = spec.shuffle  # a fused PixelShuffle interleaves the `shuffle` channels of one output row per tile
    fits = [d for d in range(step, max(step, min(per_group, budget)) + 1, step) if per_group % d == 0]
    if not fits:
        raise CompilerError(f"no output-channel tile of {per_group} channels is a multiple of the shuffle {step}")
    return Schedule(vec=vec, nvec=nvec, oc_tile=max(fits))


def pack_weight(weight: np.ndarray, oc_tile: int, dtype: str = "float32") -> np.ndarray:
    """OIHW -> [O/oc_tile, I, H, W, oc_tile] so one tap's weights for a register tile are contiguous."""
    o, i, kh, kw = weight.shape
    if o % oc_tile:
        raise CompilerError(f"output channels {o} are not a multiple of the tile {oc_tile}")
    packed = weight.reshape(o // oc_tile, oc_tile, i, kh, kw).transpose(0, 2, 3, 4, 1)
    return np.ascontiguousarray(packed, dtype=dtype)


LINE_BYTES = 64  # a cache line
LINE_FLOATS = LINE_BYTES // 4  # floats per cache line

# Row tasks per image: the parallel loop runs this many contiguous bands of output rows. A multiple of
# every common thread count (1, 2, 3, 4, 6, 8, 12, 24), so the runtime's static split is balanced
# whatever the target's thread count; a band re-reads kh - 1 rows to fill its window (emit_row_bands).
ROW_TASKS = (24, 12, 8, 6, 4, 2, 1)
MIN_BAND_ROWS = 8
# Most weight columns (input channel x tap) per straight-line chunk of the reduction (see _emit_tile).
# Shorter chunks move partial sums through memory more often; longer code falls out of the instruction
# cache. Measured side by side by benchmarks/conv_chunks.py (docs/benchmarks.md `conv_chunks`).
CHUNK_COLUMNS = 36


def row_tasks(out_rows: int) -> int:
    """Bands of output rows the kernel runs in parallel (each at least MIN_BAND_ROWS rows)."""
    return next(t for t in ROW_TASKS if out_rows // t >= MIN_BAND_ROWS or t == 1)


def ring_width(spec: ConvSpec, w_tile: int) -> int:
    """Columns of a ring row: whole tiles of `w_tile` plus kw - 1, rounded up to whole 64-byte lines of float32.

    Rows that start on a cache line make the kx = 0 loads of a tile whole-line loads (a one-off check on the Intel
    Xeon of docs `conv_tiles`: 6-8% less time for the dense conv3x3 32->32 and 64->64, 1 thread).
    """
    pw = -(-spec.out_hw[1] // w_tile) * w_tile + spec.kw - 1
    return -(-pw // LINE_FLOATS) * LINE_FLOATS


def ring_slot(spec: ConvSpec, y, ky: int):
    """The ring row holding input row y - top + ky (what output row y reads with tap row ky)."""
    return tirx.floormod(y - spec.pad[0] + ky, spec.kh)


def emit_row_bands(T, spec: ConvSpec, data, pw: int, vec: int, emit_row) -> None:  # noqa: N803
    """Bands of output rows in parallel, each with a rolling window of zero-padded input rows.

    Each task owns a private ring of kh padded input rows (all channels, `pw` columns) and runs its
    band top to bottom: before output row y it copies the one input row that enters the window, then
    calls emit_row(ring, slots, b, y), which reads tap row ky of any channel c at ring[c, slots[ky]].
    Shared by the dense and the sparse kernels.
    """
    n, cin, h, w, kh = spec.n, spec.cin, spec.h, spec.w, spec.kh
    top, left = spec.pad[0], spec.pad[1]
    oh = spec.out_hw[0]
    tasks = row_tasks(oh)
    band = -(-oh // tasks)
    ct = spec.compute
    zero = tirx.const(0.0, ct)

    def conv(v, lanes: int = 1):  # the input's element type -> the compute type (fp16's first layer, uint8 codes)
        return load_as(v, spec.data_dtype, spec.data_q, lanes, ct)

    with T.parallel(0, n * tasks) as bt:
        b = bt // tasks if n > 1 else tirx.const(0, "int32")
        y0 = (bt % tasks) * band
        ring = T.sblock_alloc_buffer((cin, kh, pw), ct)  # TVM allocates it inside the task

        def copy_row(row) -> None:
            slot = tirx.floormod(row, kh)
            with T.serial(0, cin) as c:
                with T.If(tirx.all(row >= 0, row < h)):
                    with T.Then():
                        for x in range(left):
                            T.buffer_store(ring, zero, [c, slot, x])
                        with T.serial(0, w // vec) as xv:
                            T.buffer_store(ring, conv(tirx.BufferLoad(data, [b, c, row, tirx.Ramp(xv * vec, 1, vec)]), vec),
                                           [c, slot, tirx.Ramp(xv * vec + left, 1, vec)])
                        for x in range(w // vec * vec, w):
                            T.buffer_store(ring, conv(data[b, c, row, x]), [c, slot, x + left])
                        with T.serial(w + left, pw) as x:
                            T.buffer_store(ring, zero, [c, slot, x])
                    with T.Else():
                        with T.serial(0, pw) as x:
                            T.buffer_store(ring, zero, [c, slot, x])

        with T.serial(0, kh - 1) as k:  # prime the ring with the rows above the band's first
            copy_row(y0 - top + k)
        with T.serial(0, tirx.min(band, oh - y0)) as dy:
            y = y0 + dy
            copy_row(y - top + kh - 1)
            emit_row(ring, [T.Bind(ring_slot(spec, y, ky)) for ky in range(kh)], b, y)


def check_edges(spec: ConvSpec) -> None:
    """CompilerError for quantised edges (uint8 tensors, a sliced residual) the spec cannot describe."""
    for what, dtype, q in (("input", spec.data_dtype, spec.data_q), ("residual", spec.residual_dtype, spec.residual_q),
                           ("output", spec.out_dtype, spec.out_q)):
        if (dtype == "uint8") != (q is not None):
            raise CompilerError(f"a uint8 {what} needs its (scale, zero point), and only a uint8 {what} has one")
    if spec.data_q is not None and spec.compute != "float32":
        raise CompilerError("uint8 input codes dequantise to float32 multiply-adds only")
    if spec.residual_channels and (spec.residual_repeat != 1 or not spec.residual):
        raise CompilerError("a sliced or zero-padded residual is neither repeated nor absent")


def conv2d_primfunc(spec: ConvSpec, sched: Schedule, chunk_columns: int = CHUNK_COLUMNS,
                    prefetch: bool = True, channels_inner: bool | None = None) -> tirx.PrimFunc:
    """The PrimFunc (data, packed weight[, bias][, alpha][, residual], out) for one conv.

    Written with TVM's IR builder rather than TE + schedule primitives, because the zero padding is
    folded into a rolling window: each parallel task runs a band of output rows and keeps the last
    kh padded input rows (all channels) in a private ring buffer, copying one new input row per output
    row. A separate pad pass wrote and re-read a padded copy of the whole input through memory
    (a one-off check: 1.8-2.3 ms of a 22 ms conv3x3 32->32 at 640x360 on one core). `channels_inner`: the order
    of a row's register tiles (tile_loops; default: channel_tiles_inner's rule for this window).
    """
    if spec.act not in ACTIVATIONS:
        raise CompilerError(f"unknown activation {spec.act!r}; expected one of {ACTIVATIONS}")
    if spec.cin % spec.groups or spec.cout % spec.groups:
        raise CompilerError(f"channels {spec.cin}->{spec.cout} do not split into {spec.groups} groups")
    if (spec.cout // spec.groups) % sched.oc_tile:
        raise CompilerError(f"oc_tile {sched.oc_tile} does not divide the {spec.cout // spec.groups} "
                            "output channels per group")
    if spec.cout % spec.residual_repeat or (spec.residual_repeat > 1 and not spec.residual):
        raise CompilerError(f"residual_repeat {spec.residual_repeat} needs a residual whose channels divide {spec.cout}")
    check_edges(spec)
    if spec.shuffle > 1 and (spec.cout % (spec.shuffle ** 2) or sched.oc_tile % spec.shuffle or spec.groups > 1):
        raise CompilerError(f"a fused PixelShuffle({spec.shuffle}) needs an ungrouped conv whose output channels "
                            f"({spec.cout}) and tile ({sched.oc_tile}) are multiples of shuffle^2 and shuffle")
    if channels_inner is None:
        channels_inner = default_channels_inner(spec, sched)
    func = _build_dense(spec, sched, chunk_columns, prefetch, channels_inner)
    # op_pattern 8 = kOpaque: FuseOps must not merge other ops into this hand-scheduled kernel.
    return func.with_attr("tir.is_scheduled", True).with_attr("op_pattern", 8)


def _build_dense(spec: ConvSpec, sched: Schedule, chunk_columns: int, prefetch: bool,
                 channels_inner: bool) -> tirx.PrimFunc:
    """The kernel body: bands of rows in parallel, a rolling padded window, register-tiled tiles.

    Per output row: copy the newest input row into the ring, then for each output-channel tile and
    each tile of `w_tile` pixels, accumulate oc_tile x nvec vectors over (input channel, ky, kx) as
    register values (see _emit_tile), then write them back with bias, activation and residual fused. Weights are read in the packed layout of
    `pack_weight`, so one tap's oc_tile weights are contiguous.
    """
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T  # noqa: N812

    n, cin, h, w, cout, kh, kw = spec.n, spec.cin, spec.h, spec.w, spec.cout, spec.kh, spec.kw
    ow = spec.out_hw[1]
    ot, vec, wt = sched.oc_tile, sched.vec, sched.w_tile
    cin_g = cin // spec.groups
    xtiles = -(-ow // wt)
    pw = ring_width(spec, wt)  # padded window width: whole tiles, zeros past the input
    f32, ct = "float32", spec.compute
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            T.func_attr({"tir.noalias": True})
            data = T.arg("data", T.buffer((n, cin, h, w), spec.data_dtype))
            weight = T.arg("weight", T.buffer((cout // ot, cin_g, kh, kw, ot), ct))
            bias = T.arg("bias", T.buffer((cout,), f32)) if spec.bias else None
            alpha = T.arg("alpha", T.buffer((cout,), f32)) if spec.act == "prelu" else None
            resid = T.arg("residual", T.buffer(spec.residual_shape, spec.residual_dtype)) if spec.residual else None
            out = T.arg("out", T.buffer(spec.out_shape, spec.out_dtype))
            chunk = _reduction_chunk(spec, chunk_columns)
            # partial sums between channel chunks (none when one chunk covers every input channel)
            acc = T.sblock_alloc_buffer((ot, wt), ct, scope="local") if chunk < cin_g else None

            def tile(ring, slots, b, y, oco, xo) -> None:
                if prefetch:
                    prefetch_next_row(T, data, b, y - spec.pad[0] + kh, oco, xo * wt, wt, -(-cin // (cout // ot)),
                                      LINE_FLOATS)
                _emit_tile(T, spec, sched, ring, slots, acc, chunk, weight, bias, alpha, resid, out, b, y, oco, xo)

            def tiles(ring, slots, b, y) -> None:
                tile_loops(T, cout // ot, xtiles, channels_inner, lambda oco, xo: tile(ring, slots, b, y, oco, xo))

            emit_row_bands(T, spec, data, pw, vec, tiles)
    return ib.get()


# Input windows (ring buffers) above this size run a row's channel tiles inner (channel_tiles_inner). Measured on
# AMD Zen 3 only (512 KB L2 per core): the crossover lies between windows of 62 KB and 123 KB.
INNER_WINDOW_BYTES = 96 * 1024


def channel_tiles_inner(ring_bytes: int) -> bool:
    """The tile order of tile_loops for an input window (ring) of `ring_bytes`: channel tiles inner where it is large.

    Channel tiles outer sweep the whole window once per channel tile (32 fp32 channels x 3 rows of 640 columns:
    250 KB, from L2 or beyond each time) but write only oc_tile output rows at a time. Column tiles outer read one
    tile's columns of the window (32 channels x 3 rows x about two cache lines: 9 KB) from L1 for every channel
    tile, but write all cout output rows per column tile. Measured side by side (Zen 3, conv3x3 at 640x360,
    benchmarks/conv_tiles.py and int8_kernels.py, docs `conv_tiles_avx2`; a one-off sweep of widths): channel tiles
    inner took 0.83-0.90 of outer's time on 184-500 KB windows (fp32 24-64 channels), 0.92-1.00 on 123 KB (fp32 16,
    int8 64), 0.86-1.01 on 92 KB (fp32 12, int8 48), but 1.04-1.19 on 62 KB (fp32 8, int8 32) and 1.2-1.4 on the
    24 KB window of a 3-channel head.
    """
    return ring_bytes > INNER_WINDOW_BYTES


def default_channels_inner(spec: ConvSpec, sched: Schedule) -> bool:
    """The tile order of this conv's window (cin x kh rows x ring_width columns of the compute type)."""
    return channel_tiles_inner(spec.cin * spec.kh * ring_width(spec, sched.w_tile) * np.dtype(spec.compute).itemsize)


def tile_loops(T, channel_tiles: int, column_tiles, channels_inner: bool, emit) -> None:  # noqa: N803
    """The register tiles of one output row: emit(oco, xo) for every output-channel tile and column tile, with the
    channel tiles inner (column tiles outer) or outer (see channel_tiles_inner for which pays where)."""
    if channels_inner:
        with T.serial(0, column_tiles) as xo:
            with T.serial(0, channel_tiles) as oco:
                emit(oco, xo)
    else:
        with T.serial(0, channel_tiles) as oco:
            with T.serial(0, column_tiles) as xo:
                emit(oco, xo)


def prefetch_next_row(T, data, b, row, oco, x0, wt: int, per: int, line: int) -> None:  # noqa: N803
    """Software-prefetch this tile's share of input row `row` (NCHW `data`), the row that enters the window at the
    next output row: channels oco * per .. + per - 1, columns x0 .. x0 + wt - 1, one prefetch per `line` elements
    (a 64-byte cache line).

    The row copy at the start of each output row otherwise waits on memory for cin rows at once (the
    hardware prefetcher sees only a few lines of each short channel row before it ends); spread over the
    row's tiles (each tile prefetches its columns of cin / (cout / oc_tile) channels) the loads overlap with
    the multiply-adds. Measured against no prefetch by benchmarks/conv_tiles.py (docs `conv_tiles`; the int8
    kernels: benchmarks/int8_kernels.py); in one-off checks, prefetching two rows ahead, or the output rows for
    writing, did not help.
    """
    _, cin, h, w = data.shape
    with T.If(row < h):
        with T.Then():
            for cl in range(per):
                c = oco * per + cl
                for off in range(0, wt, line):
                    x = tirx.min(x0 + off, w - 1)
                    addr = tirx.call_intrin("handle", "tirx.address_of",
                                            tirx.BufferLoad(data, [b, tirx.min(c, cin - 1), row, x]))
                    T.evaluate(tirx.call_intrin("void", "tirx.prefetch", addr, 0, 3, 1))


def _reduction_chunk(spec: ConvSpec, chunk_columns: int) -> int:
    """Input channels per straight-line chunk: the most that divide the group and fit `chunk_columns`."""
    cin_g = spec.cin // spec.groups
    return max(d for d in range(1, cin_g + 1) if cin_g % d == 0 and (d == 1 or d * spec.kh * spec.kw <= chunk_columns))


def _emit_tile(T, spec: ConvSpec, sched: Schedule, ring, slots, acc, chunk: int, weight, bias, alpha, resid, out,  # noqa: N803
               b, y, oco, xo) -> None:
    """One oc_tile x w_tile register tile of output row y: accumulate, then the fused write-back."""
    kh, kw = spec.kh, spec.kw
    ow = spec.out_hw[1]
    ot, vec, nv, wt = sched.oc_tile, sched.vec, sched.nvec, sched.w_tile
    cin_g, cout_g = spec.cin // spec.groups, spec.cout // spec.groups
    ct = spec.compute
    x0 = xo * wt
    group_in = (oco * ot // cout_g) * cin_g  # first input channel of this tile's group

    def accumulate(a: list, ic0) -> list:
        """Straight-line multiply-adds of input channels ic0 .. ic0 + chunk - 1 onto SSA accumulators."""
        for icl in range(chunk):
            ic = ic0 + icl
            for ky in range(kh):
                for kx in range(kw):
                    inp = [T.Bind(tirx.BufferLoad(ring, [group_in + ic, slots[ky], tirx.Ramp(x0 + xv * vec + kx, 1, vec)]))
                           for xv in range(nv)]
                    for oi in range(ot):
                        wv = tirx.Broadcast(tirx.BufferLoad(weight, [oco, ic, ky, kx, oi]), vec)
                        for xv in range(nv):
                            prod = wv * inp[xv]
                            a[oi][xv] = T.Bind(prod if a[oi][xv] is None else a[oi][xv] + prod)
        return a

    # The accumulators are SSA values within a chunk of input channels, so LLVM keeps them in registers
    # (TVM places any buffer of a parallel task in heap workspace, and LLVM does not keep such a buffer
    # in registers across a loop). With several chunks they pass through `acc` between chunks: one load
    # and one store per accumulator per chunk of up to CHUNK_COLUMNS x oc_tile x nvec multiply-adds.
    if chunk == cin_g:
        final = accumulate([[None] * nv for _ in range(ot)], 0)
    else:
        final = None
        with T.serial(0, cin_g // chunk) as icc:
            with T.If(icc == 0):
                with T.Then():
                    for oi in range(ot):
                        for xv in range(nv):
                            T.buffer_store(acc, tirx.Broadcast(tirx.const(0.0, ct), vec),
                                           [oi, tirx.Ramp(xv * vec, 1, vec)])
            loaded = [[T.Bind(tirx.BufferLoad(acc, [oi, tirx.Ramp(xv * vec, 1, vec)])) for xv in range(nv)]
                      for oi in range(ot)]
            summed = accumulate(loaded, icc * chunk)
            for oi in range(ot):
                for xv in range(nv):
                    T.buffer_store(acc, summed[oi][xv], [oi, tirx.Ramp(xv * vec, 1, vec)])
    def result(oi: int, xv: int):
        v = final[oi][xv] if final is not None else tirx.BufferLoad(acc, [oi, tirx.Ramp(xv * vec, 1, vec)])
        return to_f32(v, vec, spec.compute)

    backs = []
    for oi in range(ot):
        oc = oco * ot + oi
        backs.append(WriteBack(spec, out, resid, b, y, oc, None if bias is None else tirx.BufferLoad(bias, [oc]),
                               None if alpha is None else tirx.BufferLoad(alpha, [oc])))
    s = spec.shuffle
    for oi0 in range(0, ot, s):  # s = 1: each channel on its own; else the s channels of one output row
        for xv in range(nv):
            x = x0 + xv * vec
            if s == 1:
                backs[oi0].store_vector(T, result(oi0, xv), x, vec, whole=ow % wt == 0)
            else:
                store_shuffled(T, backs[oi0:oi0 + s], [result(oi0 + j, xv) for j in range(s)], x, vec,
                               whole=ow % wt == 0)


def to_f32(v, lanes: int, dtype: str):
    """`v` (element type `dtype`) as float32, for the epilogue (which is written for float32 only)."""
    return v if dtype == "float32" else tirx.Cast("float32" if lanes == 1 else f"float32x{lanes}", v)


def splat(value: float | int, dtype: str, lanes: int):
    """The constant `value` of `dtype`, broadcast to `lanes` (a scalar for 1): the one home of kernel constants."""
    e = tirx.const(value, dtype)
    return tirx.Broadcast(e, lanes) if lanes > 1 else e


def load_as(v, dtype: str, quant: tuple[float, int] | None, lanes: int, to: str = "float32"):
    """A loaded element or vector of type `dtype` as `to`; with `quant` = (scale, zero point) uint8 codes are
    dequantised, scale * float32(q - z) exactly as docs/quantization.md computes it (q - z is exact in float32)."""
    if quant is None:
        return v if dtype == to else tirx.Cast(to if lanes == 1 else f"{to}x{lanes}", v)
    if to != "float32":
        raise CompilerError(f"uint8 codes dequantise to float32, not {to}")
    scale, zero = quant
    f = tirx.Cast("float32" if lanes == 1 else f"float32x{lanes}", v) - splat(float(zero), "float32", lanes)
    return f * splat(float(np.float32(scale)), "float32", lanes)


def requantize(v, scale: float, zero: int, lanes: int):
    """float32 values as uint8 codes (still float32): round half to even of v * float32(1 / s), + z, clamped to
    [0, 255] (docs/quantization.md's step 5, shared by the int8 kernels and fp32 layers writing codes)."""
    q = tirx.nearbyint(v * splat(float(np.float32(1.0 / scale)), "float32", lanes)) + splat(float(zero), "float32",
                                                                                           lanes)
    return tirx.min(tirx.max(q, splat(0.0, "float32", lanes)), splat(255.0, "float32", lanes))


def finish(spec: ConvSpec, v, lanes: int):
    """A float32 epilogue result as the output stores it: clamped to [0, 1] for an image (`spec.clamp`), requantised
    to uint8 codes (`spec.out_q`: round half to even of v / s, + z, clamped to [0, 255]) or cast to out_dtype."""
    if spec.clamp:
        v = tirx.min(tirx.max(v, splat(0.0, "float32", lanes)), splat(1.0, "float32", lanes))
    if spec.out_q is not None:
        v = requantize(v, *spec.out_q, lanes)
    dtype = spec.out_dtype
    return v if dtype == "float32" else tirx.Cast(dtype if lanes == 1 else f"{dtype}x{lanes}", v)


@dataclass
class WriteBack:
    """The fused write-back of output channel `oc` of row y: + bias, activation, + residual, store.

    `bias` / `alpha` are scalar expressions: a load from the kernel's argument (dense kernels, shared
    between layers) or a constant baked into the code (sparse kernels); None when the conv has none.
    """

    spec: ConvSpec
    out: object
    resid: object
    b: object
    y: object
    oc: object
    bias: object = None
    alpha: object = None

    def store(self, T, v, x, lanes: int, activated: bool = False) -> None:  # noqa: N803
        """out[b, oc, y, x : x + lanes] = epilogue(v)."""
        idx = tirx.Ramp(x, 1, lanes) if lanes > 1 else x
        T.buffer_store(self.out, finish(self.spec, self.epilogue(v, x, lanes, activated), lanes),
                       [self.b, self.oc, self.y, idx])

    def epilogue(self, v, x, lanes: int, activated: bool = False):
        """epilogue(v) of `lanes` conv outputs at column x: + bias, activation (compiler.epilogue), + residual
        (`activated`: v is already `activate(v)`)."""
        idx = tirx.Ramp(x, 1, lanes) if lanes > 1 else x
        v = v if activated else self.activate(v, lanes)
        if self.resid is not None:
            spec = self.spec
            repeat, rc = spec.residual_repeat, spec.residual_channels
            channel = self.oc if repeat == 1 else tirx.floordiv(self.oc, repeat)
            padded = 0 < rc < spec.cout // repeat  # channels >= rc add the zero padding
            if padded:
                channel = tirx.min(channel, rc - 1)
            r = load_as(tirx.BufferLoad(self.resid, [self.b, channel, self.y, idx]), spec.residual_dtype,
                        spec.residual_q, lanes)
            if padded:
                keep = tirx.Select(self.oc < rc, tirx.const(1.0, "float32"), tirx.const(0.0, "float32"))
                r = r * (tirx.Broadcast(keep, lanes) if lanes > 1 else keep)
            v = v + r
        return v

    def activate(self, v, lanes: int):
        """v + bias, then the activation."""
        if self.bias is not None:
            v = v + (tirx.Broadcast(self.bias, lanes) if lanes > 1 else self.bias)
        return activation(self.spec.act, v, lanes, self.alpha, self.spec.slope)

    def store_vector(self, T, v, x, vec: int, whole: bool) -> None:  # noqa: N803
        """Store one vector of outputs at column x; unless `whole` (row tiles divide the row), the last
        tile overhangs the row: a whole vector where it fits, else lane by lane up to the row's end (an activation
        beyond ReLU/PReLU then runs once on the vector: per lane it multiplied the tail's code and LLVM's time)."""
        if whole:
            self.store(T, v, x, vec)
            return
        ow = self.spec.out_hw[1]
        with T.If(x + vec <= ow):
            with T.Then():
                self.store(T, v, x, vec)
            with T.Else():
                vector = self.spec.act not in LANEWISE
                if vector:
                    v = T.Bind(self.activate(v, vec))
                for lane in range(vec):
                    with T.If(x + lane < ow):
                        with T.Then():
                            self.store(T, tirx.Shuffle([v], [lane]), x + lane, 1, activated=vector)


def store_shuffled(T, backs: list[WriteBack], vs: list, x, vec: int, whole: bool) -> None:  # noqa: N803
    """The fused PixelShuffle write-back of one output row: `backs` / `vs` are conv channels c*s*s + i*s + j
    for j = 0..s-1 (s = spec.shuffle) at columns x .. x + vec - 1.

    Their epilogues are interleaved lane by lane (one vector shuffle) into s * vec contiguous outputs of
    image row y*s + i from column x*s: a plain vector store instead of a strided scatter. Past the row's
    end (`whole` False) the stores go lane by lane, as in WriteBack.store_vector.
    """
    first = backs[0]
    s = first.spec.shuffle
    ow = first.spec.out_hw[1]
    values = [wb.epilogue(v, x, vec) for wb, v in zip(backs, vs)]
    mixed = finish(first.spec, tirx.Shuffle(values, [(m % s) * vec + m // s for m in range(s * vec)]), s * vec)
    channel, row = tirx.floordiv(first.oc, s * s), first.y * s + tirx.floormod(tirx.floordiv(first.oc, s), s)

    def store_all() -> None:
        T.buffer_store(first.out, mixed, [first.b, channel, row, tirx.Ramp(x * s, 1, s * vec)])

    if whole:
        store_all()
        return
    with T.If(x + vec <= ow):
        with T.Then():
            store_all()
        with T.Else():
            lanes = T.Bind(mixed)
            for m in range(s * vec):
                with T.If(x + m // s < ow):
                    with T.Then():
                        T.buffer_store(first.out, tirx.Shuffle([lanes], [m]), [first.b, channel, row, x * s + m])
