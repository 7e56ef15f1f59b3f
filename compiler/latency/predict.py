"""Whole-network latency from the layer table: sum of the layers, calibrated, plus a fallback for unseen layers.

Why a calibration: layers are timed alone (hot caches, no VM dispatch, no allocation), a network
runs them back to back; measured = alpha * sum + beta + gamma * layers, fitted (relative least
squares, the error MAPE measures) on whole-network measurements of a few candidates spread over the space.
Why robust: with 8 points and 3 coefficients one odd network (a small one at 1.6x its layers' sum beside seven at
0.9-1.04x) pulled a fit to 0.84 x sum, mispricing the space's large networks by 10-15%; so from 5 points on, a
point whose relative residual under a robust (Cauchy-loss) fit lies far outside the others' spread is set aside
(kept in the file, marked `outlier`), and the coefficients are the least-squares fit of the rest.
A network with an int8 layer runs as another program (the int8 c-lib: one C loop over its kernels, no VM, adapters
fused), so it has a fit of its own (`Calibration.int8`, fitted on int8 / mixed c-libs); without one its
prediction is its layers' sum (an int8 c-lib ran at 1.0-1.15x its layers' sum, docs/benchmarks.md latency_int8),
never the fp32 fit (which predicted int8 winners 15-35% low: issue 20's search benchmark).
Unseen layers: the same configuration at another input size scales with the output pixels; else
a per-family linear law t = c0 + c1 * MACs + c2 * floats moved, fitted on the table's entries.
Unseen pruned layers: the layer's direct-kernel dense time times the measured speed factor of its scheme (and
block size and kernel size) at its ratio, or its dense time where that is less (the compiler takes a sparse
kernel only where it beats the dense kernel it would use, Winograd included: compiler.sparse.choose_kernel).
Why a factor and not a table entry per pruned layer: a sparse kernel bakes its weights into straight-line
code and takes 5-40 s to compile, so a table times a few pruned layers per scheme (each beside its dense
twin) and the factor, interpolated linearly in the ratio between the measured ratios (1.0 at ratio 0),
carries them to every layer. Why against the direct kernel: a sparse kernel is the direct kernel skipping
pruned weights, so its factor carries across layer shapes; Winograd's gain over direct grows with the
channels, so a factor taken against a Winograd twin of one shape mispredicts others (by up to 1.8x).
Precisions (`LayerConfig.precision`): an int8 or fp16 layer is its own entry, looked up, size-scaled and
family-fitted among its own precision only (the precision is in the key and the family), and a pruned one is
scaled from its dense twin of the same precision by that precision's own speed factor (the int8 sparse kernel
skips other zeros than the fp32 one). int8 adapters cost nothing: the int8 network slices or zero-pads a
residual in its consumer's write-back. A precision the table has no entry of is a one-line CompilerError.
A prediction is a few dict look-ups (well under a millisecond).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from srcommon.atomic import write_json
from compiler.errors import CompilerError
from compiler.latency.config import LayerConfig
from compiler.latency.table import LatencyTable

CALIBRATION_FILE = "predictor.json"
CAL_FORMAT = "srprune-latency-calibration"


@dataclass
class Calibration:
    """measured_ms = alpha * sum_of_layers_ms + beta_ms + gamma_ms * number_of_layers."""

    alpha: float = 1.0
    beta_ms: float = 0.0
    gamma_ms: float = 0.0
    points: list[dict] = field(default_factory=list)  # {"sum_ms", "layers", "measured_ms"} it was fitted on
    int8: Calibration | None = None  # networks with an int8 layer (the int8 c-lib): a fit of their own

    def apply(self, sum_ms: float, n_layers: int) -> float:
        """The calibrated whole-network time."""
        return self.alpha * sum_ms + self.beta_ms + self.gamma_ms * n_layers

    def for_layers(self, layers: list[LayerConfig]) -> Calibration:
        """The fit that prices `layers` as one network: `int8` (or the plain sum when there is none) for a network
        with an int8 layer, else this one (module docstring)."""
        if any(c.precision == "int8" for c in layers):
            return self.int8 or Calibration()
        return self


OUTLIER_MIN_POINTS = 5  # fewer cannot tell an odd network from the trend
OUTLIER_MADS = 4.0  # set aside beyond this many robust standard deviations (1.4826 x MAD) of the residuals...
OUTLIER_FLOOR = 0.10  # ...and never within 10% of the robust fit (timing noise between networks is 2-5%)


def fit_calibration(points: list[tuple[float, int, float]]) -> Calibration:
    """Fit (sum_ms, n_layers, measured_ms) points by least squares on the relative error, outliers set aside.

    One point fits alpha only; up to 7 fit alpha and beta; 8 or more also the per-layer term (with
    fewer, three coefficients would mostly fit the measurement noise). The coefficients are kept
    non-negative (non-negative least squares): overheads only add time, and a negative intercept
    fitted on noise would predict negative times for networks smaller than the measured ones.
    Outliers (module docstring): at most a quarter of the points, only from OUTLIER_MIN_POINTS on.
    """
    if not points:
        raise CompilerError("calibration needs at least one whole-network measurement")
    s = np.array([p[0] for p in points], dtype=float)
    n = np.array([p[1] for p in points], dtype=float)
    m = np.array([p[2] for p in points], dtype=float)
    if np.any(m <= 0) or np.any(s <= 0):
        raise CompilerError("calibration points must have positive times")
    cols = [s, np.ones_like(s), n][: 1 if len(points) == 1 else (2 if len(points) < 8 else 3)]
    if len(cols) == 3 and np.ptp(n) == 0:
        cols = cols[:2]
    a = np.stack(cols, axis=1) / m[:, None]  # row i: the relative prediction per coefficient
    outlier = _outliers(a) if len(points) >= OUTLIER_MIN_POINTS else np.zeros(len(points), dtype=bool)
    coef = _nnls(a[~outlier])
    coef = list(coef) + [0.0] * (3 - len(coef))
    pts = [{"sum_ms": float(x), "layers": int(k), "measured_ms": float(y)} for x, k, y in points]
    for p, out in zip(pts, outlier):
        if out:
            p["outlier"] = True
    return Calibration(float(coef[0]), float(coef[1]), float(coef[2]), pts)


def _nnls(a: np.ndarray) -> np.ndarray:
    """Non-negative least squares of a @ coef = 1 (relative residuals)."""
    from scipy.optimize import nnls

    return nnls(a, np.ones(len(a)))[0]


def _outliers(a: np.ndarray) -> np.ndarray:
    """Points whose relative residual under a robust fit is beyond OUTLIER_MADS robust deviations and OUTLIER_FLOOR
    from the median; at most a quarter of the points, the worst first. Why a Cauchy loss: a point far off the others
    weighs almost nothing in it, where least squares, or an intercept under a soft-L1 loss, bends toward it."""
    from scipy.optimize import least_squares

    # the loss is not convex: start from the plain fit and from "measured = median ratio x sum", keep the better
    starts = [_nnls(a), np.r_[1.0 / np.median(a[:, 0]), np.zeros(a.shape[1] - 1)]]
    fits = [least_squares(lambda c: a @ c - 1.0, np.maximum(x0, 1e-9), bounds=(0.0, np.inf), loss="cauchy",
                          f_scale=0.03) for x0 in starts]
    r = a @ min(fits, key=lambda f: f.cost).x - 1.0
    dev = np.abs(r - np.median(r))
    spread = 1.4826 * np.median(dev)
    far = dev > max(OUTLIER_MADS * spread, OUTLIER_FLOOR)
    keep_at_most = len(a) // 4
    if far.sum() > keep_at_most:
        far[:] = False
        far[np.argsort(-dev)[:keep_at_most]] = True
    return far


def save_calibration(cal: Calibration, path: str | os.PathLike, header: dict[str, Any]) -> None:
    """Write the calibration beside its table (atomic), with the table's header to check against."""
    path = Path(path)
    write_json(path, {"format": CAL_FORMAT, "header": header, **asdict(cal)})


def load_calibration(path: str | os.PathLike, header: dict[str, Any]) -> Calibration | None:
    """The calibration at `path` (None if absent); foreign/corrupt files or another target raise CompilerError."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CompilerError(f"{path}: corrupt calibration file (not valid JSON)") from None
    if not isinstance(data, dict) or data.get("format") != CAL_FORMAT:
        raise CompilerError(f"{path}: not a latency calibration file")
    h = data.get("header") or {}
    if (h.get("target"), h.get("threads")) != (header.get("target"), header.get("threads")):
        raise CompilerError(f"{path}: calibration is for target {h.get('target')} ({h.get('threads')} threads), "
                            f"not {header.get('target')} ({header.get('threads')} threads)")
    try:
        return _calibration(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CompilerError(f"{path}: corrupt calibration file (alpha/beta_ms/gamma_ms missing)") from None


def _calibration(data: dict[str, Any]) -> Calibration:
    """A Calibration from its saved form (asdict's), the int8 fit nested."""
    int8 = data.get("int8")
    return Calibration(float(data["alpha"]), float(data["beta_ms"]), float(data["gamma_ms"]),
                       list(data.get("points", [])), _calibration(int8) if int8 else None)


def _sparse_kind(cfg: LayerConfig) -> tuple:
    """What a sparse speed factor depends on besides the ratio (the precision: each has its own sparse kernel)."""
    return (cfg.scheme, cfg.block, cfg.k, cfg.precision)


def _size_free(cfg: LayerConfig) -> LayerConfig:
    return replace(cfg, h=1, w=1)


class Predictor:
    """Layer times from a table (exact, size-scaled or regressed) and the calibrated network time."""

    def __init__(self, table: LatencyTable, calibration: Calibration | None = None, *, _direct: bool = False) -> None:
        self.table = table
        # Pruned layers are priced against direct-kernel times: a predictor on the table's direct view.
        self._direct = self if _direct else Predictor(table.direct_view(), _direct=True)
        self.calibration = calibration or Calibration()
        self._exact = {k: e.median_ms for k, e in table.entries.items()}
        self._by_shape: dict[str, list[tuple[int, float]]] = {}
        self._families: dict[tuple, list[tuple[LayerConfig, float]]] = {}
        for e in table.entries.values():
            oh, ow = e.config.out_hw
            self._by_shape.setdefault(_size_free(e.config).key(), []).append((oh * ow, e.median_ms))
            self._families.setdefault(e.config.family(), []).append((e.config, e.median_ms))
        self._laws: dict[tuple, np.ndarray | None] = {}
        self._cache: dict[str, tuple[float, str]] = {}
        self._factors: dict[tuple, list[tuple[float, float]]] = {}
        self.precisions = frozenset(e.config.precision for e in table.entries.values())

    def layer_ms(self, cfg: LayerConfig) -> tuple[float, str]:
        """(milliseconds, how): how is 'table', 'scaled', 'fitted', 'sparse-factor' or 'fused' (an int8 adapter)."""
        key = cfg.key()
        hit = self._exact.get(key)
        if hit is not None:
            return hit, "table"
        cached = self._cache.get(key)
        if cached is None:
            if cfg.precision != "fp32" and cfg.precision not in self.precisions:
                raise CompilerError(f"the latency table has no {cfg.precision} layers; build them with "
                                    f"`srprune latency build --precisions fp32,{cfg.precision}`")
            if cfg.op == "adapter" and cfg.precision == "int8":
                return 0.0, "fused"  # sliced or zero-padded in the consuming int8 kernel's write-back
            cached = self._estimate(cfg)
            self._cache[key] = cached
        return cached

    def _estimate(self, cfg: LayerConfig) -> tuple[float, str]:
        if cfg.scheme != "dense" and cfg.op == "conv":
            dense = replace(cfg, scheme="dense", ratio=0.0, block=(0, 0))
            sparse_ms = self._direct.layer_ms(dense)[0] * self.sparse_factor(cfg)
            return min(sparse_ms, self.layer_ms(dense)[0]), "sparse-factor"
        oh, ow = cfg.out_hw
        same = self._by_shape.get(_size_free(cfg).key())
        if same:
            px, ms = min(same, key=lambda t: abs(np.log(t[0] / (oh * ow))))
            return ms * (oh * ow) / px, "scaled"
        law = self._law(cfg.family())
        if law is None:
            raise CompilerError(f"the latency table has nothing close to layer {cfg.key()}; "
                                f"build the table for this search space and frame size")
        return max(0.0, float(law @ np.array([1.0, cfg.macs(), cfg.elements()]))), "fitted"

    def _law(self, family: tuple) -> np.ndarray | None:
        if family not in self._laws:
            members = self._families.get(family, [])
            if len(members) < 3:
                self._laws[family] = None
            else:
                x = np.array([[1.0, c.macs(), c.elements()] for c, _ in members])
                y = np.array([t for _, t in members])
                coef, *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
                self._laws[family] = coef
        return self._laws[family]

    def sparse_factor(self, cfg: LayerConfig) -> float:
        """Measured time of a pruned layer's sparse kernel over its dense twin's direct kernel, for `cfg`'s scheme,
        block and kernel size."""
        kind = _sparse_kind(cfg)
        curve = self._factors.get(kind)
        if curve is None:
            curve = self._factor_curve(kind)
            self._factors[kind] = curve
        if not curve:
            if any(e.config.scheme != "dense" and _sparse_kind(e.config) == kind for e in self.table.entries.values()):
                return float("inf")  # measured, but the compiler kept the dense kernel every time: no speed-up
            where = "" if cfg.precision == "fp32" else f" in {cfg.precision}"
            raise CompilerError(f"the latency table has no measured {cfg.scheme} layers{where} like {cfg.key()}; "
                                f"build it with this scheme and block size among the search's choices")
        ratios = [0.0] + [r for r, _ in curve]
        factors = [1.0] + [f for _, f in curve]
        return float(np.interp(cfg.ratio, ratios, factors))

    def _factor_curve(self, kind: tuple) -> list[tuple[float, float]]:
        """(ratio, mean factor) over the table's pruned entries of `kind` that ran a sparse kernel and have a dense
        twin (entries where the compiler kept the dense kernel say nothing about the sparse kernel's speed)."""
        by_ratio: dict[float, list[float]] = {}
        for key, e in self.table.entries.items():
            c = e.config
            if c.scheme == "dense" or _sparse_kind(c) != kind or not (e.kernel in ("sparse", "")
                                                                      or e.kernel.endswith("-sparse")):
                continue
            twin = self._direct._exact.get(replace(c, scheme="dense", ratio=0.0, block=(0, 0)).key())
            if twin:
                by_ratio.setdefault(c.ratio, []).append(e.median_ms / twin)
        return sorted((r, float(np.mean(f))) for r, f in by_ratio.items())

    def sum_ms(self, layers: list[LayerConfig]) -> float:
        """Uncalibrated sum of the layers' times."""
        return float(sum(self.layer_ms(c)[0] for c in layers))

    def predict(self, layers: list[LayerConfig]) -> float:
        """Calibrated whole-network milliseconds (the int8 fit for a network with an int8 layer)."""
        return self.calibration.for_layers(layers).apply(self.sum_ms(layers), len(layers))

    def breakdown(self, layers: list[LayerConfig]) -> list[dict[str, Any]]:
        """Per layer: key, milliseconds and where the number came from."""
        out = []
        for c in layers:
            ms, how = self.layer_ms(c)
            out.append({"layer": c.key(), "ms": ms, "source": how})
        return out
