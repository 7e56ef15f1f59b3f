"""Choosing again after a measurement: the next candidate when the deployed model missed the budget.

The predictions of every scored trial (stages 2 and 3) are multiplied by measured / predicted of the
last deployed network; among the trials not deployed before, the one with the best proxy PSNR whose
corrected time lies in the search window wins (ties: the faster one). As in stages 2 and 3, a window that
nothing fills falls back to the best trial under budget (marked under_fill), here only one that beats every
deployment so far within budget in proxy PSNR (otherwise keeping or restoring that one is better).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from srcommon.atomic import write_text
from srcommon.progress import note
from srprune.search.arch import STUDY_ARCH, SearchContext
from srprune.search.latency_label import deployed_ms, latency_word, value_key
from srprune.search.ratios import STUDY_RATIOS

if TYPE_CHECKING:
    from srprune.search.pipeline import Run


def _key(candidate: dict) -> str:
    return json.dumps({"genome": candidate["genome"], "prune": candidate["prune"]}, sort_keys=True)


def pick(records: list[dict], feedback: list[dict], lower_ms: float, upper_ms: float) -> dict | None:
    """From `records` ({proxy_psnr, predicted_ms, genome, prune}) the best one not in `feedback` whose predicted
    time, corrected by the last measurement (or estimate), lies in [lower_ms, upper_ms]. Failing one: the best
    whose corrected time is at most upper_ms and whose proxy PSNR beats every deployment within budget so far,
    marked under_fill. None if there is none."""
    last = feedback[-1]
    correction = deployed_ms(last) / float(last["predicted_ms"])
    tried = {_key(f["candidate"]) for f in feedback}
    floor = max((float(f["proxy_psnr"]) for f in feedback if f.get("within_budget")), default=float("-inf"))

    def best_of(low: float, min_psnr: float) -> dict | None:
        best = None
        for r in records:
            ms = r["predicted_ms"] * correction
            if _key(r) in tried or not low <= ms <= upper_ms or r["proxy_psnr"] <= min_psnr:
                continue
            if best is None or (r["proxy_psnr"], -ms) > (best["proxy_psnr"], -best["corrected_ms"]):
                best = {**r, "corrected_ms": ms, "correction": correction}
        return best

    best = best_of(lower_ms, float("-inf"))
    if best is None:
        best = best_of(float("-inf"), floor)
        if best is not None:
            best["under_fill"] = True
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
    if best.get("under_fill"):
        best["fill"] = round(best["corrected_ms"] / ctx.budget_ms, 4)
    return {**best, "stage": "replan", "replan": len(feedback)}


def restore_choice(feedback: list[dict]) -> tuple[dict, float] | None:
    """search/chosen.json again for the best earlier deployment within budget (in proxy PSNR; its under_fill mark
    kept), with its measured (or estimated) ms; None if no earlier one was within budget."""
    ok = [f for f in feedback[:-1] if f.get("within_budget")]
    if not ok:
        return None
    best = max(ok, key=lambda f: f["proxy_psnr"])
    return ({**best["candidate"], "proxy_psnr": best["proxy_psnr"], "predicted_ms": best["predicted_ms"],
             "stage": "replan", "restored": True, **{k: best[k] for k in ("under_fill", "fill") if k in best}},
            deployed_ms(best))


def replan(run: "Run") -> bool:
    """After a measurement outside the window: pick another candidate for finetune and after; False to stop.

    Why: the latency model is a prediction; the compiled network's measured time is the truth. When the
    deployed network measures over the budget, or under budget x min_fill, its measured/predicted ratio
    corrects the predictions of every scored trial (network-level error is mostly a common factor), and
    the best trial not deployed before whose corrected time lies in the search window becomes
    search/chosen.json; when none does, the best one under budget that beats every deployment within budget so
    far (pick). At most search.replans times. If the last one is over budget and nothing else fits, the best
    earlier deployment that was within budget is restored (fine-tuning is deterministic, so it comes back the
    same); one under budget x min_fill that nothing beats is kept. Every measurement is kept in
    search/feedback.json.
    """
    dep = (run.states().get("compile") or {}).get("result") or {}
    if not dep:
        return False
    budget = float(dep["budget_ms"])
    ms = deployed_ms(dep)
    over = ms > budget
    under = ms < budget * run.config.search.min_fill
    if not (over or under):
        return False
    feedback_path = run.layout.feedback
    feedback = json.loads(feedback_path.read_text()) if feedback_path.exists() else []
    chosen = json.loads(run.layout.chosen.read_text())
    entry = {"candidate": {"genome": chosen["genome"], "prune": chosen["prune"]}, "proxy_psnr": chosen["proxy_psnr"],
             "predicted_ms": dep["predicted_ms"], value_key(dep): ms, "within_budget": not over,
             **{k: chosen[k] for k in ("under_fill", "fill") if k in chosen}}  # kept for a restore
    if feedback and feedback[-1]["candidate"] == entry["candidate"]:
        return False  # this deployment was handled already (a re-run of a finished run, or a restored one)
    feedback.append(entry)
    write_text(feedback_path, json.dumps(feedback, indent=1) + "\n")
    what = f"{latency_word(dep)} {ms:.1f} ms, {'over' if over else 'under'} the window of the {budget:g} ms budget"
    new = next_choice(run.search_context(), run.storage(), feedback) if len(feedback) <= run.config.search.replans \
        else None
    if new is None:
        back = restore_choice(feedback) if over and not chosen.get("restored") else None  # restore once: a
        if back is not None:  # restored model measured over stays
            new, earlier_ms = back
            note(f"[run] {what}; no other candidate fits: restoring the earlier deployment of "
                 f"{earlier_ms:.1f} ms ({latency_word(dep)})")
        elif under:
            note(f"[run] {what}; kept: no other scored candidate fills the window or beats it under budget after "
                 f"correcting the predictions by the measurement, or search.replans ({run.config.search.replans}) "
                 "are used up")
            return False
        else:
            note(f"[run] {what}; no other scored candidate fits after correcting the predictions by the "
                       f"measurement, or search.replans ({run.config.search.replans}) are used up")
            return False
    else:
        fallback = " (none fills the window: the best under budget)" if new.get("under_fill") else ""
        note(f"[run] {what} (predicted {dep['predicted_ms']:.1f}): replanning with predictions "
                   f"x{new['correction']:.3f}{fallback}")
    write_text(run.layout.chosen, json.dumps(new, indent=1) + "\n")
    run.refresh_hashes()
    run.log.info("replan %d: %s", len(feedback), json.dumps({k: v for k, v in new.items() if k != "genome"}))
    return True
