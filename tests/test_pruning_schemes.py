"""Masked schemes prune exactly the requested amount with the right structure (checked with numpy)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from srprune.errors import InputError
from srprune.pruning.schemes import (block_mask, block_structure, candidate_patterns, pattern_mask,
                                     pattern_structure, unstructured_mask)


def _weight(shape, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.75, 0.9])
def test_unstructured_prunes_exactly_the_smallest(ratio):
    w = _weight((16, 8, 3, 3))
    mask = unstructured_mask(w, ratio)
    a = np.abs(w.numpy()).ravel()
    m = mask.numpy().ravel()
    assert (~m).sum() == round(ratio * a.size)
    if 0 < ratio:
        assert a[m].min() >= a[~m].max()


@pytest.mark.parametrize("shape,block,ratio", [
    ((16, 16, 3, 3), (4, 8), 0.5), ((16, 16, 3, 3), (4, 8), 0.75), ((16, 16, 3, 3), (2, 16), 0.5),
    ((12, 16, 3, 3), (4, 4), 0.25), ((32, 8, 1, 1), (8, 4), 0.5), ((16, 16, 3, 3), (1, 1), 0.6),
])
def test_block_prunes_the_same_columns_in_each_block(shape, block, ratio):
    w = _weight(shape, seed=1)
    mask = block_mask(w, ratio, block).numpy().reshape(shape[0], -1)
    mat = w.numpy().reshape(shape[0], -1)
    br, bc = block
    nr, nc = mat.shape[0] // br, mat.shape[1] // bc
    tiles = mask.reshape(nr, br, nc, bc)
    # Within a block every row keeps the same columns.
    assert (tiles == tiles[:, :1]).all()
    units = tiles[:, 0]  # (nr, nc, bc): True = column kept in that block
    pruned = (~units).sum(axis=-1)
    n_units = nr * nc * bc
    assert pruned.sum() == round(ratio * n_units)
    assert pruned.max() - pruned.min() <= 1  # balanced over blocks
    # Each block drops its weakest columns: every pruned column's L2 norm <= every kept one's.
    norms = (mat.reshape(nr, br, nc, bc) ** 2).sum(axis=1)
    for r, c in itertools.product(range(nr), range(nc)):
        keep, drop = norms[r, c][units[r, c]], norms[r, c][~units[r, c]]
        if len(keep) and len(drop):
            assert drop.max() <= keep.min()


def test_block_structure_lists_the_kept_columns_per_row_block():
    w = _weight((8, 4, 3, 3), seed=2)
    block = (4, 6)
    masked = w * block_mask(w, 0.5, block)
    kept = block_structure(masked, block)
    mat = masked.numpy().reshape(8, 36)
    assert len(kept) == 2
    for r, cols in enumerate(kept):
        rows = mat[4 * r: 4 * r + 4]
        expected = [c for c in range(36) if np.any(rows[:, c] != 0)]
        assert cols == expected and len(cols) == 18  # 3 of 6 columns kept in each of 6 blocks
        # The kept columns alone reproduce the row-block's GEMM.
        x = np.random.default_rng(0).normal(size=(36, 5))
        np.testing.assert_allclose(rows[:, cols] @ x[cols], rows @ x, atol=1e-6)
    assert isinstance(kept[0][0], int)


def test_block_that_does_not_tile_is_refused():
    with pytest.raises(InputError, match="does not divide"):
        block_mask(_weight((16, 3, 3, 3)), 0.5, (4, 8))
    with pytest.raises(InputError, match="does not divide"):
        block_structure(np.zeros((6, 4, 3, 3)), (4, 4))


@pytest.mark.parametrize("ratio,entries,patterns", [(0.75, 4, 8), (0.5, 5, 6), (0.6, 4, 4), (0.0, 9, 1)])
def test_pattern_kernels_fit_the_library_and_ratio(ratio, entries, patterns):
    w = _weight((16, 12, 3, 3), seed=3)
    mask, library = pattern_mask(w, ratio, entries, patterns)
    m = mask.numpy().reshape(-1, 9)
    assert 1 <= len(library) <= patterns
    lib_sets = [{k for k in range(9) if b >> k & 1} for b in library]
    assert all(len(s) == entries for s in lib_sets)
    kept_kernels = 0
    for row in m:
        nz = set(np.flatnonzero(row).tolist())
        if nz:
            kept_kernels += 1
            assert nz in lib_sets
    n = m.shape[0]
    assert kept_kernels == min(n, round((1 - ratio) * 9 * n / entries))
    sparsity = 1 - m.sum() / m.size
    assert abs(sparsity - ratio) <= entries / (9 * n) / 2 + 1e-9 or kept_kernels == n
    # Connectivity pruning removed the kernels keeping the least energy under their best library pattern.
    e = (w.numpy().reshape(-1, 9) ** 2)
    lib = np.array([[1.0 if k in s else 0.0 for k in range(9)] for s in lib_sets])
    best = (e @ lib.T).max(axis=1)
    kept = m.any(axis=1)
    if (~kept).any():
        assert best[~kept].max() <= best[kept].min() + 1e-12


def test_pattern_structure_reads_the_zero_pattern():
    w = _weight((4, 3, 3, 3), seed=4)
    mask, library = pattern_mask(w, 0.7, 4, 3)
    info = pattern_structure(w * mask)
    assert set(info["library"]) <= set(library)
    ids = np.array(info["kernel_pattern"])
    m = mask.numpy().reshape(4, 3, 9)
    for o, i in itertools.product(range(4), range(3)):
        if ids[o, i] < 0:
            assert not m[o, i].any()
        else:
            bits = info["library"][ids[o, i]]
            assert [bool(bits >> k & 1) for k in range(9)] == m[o, i].tolist()


def test_candidate_patterns_are_all_subsets():
    assert candidate_patterns(4).shape == (126, 9)
    assert (candidate_patterns(4).sum(dim=1) == 4).all()
    with pytest.raises(InputError, match="3x3"):
        pattern_mask(_weight((4, 4, 5, 5)), 0.5, 5, 4)
