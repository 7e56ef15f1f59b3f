"""Sparse conv kernels (compiler.sparse) against PyTorch's conv of the masked weight.

Masks come from srprune.pruning (the real block / pattern / channel schemes), so the compiler is
checked on the structures it will meet; the reference is always torch.nn.functional.conv2d of the
masked weight plus the fused epilogue, and the tile structure is checked against srprune's own
`block_structure` export (an independent implementation of the column rule).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import tvm

from compiler.bench import PlainSR
from compiler.errors import CompilerError
from compiler.kernels import ConvSpec
from compiler.sparse import (SparsePlan, Tile, choose_kernel, make_tiles, pack_sparse_weight, plan_sparse,
                             sparse_conv2d_primfunc)
from compiler.targets import get_target
from tests.conftest import torch_conv_reference

TOL = 1e-4


def _block_weight(cout: int, cin: int, block: tuple[int, int], ratio: float, seed: int = 0) -> np.ndarray:
    from srprune.pruning import block_mask

    w = torch.randn(cout, cin, 3, 3, generator=torch.Generator().manual_seed(seed)) * 0.2
    return (w * block_mask(w, ratio, block)).numpy().astype(np.float32)


def _pattern_weight(cout: int, cin: int, ratio: float, seed: int = 0) -> np.ndarray:
    from srprune.pruning import pattern_mask

    w = torch.randn(cout, cin, 3, 3, generator=torch.Generator().manual_seed(seed)) * 0.2
    mask, _ = pattern_mask(w, ratio, entries=4, patterns=8)
    return (w * mask).numpy().astype(np.float32)


def _run(spec: ConvSpec, w: np.ndarray, plan: SparsePlan, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(kernel output, PyTorch reference) on random data/bias/alpha/residual."""
    rng = np.random.default_rng(seed)
    oh, ow = spec.out_hw
    x = rng.random((spec.n, spec.cin, spec.h, spec.w), dtype=np.float32)
    b = rng.standard_normal(spec.cout).astype(np.float32) if spec.bias else None
    alpha = (rng.random(spec.cout, dtype=np.float32) * 0.5) if spec.act == "prelu" else None
    res = rng.random((spec.n, spec.cout, oh, ow), dtype=np.float32)
    ref = torch_conv_reference(spec, x, w, b, alpha, res)
    func = sparse_conv2d_primfunc(spec, plan, w, b, alpha).with_attr("global_symbol", "main")
    lib = tvm.tirx.build(func, target=get_target("host").tvm_target())
    dev = tvm.cpu()
    args = [x, pack_sparse_weight(w, plan)] + ([res] if spec.residual else [])
    out = tvm.runtime.tensor(np.full((spec.n, spec.cout, oh, ow), np.nan, np.float32), dev)
    lib["main"](*[tvm.runtime.tensor(a, dev) for a in args], out)
    return out.numpy(), ref.numpy()


BLOCK_CASES = [
    # (block, ratio, act, residual, vec, width): widths that are and are not multiples of the row tile
    ((4, 8), 0.5, "relu", True, 16, 37),
    ((2, 8), 0.75, "prelu", False, 8, 21),
    ((8, 4), 0.5, "none", True, 4, 16),
    ((16, 1), 0.75, "relu", False, 16, 32),
]


@pytest.mark.parametrize("block,ratio,act,residual,vec,width", BLOCK_CASES,
                         ids=lambda v: str(v).replace(" ", ""))
def test_block_sparse_kernel_matches_masked_conv(block, ratio, act, residual, vec, width) -> None:
    w = _block_weight(16, 16, block, ratio)
    spec = ConvSpec(1, 16, 4, width, 16, 3, 3, (1, 1, 1, 1), act=act, residual=residual)
    plan = plan_sparse(spec, w, vec)
    got, want = _run(spec, w, plan)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    # the kernel really skips work: it reads at most the block's kept columns (plus rounding slack)
    dense_cols = 16 * 9
    assert plan.kept_columns() <= len(plan.tiles) * dense_cols * (1 - ratio) + len(plan.tiles) * block[1]


@pytest.mark.parametrize("ratio,act", [(0.5, "relu"), (0.75, "prelu"), (0.5, "tanh"), (0.5, "silu"), (0.75, "gelu"),
                                       (0.5, "leaky_relu"), (0.5, "hardswish")])
def test_pattern_sparse_kernel_matches_masked_conv(ratio: float, act: str) -> None:
    w = _pattern_weight(8, 12, ratio)
    spec = ConvSpec(2, 12, 3, 19, 8, 3, 3, (1, 1, 1, 1), act=act, residual=True, slope=0.15)  # batch 2, odd width
    got, want = _run(spec, w, plan_sparse(spec, w, 8))
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def test_unpadded_conv_and_no_bias() -> None:
    w = _block_weight(8, 4, (4, 4), 0.5)
    spec = ConvSpec(1, 4, 6, 20, 8, 3, 3, (0, 0, 0, 0), bias=False)
    got, want = _run(spec, w, plan_sparse(spec, w, 16))
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


@pytest.mark.parametrize("block", [(4, 8), (2, 8), (8, 4)])
def test_tiles_recover_pruning_blocks_exactly(block: tuple[int, int]) -> None:
    """With oc_tile = block rows, each tile's columns are exactly srprune's kept columns of that block."""
    from srprune.pruning import block_structure

    w = _block_weight(32, 32, block, 0.5, seed=3)
    tiles = make_tiles(w, block[0])
    assert [t.rows for t in tiles] == [tuple(range(r, r + block[0])) for r in range(0, 32, block[0])]
    assert [list(t.cols) for t in tiles] == block_structure(w, block)


def test_grouping_puts_rows_with_the_same_columns_together() -> None:
    """Rows of one block scattered over the output channels are regrouped (the write-back names them)."""
    w = _block_weight(16, 8, (4, 8), 0.75, seed=4)
    perm = np.random.default_rng(0).permutation(16)
    shuffled = w[perm]
    tiles = make_tiles(shuffled, 4)
    want = sum(len(t.cols) for t in make_tiles(w, 4))
    assert sum(len(t.cols) for t in tiles) == want
    assert sorted(r for t in tiles for r in t.rows) == list(range(16))


def test_choose_kernel_decides_by_sparsity() -> None:
    spec = ConvSpec(1, 32, 8, 64, 32, 3, 3, (1, 1, 1, 1), act="relu")
    dense = np.random.default_rng(0).standard_normal((32, 32, 3, 3)).astype(np.float32)
    assert choose_kernel(spec, dense, 16) is None
    assert choose_kernel(spec, _block_weight(32, 32, (4, 8), 0.75), 16) is not None
    assert choose_kernel(spec, _block_weight(32, 32, (4, 8), 0.75), 16, mode="dense") is None
    assert choose_kernel(spec, dense, 16, mode="sparse") is not None
    depthwise = ConvSpec(1, 8, 8, 64, 8, 3, 3, (1, 1, 1, 1), groups=8)
    assert choose_kernel(depthwise, np.zeros((8, 1, 3, 3), np.float32), 16, mode="sparse") is None
    with pytest.raises(CompilerError, match="unknown sparse mode"):
        choose_kernel(spec, dense, 16, mode="fast")
    with pytest.raises(CompilerError, match="threshold"):
        choose_kernel(spec, dense, 16, threshold=1.5)


def test_sparse_kernel_must_beat_winograd_where_winograd_is_the_dense_choice() -> None:
    """A 50%-block-pruned 32->32 conv models at 0.5 of the direct kernel, F(4x4) Winograd at about 0.48: keeping
    the dense (Winograd) kernel is faster, so the rewrite must not take the sparse one; at 75% it still pays."""
    from compiler.importer import import_module
    from compiler.rewrite import fuse_convs_report
    from compiler.winograd import dense_relative_cost, direct_cost, winograd_cost

    spec = ConvSpec(1, 32, 360, 640, 32, 3, 3, (1, 1, 1, 1), act="relu")
    rel = dense_relative_cost(spec, 16)
    assert rel == pytest.approx(min(winograd_cost(spec, m, 16) for m in (2, 4)) / direct_cost(spec, 16))
    assert rel < 0.7  # Winograd is the dense choice here (the independent formulas above)
    half, most = _block_weight(32, 32, (4, 8), 0.5), _block_weight(32, 32, (4, 8), 0.75)
    assert choose_kernel(spec, half, 16) is not None  # against the direct kernel alone it would be taken
    assert choose_kernel(spec, half, 16, dense_relative=rel) is None
    assert choose_kernel(spec, most, 16, dense_relative=rel) is not None
    fp16 = dataclasses.replace(spec, compute="float16", data_dtype="float16", out_dtype="float16")
    assert dense_relative_cost(fp16, 16) == 1.0  # Winograd is float32 only
    from compiler.winograd import winograd_mode

    tiny = ConvSpec(1, 4, 6, 8, 4, 3, 3, (1, 1, 1, 1))  # F(2) forced where it costs more than direct: the direct bar
    with winograd_mode("f2"):
        assert winograd_cost(tiny, 2, 16) > direct_cost(tiny, 16) and dense_relative_cost(tiny, 16) == 1.0
    with pytest.raises(CompilerError, match="dense_relative"):
        choose_kernel(spec, half, 16, dense_relative=0.0)

    for weight, kind in ((half, "winograd"), (most, "sparse")):
        conv = torch.nn.Conv2d(32, 32, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weight))
        _, decisions = fuse_convs_report(import_module(torch.nn.Sequential(conv, torch.nn.ReLU()).eval(),
                                                       (1, 32, 360, 640)), 16)
        assert [d["kernel"] for d in decisions] == [kind]


def test_code_size_cap_trades_accumulators_for_code() -> None:
    """Kept columns x oc_tile x nvec (the unrolled multiply-adds) never exceeds the cap."""
    spec = ConvSpec(1, 32, 8, 640, 32, 3, 3, (1, 1, 1, 1))
    w = _block_weight(32, 32, (4, 8), 0.5)
    free = plan_sparse(spec, w, 16)
    capped = plan_sparse(spec, w, 16, max_unrolled=5000)
    assert capped.unrolled() <= 5000 < free.unrolled()
    assert capped.unrolled() == capped.kept_columns() * capped.oc_tile * capped.nvec
    with pytest.raises(CompilerError, match="unrolled"):
        plan_sparse(spec, w, 16, max_unrolled=100)


def test_bad_plans_raise() -> None:
    spec = ConvSpec(1, 2, 4, 16, 4, 3, 3, (1, 1, 1, 1))
    w = np.zeros((4, 2, 3, 3), np.float32)
    w[0, 0, 1, 1] = 1.0
    bias = np.zeros(4, np.float32)
    missing_row = SparsePlan(16, 1, 2, (Tile((0, 1), (4,)), Tile((2, 2), ())))
    with pytest.raises(CompilerError, match="every output channel"):
        sparse_conv2d_primfunc(spec, missing_row, w, bias)
    drops = SparsePlan(16, 1, 2, (Tile((0, 1), (5,)), Tile((2, 3), ())))
    with pytest.raises(CompilerError, match="drops nonzero weights"):
        sparse_conv2d_primfunc(spec, drops, w, bias)
    whole = SparsePlan(16, 1, 2, (Tile((0, 1), (4,)), Tile((2, 3), ())))
    with pytest.raises(CompilerError, match="PixelShuffle"):
        sparse_conv2d_primfunc(dataclasses.replace(spec, shuffle=2), whole, w, bias)
    ok = SparsePlan(16, 1, 2, (Tile((0, 1), (4,)), Tile((2, 3), ())))
    with pytest.raises(CompilerError, match="bias"):
        sparse_conv2d_primfunc(spec, ok, w, None)
    with pytest.raises(CompilerError, match="multiple of the tile"):
        make_tiles(w, 3)


@pytest.mark.parametrize("spec", [
    {"default": {"scheme": "block", "ratio": 0.75, "block": [4, 8]}},
    {"default": {"scheme": "pattern", "ratio": 0.75}},
], ids=["block", "pattern"])
def test_pruned_network_through_compile_model(spec: dict) -> None:
    from compiler.build import compile_model, reference_output
    from compiler.importer import import_module
    from compiler.rewrite import fuse_convs_report
    from srprune.pruning import prune_model

    torch.manual_seed(0)
    pruned, _ = prune_model(PlainSR(width=16, body=2).eval(), spec, progress=False)
    pruned.eval()
    shape = (1, 3, 5, 21)
    _, decisions = fuse_convs_report(import_module(pruned, shape), 16)
    kinds = [d["kernel"] for d in decisions]
    assert kinds.count("sparse") >= 2, decisions  # the pruned 16->16 body convs
    compiled = compile_model(pruned, shape, "host")
    assert compiled.check["max_abs_diff"] <= TOL
    x = np.random.default_rng(7).random(shape, dtype=np.float32)
    np.testing.assert_allclose(compiled.run(x), reference_output(pruned, x), atol=TOL, rtol=0)


def test_channel_pruned_network_compiles_as_smaller_dense_convs() -> None:
    from compiler.build import compile_model, reference_output
    from compiler.importer import import_module
    from compiler.rewrite import fuse_convs_report
    from srprune.models import build_model
    from srprune.pruning import prune_model

    torch.manual_seed(0)
    model = build_model("ecbsr", 2, blocks=2, width=8).eval()
    pruned, _ = prune_model(model, {"default": {"scheme": "channel", "ratio": 0.5}}, progress=False)
    pruned.eval()
    shape = (1, 3, 6, 13)
    _, decisions = fuse_convs_report(import_module(pruned, shape), 16)
    assert all(d["kernel"] == "dense" for d in decisions)
    assert min(d["cout"] for d in decisions) == 4  # half of the 8 channels remain
    compiled = compile_model(pruned, shape, "host")
    x = np.random.default_rng(8).random(shape, dtype=np.float32)
    np.testing.assert_allclose(compiled.run(x), reference_output(pruned, x), atol=TOL, rtol=0)
