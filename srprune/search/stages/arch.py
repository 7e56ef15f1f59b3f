"""Stage `arch` (stage 2 of the method): per cell the block and width, per layer the pruning scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from srprune.search.arch import STUDY_ARCH
from srprune.search.stages.base import Stage

if TYPE_CHECKING:
    from srprune.search.pipeline import Run


def run(run: "Run", fresh: bool) -> dict[str, Any]:
    """Run (or resume, or join) the stage-2 study; writes search/{trials.csv, pareto.json, arch.json}."""
    from srprune.search.arch import search_architectures

    r = search_architectures(run.search_context(), run.storage(), run.layout, progress=run.progress,
                             log=run.log)
    return {k: r[k] for k in ("trial", "proxy_psnr", "predicted_ms", "trials", "feasible", "under_fill", "fill")
            if k in r}


STAGE = Stage(
    name="arch",
    reads=("scale", "budget_ms", "val_data", "search.sampler", "search.trials", "search.startup_trials",
           "search.schemes", "search.blocks", "search.precisions", "search.scheme_ratio", "search.margin",
           "search.min_fill", "search.seed", "search.adapt_steps", "search.adapt_lr", "supernet.train.batch_size",
           "supernet.train.patch_size"),
    after=("latency", "supernet"),
    writes=lambda layout: [layout.trials_csv, layout.pareto, layout.arch],
    run=run,
    study=STUDY_ARCH,
    resumable="the study's stored trials",
)
