"""The predicted-vs-measured scatter plot of `srprune latency validate` (docs/latency_host.png).

Why apart: matplotlib is imported only here, and only when a plot is drawn.
"""

from __future__ import annotations

from typing import Any


def scatter_plot(result: dict, path: Any) -> None:
    """Predicted vs measured scatter (log axes, y = x line) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from srcommon.atomic import atomic_path

    p = [r["predicted_ms"] for r in result["rows"]]
    q = [r["measured_ms"] for r in result["rows"]]
    stored = [r["predicted_stored_ms"] for r in result["rows"] if "predicted_stored_ms" in r]
    same = result.get("calibration", {}).get("same_session", False)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.scatter(q, p, s=18, label="same-session calibration" if same else "predicted")
    if same and len(stored) == len(q):
        ax.scatter(q, stored, s=18, facecolors="none", edgecolors="tab:gray", label="stored calibration")
    lo, hi = min(p + q + stored) * 0.9, max(p + q + stored) * 1.1
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [t * 10**e for e in range(-1, 6) for t in (1, 2, 5) if lo <= t * 10**e <= hi]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(ticks)
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured ms (median)")
    ax.set_ylabel("predicted ms")
    w, h = result["output_size"]
    ax.set_title(f"{result['target']}, {result['threads']} threads, {w}x{h} output, n={result['n']}\n"
                 f"MAPE {result['mape_pct']:.1f}%, Spearman {result['spearman']:.3f}", fontsize=9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
