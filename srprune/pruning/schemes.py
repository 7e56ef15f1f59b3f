"""Masks of the masked pruning schemes (unstructured, block, pattern) and the structure export for the compiler.

Every mask function takes a conv weight (out, in, kh, kw) and returns a bool tensor of the same
shape (True = kept). They rank by magnitude (L2 norm of the pruning unit), so a weight that is
already zero is pruned first and re-computing masks during gradual pruning only grows them.

Structure export (`block_structure`, `pattern_structure`) reads only the zero pattern of a weight,
as plain numpy/JSON data, so a compiled kernel can bake the indices in without knowing torch.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from srprune.errors import InputError


def _as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, kh, kw) -> (out, in*kh*kw), the GEMM view."""
    return weight.reshape(weight.shape[0], -1)


def unstructured_mask(weight: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep the largest-magnitude weights; exactly round(ratio * numel) weights are pruned."""
    flat = weight.detach().abs().flatten()
    n_prune = int(round(ratio * flat.numel()))
    mask = torch.ones_like(flat, dtype=torch.bool)
    if n_prune:
        order = torch.argsort(flat, stable=True)
        mask[order[:n_prune]] = False
    return mask.view_as(weight)


def check_block(shape: tuple[int, ...], block: tuple[int, int], name: str = "weight") -> tuple[int, int]:
    """Check that block (rows, cols) tiles the (out x in*kh*kw) matrix of a conv weight of `shape`."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    br, bc = int(block[0]), int(block[1])
    if br < 1 or bc < 1 or rows % br or cols % bc:
        raise InputError(f"block {br}x{bc} does not divide layer {name} (its weight matrix is {rows}x{cols})")
    return br, bc


def block_mask(weight: torch.Tensor, ratio: float, block: tuple[int, int]) -> torch.Tensor:
    """Block-based column pruning: in each (rows x cols) block the same columns are pruned for all rows.

    The unit is one column of one block (`rows` weights); round(ratio * units) units are pruned,
    spread evenly over blocks (counts differ by at most one, so row-blocks stay balanced for the
    kernel), each block dropping its lowest-L2 columns; leftover units go to the blocks whose next
    column is weakest.
    """
    br, bc = check_block(tuple(weight.shape), block)
    w = _as_matrix(weight.detach()).float()
    nr, nc = w.shape[0] // br, w.shape[1] // bc
    norms = w.reshape(nr, br, nc, bc).pow(2).sum(dim=1)  # (nr, nc, bc)
    n_blocks, n_units = nr * nc, nr * nc * bc
    total = int(round(ratio * n_units))
    base, extra = divmod(total, n_blocks)
    sorted_norms, order = torch.sort(norms, dim=-1, stable=True)
    counts = torch.full((nr, nc), base, dtype=torch.long)
    if extra:
        nxt = sorted_norms[..., base].flatten()
        pick = torch.argsort(nxt, stable=True)[:extra]
        counts.view(-1)[pick] += 1
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(bc).expand_as(order).contiguous())
    keep_units = rank >= counts.unsqueeze(-1)  # (nr, nc, bc)
    mask = keep_units.unsqueeze(1).expand(nr, br, nc, bc).reshape(w.shape)
    return mask.reshape(weight.shape)


@lru_cache(maxsize=None)
def candidate_patterns(entries: int) -> torch.Tensor:
    """All 3x3 patterns with `entries` nonzeros, as a (C(9, entries), 9) 0/1 float matrix."""
    rows = []
    for combo in itertools.combinations(range(9), entries):
        row = [0.0] * 9
        for i in combo:
            row[i] = 1.0
        rows.append(row)
    return torch.tensor(rows)


def pattern_bits(pattern: torch.Tensor) -> int:
    """A 3x3 0/1 pattern (9 values, row-major) as an int whose bit k is position k = 3*y + x."""
    return int(sum(1 << k for k, v in enumerate(pattern.flatten().tolist()) if v))


def pattern_mask(weight: torch.Tensor, ratio: float, entries: int, patterns: int) -> tuple[torch.Tensor, list[int]]:
    """Pattern pruning of 3x3 kernels plus connectivity pruning; returns (mask, library as bit ints).

    The layer's library holds the `patterns` most frequent best-fitting `entries`-sparse patterns
    (PatDNN's choice by frequency); every kernel takes the library pattern that keeps most of its
    L2 energy, then the kernels keeping the least energy are removed whole until
    round((1 - ratio) * 9 * kernels / entries) kernels remain.
    """
    if tuple(weight.shape[2:]) != (3, 3):
        raise InputError(f"pattern pruning needs 3x3 kernels, got {tuple(weight.shape[2:])}")
    energy = weight.detach().float().reshape(-1, 9).pow(2)  # (kernels, 9)
    cands = candidate_patterns(entries)
    best = torch.argmax(energy @ cands.T, dim=1)
    freq = torch.bincount(best, minlength=cands.shape[0])
    lib_idx = torch.argsort(-freq, stable=True)[:patterns]
    lib_idx = lib_idx[freq[lib_idx] > 0] if bool((freq[lib_idx] > 0).any()) else lib_idx[:1]
    library = cands[lib_idx]  # (P, 9)
    kept_energy, choice = torch.max(energy @ library.T, dim=1)
    mask = library[choice].bool()  # (kernels, 9)
    n_kernels = energy.shape[0]
    n_keep = min(n_kernels, int(round((1.0 - ratio) * 9 * n_kernels / entries)))
    if n_keep < n_kernels:
        drop = torch.argsort(kept_energy, stable=True)[: n_kernels - n_keep]
        mask[drop] = False
    return mask.reshape(weight.shape), sorted(pattern_bits(p) for p in library)


def unit_norms(weight: torch.Tensor, scheme: str, block: tuple[int, int] | None = None) -> torch.Tensor:
    """Differentiable norms of a scheme's pruning units, for a group-lasso penalty (sum of them).

    unstructured: |w| (plain L1); block: L2 of each column of each row-block; pattern: L2 of each
    3x3 kernel (the connectivity unit); channel: L2 of each output channel's weights. A tiny eps
    inside the square root keeps the gradient finite at zero.
    """
    if scheme == "unstructured":
        return weight.abs().flatten()
    if scheme == "block":
        br, bc = check_block(tuple(weight.shape), block)
        w = _as_matrix(weight)
        nr = w.shape[0] // br
        return (w.reshape(nr, br, -1).pow(2).sum(dim=1) + 1e-12).sqrt().flatten()
    if scheme == "pattern":
        return (weight.reshape(-1, weight.shape[2] * weight.shape[3]).pow(2).sum(dim=1) + 1e-12).sqrt()
    if scheme == "channel":
        return (_as_matrix(weight).pow(2).sum(dim=1) + 1e-12).sqrt()
    raise ValueError(f"unknown scheme {scheme!r}")


def _to_numpy(weight: Any) -> np.ndarray:
    if isinstance(weight, torch.Tensor):
        weight = weight.detach().cpu().numpy()
    arr = np.asarray(weight)
    if arr.ndim != 4:
        raise InputError(f"expected a conv weight (out, in, kh, kw), got shape {arr.shape}")
    return arr


def block_structure(weight: Any, block: tuple[int, int] | list[int]) -> list[list[int]]:
    """Kept column indices (sorted) of each row-block of a block-pruned conv weight.

    `weight` is (out, in, kh, kw) (torch or numpy) with exact zeros where pruned; the matrix is
    weight.reshape(out, in*kh*kw) and column c = (i*kh + y)*kw + x. Entry r lists the columns
    that have any nonzero in rows [r*rows, (r+1)*rows): a kernel for row-block r gathers those
    im2col columns and runs a dense (rows x len) GEMM. Plain ints, JSON-ready.
    """
    arr = _to_numpy(weight)
    br, bc = check_block(arr.shape, tuple(block))
    mat = arr.reshape(arr.shape[0], -1)
    return [np.flatnonzero(np.any(mat[r:r + br] != 0, axis=0)).tolist() for r in range(0, mat.shape[0], br)]


def pattern_structure(weight: Any) -> dict[str, Any]:
    """The 3x3 patterns in use and each kernel's pattern, from the zero pattern of `weight`.

    Returns {"library": [bits, ...] (sorted; bit k = position 3*y + x), "kernel_pattern": (out x in)
    nested list of indices into library, -1 for a removed (all-zero) kernel}.
    """
    arr = _to_numpy(weight)
    if arr.shape[2:] != (3, 3):
        raise InputError(f"pattern structure needs 3x3 kernels, got {arr.shape[2:]}")
    nz = (arr.reshape(arr.shape[0], arr.shape[1], 9) != 0)
    bits = (nz * (1 << np.arange(9))).sum(axis=-1)
    library = sorted(int(b) for b in np.unique(bits) if b)
    index = {b: i for i, b in enumerate(library)}
    ids = np.vectorize(lambda b: index.get(int(b), -1), otypes=[np.int64])(bits)
    return {"library": library, "kernel_pattern": ids.tolist()}
