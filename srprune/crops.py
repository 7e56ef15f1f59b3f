"""Where to crop an image for the report: windows with detail, and the window where the model differs most from
bicubic.

Why not the brightest-variance window (the earlier rule): a window half in shadow and half in light has a large
variance and no detail (astronaut's crop was a dark, flat region). Detail is the mean gradient magnitude of the
HR image's luma; what the model adds is the mean |model - bicubic| on luma. Windows are scored on a grid with
integral images (every window at once) and chosen greedily without overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srcommon.metrics import rgb_to_y


@dataclass(frozen=True)
class Crop:
    """A square window of the HR image: top-left (y, x), side `size`, why it was chosen and its score."""

    y: int
    x: int
    size: int
    why: str  # "detail" or "difference"
    score: float


def window_means(values: np.ndarray, size: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of `values` (HxW) over every size x size window on a `step` grid: (ys, xs, means[len(ys), len(xs)])."""
    h, w = values.shape
    ys = np.arange(0, max(h - size, 0) + 1, step)
    xs = np.arange(0, max(w - size, 0) + 1, step)
    if ys[-1] != max(h - size, 0):  # the last window flush with the border, so no edge is never offered
        ys = np.append(ys, max(h - size, 0))
    if xs[-1] != max(w - size, 0):
        xs = np.append(xs, max(w - size, 0))
    s = min(size, h), min(size, w)
    integral = np.zeros((h + 1, w + 1))
    integral[1:, 1:] = values.astype(np.float64).cumsum(0).cumsum(1)
    y0, x0 = ys[:, None], xs[None, :]
    total = integral[y0 + s[0], x0 + s[1]] - integral[y0, x0 + s[1]] - integral[y0 + s[0], x0] + integral[y0, x0]
    return ys, xs, total / (s[0] * s[1])


def detail_map(rgb: np.ndarray) -> np.ndarray:
    """Gradient magnitude |dY/dx| + |dY/dy| of an RGB image's BT.601 luma (HxW, same size)."""
    y = rgb_to_y(rgb)
    g = np.zeros_like(y)
    g[:, 1:] += np.abs(np.diff(y, axis=1))
    g[1:, :] += np.abs(np.diff(y, axis=0))
    return g


def _overlaps(a: tuple[int, int], b: tuple[int, int], size: int) -> bool:
    return abs(a[0] - b[0]) < size and abs(a[1] - b[1]) < size


def _pick(scores: tuple[np.ndarray, np.ndarray, np.ndarray], taken: list[Crop], size: int, n: int,
          why: str) -> list[Crop]:
    ys, xs, means = scores
    out: list[Crop] = []
    for flat in np.argsort(-means, axis=None, kind="stable"):
        if len(out) == n:
            break
        i, j = np.unravel_index(flat, means.shape)
        at = (int(ys[i]), int(xs[j]))
        if any(_overlaps(at, (c.y, c.x), size) for c in [*taken, *out]):
            continue
        out.append(Crop(at[0], at[1], size, why, float(means[i, j])))
    return out


def choose_crops(hr: np.ndarray, bicubic: np.ndarray | None = None, model: np.ndarray | None = None, size: int = 128,
                 detail: int = 2, difference: int = 1) -> list[Crop]:
    """`detail` windows with the most detail in `hr`, then `difference` windows where `model` and `bicubic` (same
    size as hr, uint8 RGB) differ most, none overlapping another; fewer when the image has no room for them."""
    size = int(min(size, hr.shape[0], hr.shape[1]))
    step = max(size // 4, 1)
    chosen = _pick(window_means(detail_map(hr), size, step), [], size, detail, "detail")
    if difference and bicubic is not None and model is not None:
        diff = np.abs(rgb_to_y(model) - rgb_to_y(bicubic))
        chosen += _pick(window_means(diff, size, step), chosen, size, difference, "difference")
    return chosen
