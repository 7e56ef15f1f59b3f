"""Stage `latency`: measure the layer table of the search space on the target and fit the predictor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from srprune.search.stages.base import Stage

if TYPE_CHECKING:
    from srprune.search.pipeline import Run


def run(run: "Run", fresh: bool) -> dict[str, Any]:
    """Build (or complete) RUN/latency/TARGET: table, pruned-kernel entries, calibration; check the budget."""
    from srprune.search.latency_stage import run_stage

    return run_stage(run.cfg, run.dir, run.target, run.out_hw, progress=run.progress)


STAGE = Stage(
    name="latency",
    # latency.* but span_s (how the compile stage times the deployed model, not the table)
    reads=("target", "threads", "rpc", "output_size", "latency.repeat", "latency.calibrate", "latency.source",
           "latency.cpu", "supernet.space", "search.schemes",
           "search.blocks", "search.ratios", "search.scheme_ratio", "search.precisions"),
    after=(),
    writes=lambda layout: [layout.latency],
    run=run,
    resumable="the table's last measured chunk",
)
