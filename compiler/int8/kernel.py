"""The int8 direct conv template (docs/quantization.md's contract), dense and block-sparse, for the four dot forms.

One template, as the fp32 kernels (compiler/kernels.py): bands of output rows in parallel, each task with a private
rolling window of the kh padded input rows (padding holds the input's zero point z_x, so it stays exact), an
`oc_tile x (nvec * vec)` tile of int32 accumulators kept as SSA values (registers) while it reduces over the
weight columns, and the contract's epilogue fused into the write-back; each tile software-prefetches its share of
the input row the next output row copies (compiler.kernels.prefetch_next_row: 13-15% of this host's VNNI conv3x3
32->32 in one-off interleaved checks, the row copy's wait on memory). What is specific to int8:

- the window stores groups of 4 input channels, interleaved per pixel as the form's instruction reads them
  (compiler.int8.isa: 4 for vpdpbusd / sdot, so one load of 4 * vec bytes feeds `vec` int32 lanes of a 4-channel
  dot; pairs for AVX2's vpmaddwd; none for NEON's smlal); the last group repeats a real channel where cin is not a
  multiple of 4 (its weights are zero);
- a weight column is (4-channel group, ky, kx); a tile's code is one straight line of multiply-adds over its
  columns, with the packed weights read at compile-time offsets. Dense: one loop over tiles, every column. Sparse:
  each tile unrolled with only the columns where one of its weights is nonzero (a pruned weight is an exact int8
  zero), so a block of zeros covering 4 input channels x oc_tile output channels at one tap costs nothing;
- the zero-point correction is folded into an int32 bias at compile time: acc = sum (q - shift) w, and
  bias' = b_q - (z_x - shift) * sum w gives exactly sum (q - z_x) w + b_q (shift = 128 for sdot's signed bytes);
- the write-back is the contract in its order: float32(acc + bias') * m[o], the activation (compiler.epilogue's
  vector functions, as in the fp32 kernels), + s_r * float32(q_r - z_r), then either the requantised uint8
  (round half to even: `nearbyint`) or, for the tail, float32 with PixelShuffle interleaved in registers (one
  vector shuffle per s channels, as compiler.kernels.store_shuffled), the global skip (nearest neighbour: the
  uint8 image pixel as float32 / 255) and the clamp to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import tirx

from compiler.epilogue import ACTIVATIONS
from compiler.errors import CompilerError
from compiler.int8.isa import Int8Isa
from compiler.int8.spec import Int8ConvSpec
from compiler.int8.writeback import WriteBack
from compiler.kernels import LINE_BYTES, channel_tiles_inner, prefetch_next_row, row_tasks, tile_loops
from compiler.quant_spec import QConv

SPARSE_MODES = ("auto", "dense", "sparse")
# "auto" goes sparse when the sparse plan keeps at most this fraction of the dense kernel's columns (the unrolled
# tiles cost a little more per column than the dense loop: instruction cache, no loop-carried weight offsets).
SPARSE_THRESHOLD = 0.8
# Most multiply-add instructions a sparse kernel may unroll (its tiles are straight-line code one after another;
# LLVM's time grows faster than linearly with a function's size: compiler/sparse.py's MAX_UNROLLED). Past it
# "auto" stays dense (whose code is one tile's, in a loop) and "sparse" is refused.
MAX_UNROLLED = 20000
# Window rows are padded to a multiple of this many pixels, so that each row of 4-channel pixels (vnni, sdot) starts
# on a 64-byte line and the kx = 0 loads of a tile never straddle two lines (benchmarks/int8_kernels.py: 2-3.5% on
# this host's VNNI kernel in one-off interleaved checks; the kx = 1, 2 loads straddle lines either way).
RING_ALIGN = 16


@dataclass(frozen=True)
class Int8Plan:
    """The register tile and the columns each tile of output channels reads (all of them when dense)."""

    oc_tile: int
    nvec: int
    tiles: tuple[tuple[int, ...], ...]  # kept columns per tile (tile t = channels t*oc_tile ...)
    sparse: bool

    def kept_columns(self) -> int:
        return sum(len(t) for t in self.tiles)


def spec_for(layer: QConv, n: int, h: int, w: int, *, tail_shuffle: int = 1, skip: bool = False,
             clamp: bool = False, res_channels: int = 0, fskip: bool = False) -> Int8ConvSpec:
    """The kernel spec of a QConv at an input size (the tail when layer.output is None)."""
    o, i, kh, kw = layer.weight.shape
    if layer.activation not in ACTIVATIONS:
        raise CompilerError(f"{layer.name or 'conv'}: unknown activation {layer.activation!r}")
    tail = layer.output is None
    if not tail and (tail_shuffle != 1 or skip or fskip):
        raise CompilerError("PixelShuffle and the global skip belong to the tail (the layer with output None)")
    slope = float(np.asarray(layer.act_param).reshape(-1)[0]) if layer.activation == "leaky_relu" else 0.0
    return Int8ConvSpec(n, i, h, w, o, kh, kw, int(layer.padding), layer.activation, slope,
                        layer.residual is not None, tail, tail_shuffle if tail else 1, skip and tail, clamp and tail,
                        res_channels if res_channels != o and layer.residual is not None else 0, fskip and tail)


def choose_tile(spec: Int8ConvSpec, isa: Int8Isa) -> tuple[int, int]:
    """(oc_tile, nvec): accumulators in at most half the registers (a quarter for the widening forms, whose widened
    inputs and weights stay live too: AVX2 spilled over a thousand times per tile row with half), oc_tile a divisor of cout (and a
    multiple of the fused shuffle), up to 4 channels x 4 vectors (the fp32 template's measured tile)."""
    s = spec.shuffle
    budget = max(1, isa.registers // {4: 2, 2: 4, 1: 8}[isa.interleave])
    fits = [d for d in range(s, max(4, s) + 1, s) if spec.cout % d == 0 and d <= budget]
    if not fits:
        raise CompilerError(f"no output-channel tile of {spec.cout} channels is a multiple of the shuffle {s}")
    ot = max(fits)
    ow = spec.out_hw[1]
    nvec = max(1, min(4, budget // ot, -(-ow // isa.vec)))
    return ot, nvec


def _column_weights(weight: np.ndarray) -> np.ndarray:
    """int8 (O, I, kh, kw) -> int64 (O, columns, 4): column (g, ky, kx) holds channels 4g .. 4g + 3 (zeros past I)."""
    o, i, kh, kw = weight.shape
    g = -(-i // 4)
    padded = np.zeros((o, g * 4, kh, kw), np.int64)
    padded[:, :i] = weight
    return padded.reshape(o, g, 4, kh, kw).transpose(0, 1, 3, 4, 2).reshape(o, g * kh * kw, 4)


def make_plan(spec: Int8ConvSpec, weight: np.ndarray, isa: Int8Isa, sparse: str = "auto") -> Int8Plan:
    """Dense or sparse (per SPARSE_MODES) tile plan; sparse tiles keep the columns with a nonzero weight."""
    if sparse not in SPARSE_MODES:
        raise CompilerError(f"sparse must be one of {SPARSE_MODES}, not {sparse!r}")
    ot, nvec = choose_tile(spec, isa)
    cols = _column_weights(weight)
    nz = (cols != 0).any(axis=2)  # (O, columns)
    kept = tuple(tuple(int(c) for c in np.flatnonzero(nz[t:t + ot].any(axis=0))) for t in range(0, spec.cout, ot))
    full = tuple(tuple(range(spec.columns)) for _ in kept)
    frac = sum(len(t) for t in kept) / max(1, len(kept) * spec.columns)
    unrolled = sum(len(t) for t in kept) * ot * nvec * isa.words
    if sparse == "sparse" and unrolled > MAX_UNROLLED:
        raise CompilerError(f"the sparse kernel would unroll {unrolled} multiply-adds (> {MAX_UNROLLED}); use dense")
    use = sparse == "sparse" or (sparse == "auto" and frac <= SPARSE_THRESHOLD and unrolled <= MAX_UNROLLED)
    return Int8Plan(ot, nvec, kept if use else full, use)


def pack_weights(weight: np.ndarray, plan: Int8Plan, isa: Int8Isa) -> np.ndarray:
    """int32 words in execution order: per tile, per kept column, per channel of the tile, `isa.words` words
    (4 int8 in one int32 word for vnni/sdot, 2 int16 pairs in two words for avx2, 4 int16 for neon)."""
    cols = _column_weights(weight)
    ot = plan.oc_tile
    parts = []
    for t, kept in enumerate(plan.tiles):
        block = cols[t * ot:(t + 1) * ot][:, list(kept)]  # (ot, kept, 4)
        parts.append(block.transpose(1, 0, 2).reshape(-1, 4))
    words = np.concatenate(parts) if parts else np.zeros((0, 4), np.int64)
    packed = np.ascontiguousarray(words.astype({4: np.int8, 2: np.int16, 1: np.int16}[isa.interleave]))
    return packed.view(isa.weight_dtype).reshape(-1).copy()


def folded_bias(layer: QConv, isa: Int8Isa) -> np.ndarray:
    """bias' = b_q - (z_x - shift) * sum_w per output channel, so that acc + bias' = sum (q - z_x) w + b_q."""
    sum_w = layer.weight.astype(np.int64).sum(axis=(1, 2, 3))
    b = layer.bias.astype(np.int64) - (int(layer.input.zero_point) - isa.shift) * sum_w
    if b.min(initial=0) < np.iinfo(np.int32).min or b.max(initial=0) > np.iinfo(np.int32).max:
        raise CompilerError(f"{layer.name or 'conv'}: the folded int32 bias overflows")
    return b.astype(np.int32)


@dataclass
class Int8Kernel:
    """One built layer: the PrimFunc and its constant arguments in order (weight, bias, multiplier[, alpha])."""

    func: tirx.PrimFunc
    consts: list[np.ndarray]
    spec: Int8ConvSpec
    plan: Int8Plan
    isa: Int8Isa

    @property
    def arg_names(self) -> list[str]:
        """Argument order: data, weight, bias, mult[, alpha][, residual][, image], out."""
        names = ["data", "weight", "bias", "mult"] + (["alpha"] if self.spec.act == "prelu" else [])
        return names + (["residual"] if self.spec.residual else []) + (["image"] if self.spec.skip else []) + \
            (["skip"] if self.spec.fskip else []) + ["out"]

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return self.spec.out_shape

    @property
    def out_dtype(self) -> str:
        """float32 for a layer whose output is None (the tail, or a tensor only fp32 layers read), else uint8."""
        return "float32" if self.spec.tail else "uint8"


def build_kernel(layer: QConv, n: int, h: int, w: int, isa: Int8Isa, *, sparse: str = "auto",
                 tail_shuffle: int = 1, skip: bool = False, clamp: bool = False, res_channels: int = 0,
                 fskip: bool = False, prefetch: bool = True, channels_inner: bool | None = None) -> Int8Kernel:
    """The int8 kernel of `layer` for an (n, cin, h, w) uint8 input on one dot form (see Int8ConvSpec for the
    tail's options and a residual of another width; `prefetch`: compiler.kernels.prefetch_next_row in every tile;
    `channels_inner`: the dense tiles' order, compiler.kernels.tile_loops; default: channel_tiles_inner's rule)."""
    spec = spec_for(layer, n, h, w, tail_shuffle=tail_shuffle, skip=skip, clamp=clamp, res_channels=res_channels,
                    fskip=fskip)
    if spec.cout % (spec.shuffle ** 2):
        raise CompilerError(f"PixelShuffle({spec.shuffle}) needs output channels divisible by {spec.shuffle ** 2}")
    plan = make_plan(spec, layer.weight, isa, sparse)
    consts = [pack_weights(layer.weight, plan, isa), folded_bias(layer, isa), layer.multiplier()]
    if spec.act == "prelu":
        consts.append(np.asarray(layer.act_param, np.float32).reshape(spec.cout))
    func = _build(spec, plan, isa, layer, [c.shape for c in consts], prefetch, channels_inner)
    return Int8Kernel(func.with_attr("tir.is_scheduled", True), consts, spec, plan, isa)


def ring_columns(spec: Int8ConvSpec, isa: Int8Isa, plan: Int8Plan) -> int:
    """Columns of a ring row: whole row tiles plus kw - 1, rounded up to RING_ALIGN."""
    wt = isa.vec * plan.nvec
    return -(-(-(-spec.out_hw[1] // wt) * wt + spec.kw - 1) // RING_ALIGN) * RING_ALIGN


def default_channels_inner(spec: Int8ConvSpec, isa: Int8Isa, plan: Int8Plan) -> bool:
    """The dense tiles' order (compiler.kernels.channel_tiles_inner) for this ring: groups of 4 uint8 channels x kh
    rows x the ring's columns."""
    return channel_tiles_inner(spec.groups4 * spec.kh * ring_columns(spec, isa, plan) * 4)


def _build(spec: Int8ConvSpec, plan: Int8Plan, isa: Int8Isa, layer: QConv, shapes: list,
           prefetch: bool, channels_inner: bool | None) -> tirx.PrimFunc:
    """The PrimFunc, written with TVM's IR builder (Python loops become straight-line code)."""
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T  # noqa: N812

    n, cin, h, w, kh, pad = spec.n, spec.cin, spec.h, spec.w, spec.kh, spec.pad
    oh, ow = spec.out_hw
    vec, ot, nv = isa.vec, plan.oc_tile, plan.nvec
    wt = vec * nv
    xtiles = -(-ow // wt)
    pw = ring_columns(spec, isa, plan)
    groups = spec.groups4
    zfill = (int(layer.input.zero_point) ^ isa.shift) if isa.shift else int(layer.input.zero_point)
    if channels_inner is None:
        channels_inner = default_channels_inner(spec, isa, plan)
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            T.func_attr({"tir.noalias": True})
            data = T.arg("data", T.buffer((n, cin, h, w), "uint8"))
            weight = T.arg("weight", T.buffer(tuple(shapes[0]), isa.weight_dtype))
            bias = T.arg("bias", T.buffer((spec.cout,), "int32"))
            mult = T.arg("mult", T.buffer((spec.cout,), "float32"))
            alpha = T.arg("alpha", T.buffer((spec.cout,), "float32")) if spec.act == "prelu" else None
            res_shape = (n, spec.res_channels or spec.cout, oh, ow)
            resid = T.arg("residual", T.buffer(res_shape, "uint8")) if spec.residual else None
            image_shape = (n, spec.cout // spec.shuffle ** 2, oh, ow)
            image = T.arg("image", T.buffer(image_shape, "uint8")) if spec.skip else None
            fskip = T.arg("skip", T.buffer((n, spec.cout, oh, ow), "float32")) if spec.fskip else None
            out = T.arg("out", T.buffer(spec.out_shape, "float32" if spec.tail else "uint8"))
            tasks = row_tasks(oh)
            band = -(-oh // tasks)
            with T.parallel(0, n * tasks) as bt:
                b = bt // tasks if n > 1 else tirx.const(0, "int32")
                y0 = (bt % tasks) * band
                ring = T.sblock_alloc_buffer((groups, kh, pw * 4), "uint8")

                def copy_row(row) -> None:
                    _copy_row(T, spec, isa, data, ring, b, row, pw, zfill)

                with T.serial(0, kh - 1) as k:
                    copy_row(y0 - pad + k)
                with T.serial(0, tirx.min(band, oh - y0)) as dy:
                    y = y0 + dy
                    copy_row(y - pad + kh - 1)
                    slots = [T.Bind(tirx.floormod(y - pad + ky, kh)) for ky in range(kh)]
                    ep = WriteBack(spec, layer, out, bias, mult, alpha, resid, image, b, y, fskip)
                    per_tile = ot * isa.words

                    def tile(oc0, cols, base, xo) -> None:
                        if prefetch:
                            prefetch_next_row(T, data, b, y - pad + kh, oc0 // ot, xo * wt, wt,
                                              -(-cin // (spec.cout // ot)), LINE_BYTES)
                        _emit_tile(T, spec, isa, plan, ring, slots, weight, cols, base, per_tile, ep, oc0,
                                   xo * wt, ow % wt == 0, pw)

                    if plan.sparse:
                        base = 0
                        for t, cols in enumerate(plan.tiles):
                            with T.serial(0, xtiles) as xo:
                                tile(t * ot, cols, base, xo)
                            base += len(cols) * per_tile
                    else:
                        tile_loops(T, spec.cout // ot, xtiles, channels_inner,
                                   lambda oco, xo: tile(oco * ot, plan.tiles[0], oco * (spec.columns * per_tile), xo))
    return ib.get()


def _copy_row(T, spec: Int8ConvSpec, isa: Int8Isa, data, ring, b, row, pw: int, zfill: int) -> None:  # noqa: N803
    """Input row `row` (all channels) into its ring slot (channels interleaved as _ring_index says), padding = z_x."""
    cin, h, w, pad, vec = spec.cin, spec.h, spec.w, spec.pad, isa.vec
    slot = tirx.floormod(row, spec.kh)
    zero8 = tirx.const(zfill, "uint8")
    flip = tirx.Broadcast(tirx.const(128, "uint8"), isa.interleave * vec) if isa.shift else None
    with T.serial(0, spec.groups4) as g:
        with T.If(tirx.all(row >= 0, row < h)):
            with T.Then():
                for x in range(pad):
                    for k in range(4):
                        T.buffer_store(ring, zero8, [g, slot, _ring_index(isa, pw, x, k)])
                chans = [tirx.min(g * 4 + k, cin - 1) for k in range(4)]
                m = isa.interleave
                with T.serial(0, w // vec) as xv:
                    rows = [tirx.BufferLoad(data, [b, c, row, tirx.Ramp(xv * vec, 1, vec)]) for c in chans]
                    for part in range(4 // m):
                        order = [j * vec + i for i in range(vec) for j in range(m)]
                        mixed = rows[part] if m == 1 else tirx.Shuffle(rows[part * m:(part + 1) * m], order)
                        if flip is not None:
                            mixed = tirx.bitwise_xor(mixed, flip)
                        T.buffer_store(ring, mixed, [g, slot, tirx.Ramp(_ring_index(isa, pw, xv * vec + pad, part * m),
                                                                        1, m * vec)])
                for x in range(w // vec * vec, w):
                    for k in range(4):
                        v = data[b, chans[k], row, x]
                        T.buffer_store(ring, tirx.bitwise_xor(v, tirx.const(128, "uint8")) if isa.shift else v,
                                       [g, slot, _ring_index(isa, pw, x + pad, k)])
                with T.serial(w + pad, pw) as x:  # the right padding and the columns the last tile reads past it
                    for k in range(4):
                        T.buffer_store(ring, zero8, [g, slot, _ring_index(isa, pw, x, k)])
            with T.Else():
                with T.serial(0, pw * 4) as x:
                    T.buffer_store(ring, zero8, [g, slot, x])


def _ring_index(isa: Int8Isa, pw: int, x, k: int):
    """Where channel 4g + k of padded column x lives in a ring row: (k // m) rows of pw pixels x m channels."""
    m = isa.interleave
    return (k // m) * (pw * m) + x * m + k % m


def _emit_tile(T, spec: Int8ConvSpec, isa: Int8Isa, plan: Int8Plan, ring, slots, weight, cols,  # noqa: N803
               base, per_tile: int, ep: WriteBack, oc0, x0, whole: bool, pw: int) -> None:
    """One oc_tile x (nvec * vec) tile: the straight-line dot products over `cols`, then the write-back."""
    vec, nv, ot = isa.vec, plan.nvec, plan.oc_tile
    kh, kw = spec.kh, spec.kw
    acc: list[list] = [[None] * nv for _ in range(ot)]
    for j, col in enumerate(cols):
        g, rest = divmod(col, kh * kw)
        ky, kx = divmod(rest, kw)
        for xv in range(nv):
            px = x0 + xv * vec + kx
            m = isa.interleave
            loads = [tirx.BufferLoad(ring, [g, slots[ky], tirx.Ramp(_ring_index(isa, pw, px, k), 1, m * vec)])
                     for k in range(0, 4, m)]
            ins = [T.Bind(e) for e in isa.inputs(loads)]
            for oi in range(ot):
                acc[oi][xv] = T.Bind(isa.mac(acc[oi][xv], ins, weight, base + j * per_tile + oi * isa.words))
    zero = tirx.Broadcast(tirx.const(0, "int32"), vec)
    s = spec.shuffle
    for oi0 in range(0, ot, s):
        for xv in range(nv):
            accs = [acc[oi0 + j][xv] if acc[oi0 + j][xv] is not None else zero for j in range(s)]
            ep.write(T, [oc0 + oi0 + j for j in range(s)], accs, x0 + xv * vec, vec, whole)
