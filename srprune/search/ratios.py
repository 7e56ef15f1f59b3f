"""Stage 3: the pruning ratio of every pruned layer of stage 2's choice, under the same budget.

The architecture, the schemes and the precisions are fixed; each pruned layer's ratio is a categorical parameter
over `search.ratios` (pattern layers: each raised to at least 5/9, what its kernels keep: `scheme_ratios`). Same
objectives and constraints as stage 2, a study of its own ("ratios") in the same storage. The first trial is stage
2's own choice (every layer at `scheme_ratio`, the nearest of its choices where `search.ratios` lacks it), so stage
3 can only improve on it. When stage 2
chose no pruned layer there is nothing to search and its choice stands. Stage 3 chooses as stage 2 does
(srprune.search.arch.choose): after an under-fill stage 2 a ratio that fills the window wins, and failing one,
the best trial under budget (marked under_fill again).
"""

from __future__ import annotations

import json
import math
import logging
from typing import Any

from srprune.layout import RunLayout
from srprune.search.arch import SearchContext, choose, precision_text, under_fill
from srprune.search.candidate import Candidate, scheme_name, scheme_ratios

STUDY_RATIOS = "ratios"


def objective(ctx: SearchContext, base: Candidate):
    """Optuna objective of stage 3 over the pruned layers of `base`."""
    def run(trial: Any):
        prune = {}
        for name, p in base.prune.items():
            ratio = trial.suggest_categorical(f"{name}.ratio", scheme_ratios(p["scheme"], ctx.search.ratios))
            prune[name] = {**p, "ratio": float(ratio)}
        return ctx.evaluate(trial, Candidate(base.genome, prune, base.precision))
    return run


def _nearest(value: float, choices: list[float]) -> float:
    return min(choices, key=lambda c: abs(c - value))


def search_ratios(ctx: SearchContext, arch: dict[str, Any], storage: Any, layout: RunLayout, *, progress: bool = True,
              log: logging.Logger | None = None) -> dict[str, Any]:
    """Run (or resume, or join) the stage-3 study; write ratios.csv and chosen.json (the search's result)."""
    import optuna

    from srcommon.atomic import write_text
    from srprune.search.study import complete_trials, make_sampler, run_trials, trials_csv

    s = ctx.search
    base = Candidate.from_dict(arch)
    if not base.prune:
        chosen = {**arch, "stage": 2, "note": "stage 2 chose no pruned layer; nothing for stage 3 to search"}
        write_text(layout.ratios_csv, "")
        write_text(layout.chosen, json.dumps(chosen, indent=1) + "\n")
        return chosen
    study = optuna.create_study(study_name=STUDY_RATIOS, storage=storage, directions=["maximize", "minimize"],
                                load_if_exists=True)
    if not study.get_trials(deepcopy=False):  # start from stage 2's own choice
        study.enqueue_trial({f"{n}.ratio": _nearest(p["ratio"], scheme_ratios(p["scheme"], s.ratios))
                             for n, p in base.prune.items()})

    def sampler(k: int):
        return make_sampler(s.sampler, s.seed * 1_000_003 + 500_009 + k, s.startup_trials)

    combos = math.prod(len(scheme_ratios(p["scheme"], s.ratios)) for p in base.prune.values())
    run_trials(study, min(s.ratio_trials, combos), objective(ctx, base), sampler, progress=progress,
               desc="stage 3 (ratios)", log=log)
    trials = complete_trials(study)
    best, short = choose(trials)

    def describe(t: Any) -> dict[str, Any]:
        prune = t.user_attrs["candidate"]["prune"]
        out = {"ratios": " ".join(f"{k}:{scheme_name(v['scheme'], v.get('block'))}@{v['ratio']:.2f}"
                                  for k, v in prune.items())}
        if s.precisions != ["fp32"]:
            out["precision"] = precision_text(base.precision)
        return out

    write_text(layout.ratios_csv, trials_csv(trials, describe))
    if best is None:  # cannot happen when stage 2's choice fit the budget (it is trial 0) unless the model changed
        chosen = {**arch, "stage": 2, "note": "no stage-3 trial under budget; stage 2's choice stands"}
    else:
        chosen = {"trial": [t.number for t in trials].index(best.number), "proxy_psnr": best.values[0], "predicted_ms": best.values[1],
                  **best.user_attrs["candidate"], "stage": 3, "trials": len(trials)}
        if short:
            chosen.update(under_fill(ctx, best.values[1], "stage 3", log))
    write_text(layout.chosen, json.dumps(chosen, indent=1) + "\n")
    return chosen
