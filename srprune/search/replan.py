"""Choosing again after a measurement: the next candidate when the deployed model missed the budget.

The predictions of every scored trial (stages 2 and 3) are multiplied by measured / predicted of the
last deployed network; among the trials not deployed before, the one with the best proxy PSNR whose
corrected time lies in the search window wins (ties: the faster one).
"""

from __future__ import annotations

import json
from typing import Any

from srprune.search.arch import STUDY_ARCH, SearchContext
from srprune.search.ratios import STUDY_RATIOS


def _key(candidate: dict) -> str:
    return json.dumps({"genome": candidate["genome"], "prune": candidate["prune"]}, sort_keys=True)


def pick(records: list[dict], feedback: list[dict], lower_ms: float, upper_ms: float) -> dict | None:
    """From `records` ({proxy_psnr, predicted_ms, genome, prune}) the best one not in `feedback` whose predicted
    time, corrected by the last measurement, lies in [lower_ms, upper_ms]; None if there is none."""
    last = feedback[-1]
    correction = float(last["measured_ms"]) / float(last["predicted_ms"])
    tried = {_key(f["candidate"]) for f in feedback}
    best = None
    for r in records:
        ms = r["predicted_ms"] * correction
        if _key(r) in tried or not lower_ms <= ms <= upper_ms:
            continue
        if best is None or (r["proxy_psnr"], -ms) > (best["proxy_psnr"], -best["corrected_ms"]):
            best = {**r, "corrected_ms": ms, "correction": correction}
    return best


def scored_records(storage: Any) -> list[dict]:
    """Every complete trial of the stage-2 and stage-3 studies as a record."""
    import optuna
    from optuna.trial import TrialState

    out = []
    for name in (STUDY_ARCH, STUDY_RATIOS):
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            out.append({"proxy_psnr": t.values[0], "predicted_ms": t.values[1], "study": name,
                        **t.user_attrs["candidate"]})
    return out


def next_choice(ctx: SearchContext, storage: Any, feedback: list[dict]) -> dict | None:
    """The next search/chosen.json, or None when no other scored candidate fits."""
    best = pick(scored_records(storage), feedback, ctx.lower_ms, ctx.upper_ms)
    if best is None:
        return None
    return {**best, "stage": "replan", "replan": len(feedback)}
