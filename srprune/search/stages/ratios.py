"""Stage `ratios` (stage 3 of the method): per pruned layer the pruning ratio, under the latency budget."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from srprune.search.ratios import STUDY_RATIOS
from srprune.search.stages.base import Stage

if TYPE_CHECKING:
    from srprune.search.pipeline import Run


def run(run: "Run", fresh: bool) -> dict[str, Any]:
    """Run (or resume, or join) the stage-3 study; writes search/{ratios.csv, chosen.json}."""
    from srprune.search.ratios import search_ratios

    arch = json.loads(run.layout.arch.read_text())
    r = search_ratios(run.search_context(), arch, run.storage(), run.layout, progress=run.progress,
                      log=run.log)
    return {k: r[k] for k in ("proxy_psnr", "predicted_ms", "stage", "under_fill", "fill") if k in r}


STAGE = Stage(
    name="ratios",
    reads=("search.sampler", "search.ratio_trials", "search.startup_trials", "search.ratios", "search.seed",
           "search.adapt_steps", "search.adapt_lr"),
    after=("arch",),
    # feedback.json: the replans' measurements of candidates this stage chose
    writes=lambda layout: [layout.ratios_csv, layout.chosen, layout.feedback],
    run=run,
    study=STUDY_RATIOS,
    resumable="the study's stored trials",
)
