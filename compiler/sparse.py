"""Sparse conv kernels that bake the zero pattern of constant weights into straight-line code.

Why: block- and pattern-pruned weights keep the dense shape with exact zeros, so the dense kernel
would multiply by zero. Here the structure is read from the weights themselves (the compiler never
imports srprune): the (out x in*kh*kw) weight matrix is cut into register tiles of `oc_tile` output
channels; each tile keeps the union of its rows' nonzero columns (column c = (i*kh + y)*kw + x), and
its code is one unrolled block of multiply-adds per kept column, with the input channel and tap as
constants in the addresses. Rows of a tile share one column list, so block pruning with `rows` a
multiple of `oc_tile` is exact; rows may be grouped in any order (the write-back names each output
channel as a constant), which lets pattern-pruned layers put channels with similar kernels together.
Nothing is looked up at run time: the weights are a constant array packed in execution order and read
at compile-time offsets; bias and PReLU slopes are immediates.

The schedule mirrors compiler.kernels: bands of rows in parallel, each task with a private rolling
window of zero-padded input rows (compiler.kernels.emit_row_bands), vectorised along the width, an oc_tile x (nvec * vec)
accumulator tile in registers, and bias, activation and a residual add fused into the write-back
(compiler.kernels.WriteBack, the same epilogue as the dense kernel's: compiler.epilogue).
Specific to straight-line code: a tile's columns run in chunks, each chunk looping along the row while
its code is hot in the instruction cache; the code size is capped (MAX_UNROLLED) because LLVM's time
grows faster than linearly with it; and the weights are not marked no-alias, so LLVM does not hoist
every weight load out of the row loop (spills).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import tirx

from compiler.errors import CompilerError
from compiler.epilogue import ACTIVATIONS
from compiler.kernels import ConvSpec, WriteBack, check_edges, emit_row_bands, ring_width, to_f32

SPARSE_MODES = ("auto", "dense", "sparse")

# A conv goes sparse ("auto") when the modelled cost of its best sparse plan is below this fraction of
# the dense kernel's (the model counts multiply-adds and loads per kept column; see `tile_cost`).
# Measured on the 2-core AVX-512 host (conv3x3 32->32, 640x360): the sparse kernel costs about 1.3x
# the dense one per executed multiply-add (0.66 of dense time at 50% kept), so it breaks even near 75%
# kept; 0.7 leaves a margin.
DEFAULT_THRESHOLD = 0.7

# Most vector multiply-adds one kernel may unroll (kept columns x oc_tile x nvec). The code of a
# kernel is one function and LLVM's time grows faster than linearly with it: ~18k took 15-25 s on
# the 2-core host, ~37k over 4 minutes. Plans above the cap use fewer accumulators or stay dense.
MAX_UNROLLED = 20000


@dataclass(frozen=True)
class Tile:
    """One register tile: which output channels it computes and which weight columns it reads."""

    rows: tuple[int, ...]
    cols: tuple[int, ...]


@dataclass(frozen=True)
class SparsePlan:
    """Everything the generated code depends on besides the ConvSpec (hashable: a kernel cache key)."""

    vec: int
    nvec: int
    oc_tile: int
    tiles: tuple[Tile, ...]
    chunk: int = 16

    @property
    def w_tile(self) -> int:
        """Output pixels along a row kept in registers per output channel."""
        return self.vec * self.nvec

    def packed_size(self) -> int:
        """Length of the packed weight array (explicit zeros inside a tile's columns included)."""
        return sum(len(t.cols) * len(t.rows) for t in self.tiles)

    def kept_columns(self) -> int:
        """Sum over tiles of the kept columns (the unrolled column steps per row of tiles)."""
        return sum(len(t.cols) for t in self.tiles)

    def unrolled(self) -> int:
        """Vector multiply-adds in the generated code (its size)."""
        return self.kept_columns() * self.oc_tile * self.nvec


def weight_matrix(weight: np.ndarray) -> np.ndarray:
    """(out, in, kh, kw) -> (out, in*kh*kw): the GEMM view whose column c = (i*kh + y)*kw + x."""
    w = np.asarray(weight)
    if w.ndim != 4:
        raise CompilerError(f"expected a conv weight (out, in, kh, kw), got shape {w.shape}")
    return w.reshape(w.shape[0], -1)


def kept_fraction(weight: np.ndarray) -> float:
    """Fraction of nonzero weights (1.0 = dense)."""
    w = np.asarray(weight)
    return float(np.count_nonzero(w)) / max(1, w.size)


def _group_rows(nz: np.ndarray, oc_tile: int) -> list[tuple[int, ...]]:
    """Greedy grouping of rows into tiles of `oc_tile` with small unions of nonzero columns.

    Seeds each tile with the lowest-index free row and adds the free rows that grow the union least
    (ties: lowest index), so rows with identical column sets (one pruning block) stay together and,
    for block-pruned weights, the natural contiguous order is recovered.
    """
    free = list(range(nz.shape[0]))
    groups = []
    while free:
        seed = free.pop(0)
        union = nz[seed].copy()
        group = [seed]
        while len(group) < oc_tile:
            grow = [int(np.count_nonzero(nz[r] & ~union)) for r in free]
            best = int(np.argmin(grow))
            r = free.pop(best)
            group.append(r)
            union |= nz[r]
        groups.append(tuple(group))
    return groups


def make_tiles(weight: np.ndarray, oc_tile: int, reorder: bool = True) -> tuple[Tile, ...]:
    """Tiles of `oc_tile` output channels with their union of nonzero columns (best of contiguous/greedy)."""
    nz = weight_matrix(weight) != 0
    out = nz.shape[0]
    if oc_tile < 1 or out % oc_tile:
        raise CompilerError(f"output channels {out} are not a multiple of the tile {oc_tile}")
    candidates = [[tuple(range(s, s + oc_tile)) for s in range(0, out, oc_tile)]]
    if reorder and oc_tile > 1:
        candidates.append(_group_rows(nz, oc_tile))

    def build(groups: list[tuple[int, ...]]) -> tuple[Tile, ...]:
        return tuple(Tile(g, tuple(int(c) for c in np.flatnonzero(nz[list(g)].any(axis=0)))) for g in groups)

    plans = [build(g) for g in candidates]
    return min(plans, key=lambda tiles: sum(len(t.cols) for t in tiles))


def tile_cost(oc_tile: int, nvec: int, loads_per_fma: float = 0.5) -> float:
    """Modelled cost of one kept column of one tile per output vector: multiply-adds plus weighted loads.

    Per column the tile does oc_tile * nvec vector multiply-adds and nvec input loads + oc_tile
    weight broadcasts; normalised per output vector (divided by nvec).
    """
    return (oc_tile * nvec + loads_per_fma * (nvec + oc_tile)) / nvec


def _row_waste(ow: int, w_tile: int) -> float:
    """Computed / needed outputs along a row (tiles cover whole multiples of w_tile)."""
    return (-(-ow // w_tile) * w_tile) / ow


def plan_cost(spec: ConvSpec, plan: SparsePlan) -> float:
    """Modelled cost of a sparse plan per output row (in vector multiply-add units)."""
    ow = spec.out_hw[1]
    per_col = tile_cost(plan.oc_tile, plan.nvec)
    return plan.kept_columns() * per_col * (ow / plan.vec) * _row_waste(ow, plan.w_tile)


def dense_cost(spec: ConvSpec, vec: int, nvec: int, oc_tile: int) -> float:
    """The same model for the dense kernel (every column of every tile)."""
    ow = spec.out_hw[1]
    cols = spec.cin // spec.groups * spec.kh * spec.kw
    return (spec.cout // oc_tile) * cols * tile_cost(oc_tile, nvec) * (ow / vec) * _row_waste(ow, vec * nvec)


def plan_sparse(spec: ConvSpec, weight: np.ndarray, vec: int, registers: int = 32,
                oc_tiles: tuple[int, ...] | None = None, max_unrolled: int = MAX_UNROLLED) -> SparsePlan:
    """The cheapest sparse plan (oc_tile, nvec, row grouping) for this weight under the cost model.

    Accumulators (oc_tile * nvec vectors) use at most half the register file, as in the dense kernel;
    plans whose code exceeds `max_unrolled` multiply-adds are not considered.
    """
    if spec.groups != 1:
        raise CompilerError("sparse kernels support ungrouped convs only")
    check_edges(spec)
    budget = max(1, registers // 2)
    ow = spec.out_hw[1]
    choices = oc_tiles or tuple(d for d in range(1, min(spec.cout, budget) + 1) if spec.cout % d == 0)
    best: tuple[float, SparsePlan] | None = None
    for ot in choices:
        if spec.cout % ot:
            raise CompilerError(f"oc_tile {ot} does not divide the {spec.cout} output channels")
        tiles = make_tiles(weight, ot)
        for nvec in (1, 2, 4, 8):
            if ot * nvec > budget or (nvec > 1 and vec * nvec > 2 * ow):
                continue
            plan = SparsePlan(vec, nvec, ot, tiles)
            if plan.unrolled() > max_unrolled:
                continue
            cost = plan_cost(spec, plan)
            if best is None or cost < best[0]:
                best = (cost, plan)
    if best is None:
        raise CompilerError(f"no sparse plan fits {registers} registers and {max_unrolled} unrolled multiply-adds")
    return best[1]


def _build(spec: ConvSpec, plan: SparsePlan, bias: np.ndarray | None, alpha: np.ndarray | None) -> tirx.PrimFunc:
    """Build the kernel with TVM's IR builder: Python loops here become straight-line code there.

    Accumulators are SSA values (one Bind per multiply-add), never memory, so LLVM keeps them in
    registers without alias analysis. (Accumulators in a local buffer were placed in heap workspace by
    TVM, and every multiply-add went through memory.)
    """
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T  # noqa: N812

    n, cin, h, w, cout = spec.n, spec.cin, spec.h, spec.w, spec.cout
    oh, ow = spec.out_hw
    ot, vec, wt = plan.oc_tile, plan.vec, plan.w_tile
    pw = ring_width(spec, wt)
    with IRBuilder() as ib:
        with T.prim_func(private=True, s_tir=True):
            data = T.arg("data", T.buffer((n, cin, h, w), spec.data_dtype))
            weight = T.arg("weight", T.buffer((max(1, plan.packed_size()),), spec.compute))
            resid = T.arg("residual", T.buffer(spec.residual_shape, spec.residual_dtype)) if spec.residual else None
            out = T.arg("out", T.buffer((n, cout, oh, ow), spec.out_dtype))
            # No "tir.noalias" on purpose: the output stores may then alias the weights, so LLVM keeps
            # each weight load inside the row loop instead of hoisting hundreds of them (spills).
            offsets = np.cumsum([0] + [len(t.cols) * ot for t in plan.tiles]).tolist()

            def row(ring, slots, b, y) -> None:  # every tile of a row in turn, so the rows they share stay in cache
                for t, tile in enumerate(plan.tiles):
                    _TileCtx(spec, plan, ring, slots, weight, out, resid, b, y, bias, alpha).emit(T, tile, offsets[t])

            emit_row_bands(T, spec, data, pw, vec, row)
    return ib.get()


@dataclass
class _TileCtx:
    """Emits one register tile: a loop over row tiles, straight-line columns, fused write-back."""

    spec: ConvSpec
    plan: SparsePlan
    ring: object  # the task's rolling window of padded input rows (cin x kh x padded width)
    slots: list  # ring row of each tap row ky for this output row
    weight: object
    out: object
    resid: object
    b: object
    y: object
    bias: np.ndarray | None
    alpha: np.ndarray | None

    def emit(self, T, tile: Tile, off: int) -> None:  # noqa: N803
        """The tile's code for one output row; `off` is where its packed weights start.

        The tile's columns run in chunks of `plan.chunk` columns: for each chunk, a loop over the row's
        register tiles loads the partial sums, adds the chunk's straight-line multiply-adds and stores
        them (the last chunk applies the epilogue instead). A chunk's code is then reused along the
        whole row while it is hot in the instruction cache. Measured (32->32 at 640x360, 50% 4x8
        blocks): one straight-line run over all columns took ~1.25x the dense kernel's time, chunks of
        16 columns ~0.66x; chunks also cut LLVM's compile time about 3x.
        """
        spec, plan = self.spec, self.plan
        ot, vec, nv, wt = plan.oc_tile, plan.vec, plan.nvec, plan.w_tile
        ow = spec.out_hw[1]
        xtiles = -(-ow // wt)
        ksz = spec.kh * spec.kw
        zero = tirx.const(0.0, spec.compute)
        b, y = self.b, self.y
        cols = list(tile.cols)
        chunks = [cols[k:k + plan.chunk] for k in range(0, len(cols), plan.chunk)] or [[]]
        part = T.sblock_alloc_buffer((ot, xtiles * wt), spec.compute) if len(chunks) > 1 else None
        for ci, chunk in enumerate(chunks):
            first, last = ci == 0, ci == len(chunks) - 1
            with T.serial(0, xtiles) as xo:
                x0 = xo * wt
                acc: list[list] = [[None if first else T.Bind(tirx.BufferLoad(part, [oi, tirx.Ramp(x0 + xv * vec, 1, vec)]))
                                    for xv in range(nv)] for oi in range(ot)]
                for c in chunk:
                    i, r = divmod(c, ksz)
                    ky, kx = divmod(r, spec.kw)
                    inp = [T.Bind(tirx.BufferLoad(self.ring, [i, self.slots[ky], tirx.Ramp(x0 + xv * vec + kx, 1, vec)]))
                           for xv in range(nv)]
                    for oi in range(ot):
                        wv = tirx.Broadcast(tirx.BufferLoad(self.weight, [off + oi]), vec)
                        for xv in range(nv):
                            prod = wv * inp[xv]
                            acc[oi][xv] = T.Bind(prod if acc[oi][xv] is None else acc[oi][xv] + prod)
                    off += ot
                if not last:
                    for oi in range(ot):
                        for xv in range(nv):
                            T.buffer_store(part, acc[oi][xv], [oi, tirx.Ramp(x0 + xv * vec, 1, vec)])
                    continue
                # write-back: a tile's rows are arbitrary output channels, each a constant
                for oi, oc in enumerate(tile.rows):
                    wb = WriteBack(spec, self.out, self.resid, b, y, oc,
                                   None if self.bias is None else tirx.const(float(self.bias[oc]), "float32"),
                                   None if self.alpha is None else tirx.const(float(self.alpha[oc]), "float32"))
                    for xv in range(nv):
                        a = acc[oi][xv] if acc[oi][xv] is not None else tirx.Broadcast(zero, vec)
                        wb.store_vector(T, to_f32(a, vec, spec.compute), x0 + xv * vec, vec, whole=ow % wt == 0)


def choose_kernel(spec: ConvSpec, weight: np.ndarray, vec: int, registers: int = 32, mode: str = "auto",
                  threshold: float = DEFAULT_THRESHOLD, dense_relative: float = 1.0) -> SparsePlan | None:
    """The sparse plan to use for this conv, or None for the dense kernel.

    mode "dense": never sparse; "sparse": always (ungrouped convs); "auto": sparse when the modelled
    cost of the best plan is below `threshold` times the dense kernel's. `dense_relative` is the dense kernel
    the compiler would use instead, relative to the direct kernel (compiler.winograd.dense_relative_cost: below 1
    where Winograd is chosen), so a sparse kernel is only taken where it beats that kernel.
    """
    from compiler.kernels import choose_schedule

    if mode not in SPARSE_MODES:
        raise CompilerError(f"unknown sparse mode {mode!r}; expected one of {SPARSE_MODES}")
    if not 0.0 < threshold <= 1.0:
        raise CompilerError(f"sparse threshold must be in (0, 1], got {threshold!r}")
    if not 0.0 < dense_relative <= 1.0:
        raise CompilerError(f"dense_relative must be in (0, 1], got {dense_relative!r}")
    if mode == "dense" or spec.groups != 1:
        return None
    threshold = threshold * dense_relative if mode == "auto" else threshold
    if mode == "auto" and kept_fraction(weight) >= threshold:
        return None  # no plan can beat the threshold: skip the (quadratic) row grouping
    try:
        plan = plan_sparse(spec, weight, vec, registers)
    except CompilerError:
        if mode == "sparse":
            raise
        return None  # too many kept weights for straight-line code of a reasonable size
    if mode == "sparse":
        return plan
    dense = choose_schedule(spec, vec, registers)
    ratio = plan_cost(spec, plan) / dense_cost(spec, vec, dense.nvec, dense.oc_tile)
    return plan if ratio < threshold else None


def pack_sparse_weight(weight: np.ndarray, plan: SparsePlan, dtype: str = "float32") -> np.ndarray:
    """The kept weights in kernel order: for each tile, for each kept column, the tile's rows."""
    mat = weight_matrix(weight).astype("float32")
    parts = [mat[np.ix_(t.rows, t.cols)].T.reshape(-1) for t in plan.tiles if t.cols]
    return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(1, "float32"), dtype=dtype)


def sparse_conv2d_primfunc(spec: ConvSpec, plan: SparsePlan, weight: np.ndarray, bias: np.ndarray | None = None,
                           alpha: np.ndarray | None = None) -> tirx.PrimFunc:
    """The PrimFunc (data[, residual], out) of one conv with its weights and structure baked in.

    `weight` is the conv's (out, in, kh, kw) weight; `bias`/`alpha` (per output channel) must be
    given exactly when the spec has a bias / a PReLU.
    """
    if spec.act not in ACTIVATIONS:
        raise CompilerError(f"unknown activation {spec.act!r}; expected one of {ACTIVATIONS}")
    if spec.groups != 1:
        raise CompilerError("sparse kernels support ungrouped convs only")
    check_edges(spec)
    if spec.shuffle != 1 or spec.residual_repeat != 1:
        raise CompilerError("sparse kernels have no fused PixelShuffle or repeated residual (the rewrite keeps them "
                            "as separate ops)")
    mat = weight_matrix(weight).astype("float32")
    if mat.shape != (spec.cout, spec.cin * spec.kh * spec.kw):
        raise CompilerError(f"weight of shape {np.shape(weight)} does not match the conv {spec.cin}->{spec.cout} "
                            f"k{spec.kh}x{spec.kw}")
    if (bias is not None) != spec.bias or (alpha is not None) != (spec.act == "prelu"):
        raise CompilerError("bias/alpha must be given exactly when the conv has a bias/PReLU")
    rows = sorted(r for t in plan.tiles for r in t.rows)
    if rows != list(range(spec.cout)) or any(len(t.rows) != plan.oc_tile for t in plan.tiles):
        raise CompilerError("the sparse plan's tiles must cover every output channel exactly once")
    ncols = mat.shape[1]
    if any(c < 0 or c >= ncols for t in plan.tiles for c in t.cols):
        raise CompilerError(f"the sparse plan names a column outside the weight's {ncols} columns")
    dropped = mat.copy()
    for t in plan.tiles:
        dropped[np.ix_(t.rows, t.cols)] = 0
    if np.any(dropped != 0):
        raise CompilerError("the sparse plan drops nonzero weights")
    func = _build(spec, plan, bias, alpha)
    # op_pattern 8 = kOpaque: FuseOps must not merge other ops into this hand-scheduled kernel.
    return func.with_attr("tir.is_scheduled", True).with_attr("op_pattern", 8)
