"""The two numbers a latency model is judged by: MAPE and Spearman rank correlation.

Why from their definitions (numpy only): `validate` and the benchmarks need exactly these two, and
scipy's spearmanr is a heavier dependency than ten lines (tests compare against scipy).
"""

from __future__ import annotations

import numpy as np


def mape(pred: list[float], meas: list[float]) -> float:
    """Mean absolute percentage error, in percent."""
    p, m = np.asarray(pred, float), np.asarray(meas, float)
    return float(np.mean(np.abs(p - m) / m) * 100.0)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties), from its definition."""
    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x), float)
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):
            idx = np.where(x == v)[0]
            r[idx] = r[idx].mean()
        return r

    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / den) if den else 0.0
