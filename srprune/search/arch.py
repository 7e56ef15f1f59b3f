"""Stage 2: block and widths per cell, pruning scheme and precision per layer, by Bayesian optimisation under the
budget.

Each trial is a candidate (srprune.search.candidate) scored by two objectives, proxy PSNR-Y
(maximised) and predicted latency on the target (minimised), with the budget as constraints:
predicted <= budget * (1 - margin) and predicted >= budget * min_fill. The study keeps every trial;
its feasible Pareto front goes to RUN/search/pareto.json and the feasible trial with the best proxy
PSNR is stage 2's choice (RUN/search/arch.json). When no trial fills min_fill of the budget (a space
whose largest network is far under it), the best trial under the budget is taken instead, marked
"under_fill" with its "fill" (predicted / budget) and a warning: the search is not lost for want of a
bigger network. Pruned layers are scored at `scheme_ratio`; stage 3 then sets each one's ratio.

Parameters are named by cell and by the layer's place in its block ("cells.1.c2.scheme"), so a
parameter keeps one set of choices in every trial: a scheme that does not fit the layer's shape
(a block that does not tile its weight, a pattern on a 1x1 conv) is read as dense. With `search.precisions`
beyond fp32, every layer srprune.quant.plan lets take another precision (the head and the tail included) has a
precision parameter too ("cells.1.res.c2.precision", "head.precision"); with [fp32] there is none, so such a
search asks exactly what it asked before precisions were searched.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from srprune.search.candidate import (Candidate, fits, latency_ms, layer_prune, parse_scheme, searchable_layers,
                                      candidate_psnr, scheme_name)
from srprune.layout import RunLayout
from srprune.search.config import SearchSettings
from srprune.search.study import constraint_of, feasible
from supernet.space import BLOCKS, Cell, Genome, SearchSpace

STUDY_ARCH = "arch"


@dataclass
class SearchContext:
    """What every trial needs: the supernet, validation tensors, latency model and the search settings."""

    supernet: Any
    space: SearchSpace
    val: list
    predictor: Any
    out_hw: tuple[int, int]  # (H, W) of the output frame
    scale: int
    budget_ms: float
    search: SearchSettings
    adapt_batches: list = field(default_factory=list)  # (lr, hr) batches of the short adaptation, same for all
    calib_batches: list = field(default_factory=list)  # LR batches calibrating int8 candidates' ranges, same for all
    _precision_layers: dict = field(default_factory=dict, repr=False)  # genome JSON -> its plan's layer names

    def precision_layers(self, genome: Genome) -> list[str]:
        """The layers of `genome` that may take another precision than fp32 (srprune.quant.plan's rule)."""
        from srprune.quant.plan import precision_layers
        from srprune.search.candidate import extract_deployed

        key = json.dumps(genome.to_dict(), sort_keys=True)
        if key not in self._precision_layers:
            self._precision_layers[key] = precision_layers(extract_deployed(self.supernet, genome))
        return self._precision_layers[key]

    @property
    def upper_ms(self) -> float:
        """The latency bound the search honours (budget minus the margin for prediction error)."""
        return self.budget_ms * (1.0 - self.search.margin)

    @property
    def lower_ms(self) -> float:
        """Candidates faster than this leave budget unused and are not chosen."""
        return self.budget_ms * self.search.min_fill

    def constraints(self, ms: float) -> list[float]:
        """<= 0 when feasible."""
        return [ms - self.upper_ms, self.lower_ms - ms]

    def score(self, cand: Candidate) -> tuple[float, float]:
        """(proxy PSNR-Y dB, predicted ms)."""
        psnr = candidate_psnr(self.supernet, cand, self.val, self.adapt_batches, self.search.adapt_lr,
                              self.calib_batches)
        return psnr, latency_ms(self.predictor, cand, self.out_hw)

    def evaluate(self, trial: Any, cand: Candidate) -> tuple[list[float], list[float]] | None:
        """A trial's result: ([proxy PSNR, predicted ms], constraints), or None for a candidate already scored."""
        if self.seen(trial.study, cand):
            return None
        psnr, ms = self.score(cand)
        trial.set_user_attr("candidate", cand.to_dict())
        return [psnr, ms], self.constraints(ms)

    def seen(self, study: Any, cand: Candidate) -> bool:
        """Whether a complete trial of `study` already scored this candidate (a repeat is not scored again)."""
        from optuna.trial import TrialState

        key = json.dumps(cand.to_dict(), sort_keys=True)
        return any(json.dumps(t.user_attrs.get("candidate"), sort_keys=True) == key
                   for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def scheme_choices(search: SearchSettings, k: int) -> list[str]:
    """The scheme labels a k x k layer's parameter offers."""
    out = []
    for scheme in search.schemes:
        if scheme == "block":
            out += [scheme_name("block", b) for b in search.blocks]
        elif scheme != "pattern" or k == 3:
            out.append(scheme)
    return out


def suggest_genome(trial: Any, space: SearchSpace, scale: int) -> Genome | None:
    """A genome from the trial's parameters; None when it has fewer real cells than the space allows."""
    head = trial.suggest_categorical("head", list(space.widths))
    cells = []
    for i in range(space.num_cells):
        block = trial.suggest_categorical(f"cells.{i}.block", list(space.blocks))
        if block == "skip":
            cells.append(Cell("skip", 0, []))
            continue
        width = trial.suggest_categorical(f"cells.{i}.width", list(space.widths))
        layers = [trial.suggest_categorical(f"cells.{i}.{block}.l{j}", list(space.layer_choices(block, j)))
                  for j in range(BLOCKS[block])]
        cells.append(Cell(block, width, layers))
    g = Genome(scale, head, space.activation, cells)
    return g if g.depth >= space.min_depth else None


def suggest_schemes(trial: Any, genome: Genome, ctx: SearchContext) -> dict[str, dict[str, Any]]:
    """A scheme for every prunable layer (dense ones omitted), at the stage-2 ratio."""
    prune = {}
    for name, cfg in searchable_layers(genome, ctx.out_hw).items():
        cell, local = name.split(".")[1], name.split(".")[2]
        block = genome.cells[int(cell)].block
        label = trial.suggest_categorical(f"cells.{cell}.{block}.{local}.scheme", scheme_choices(ctx.search, cfg.k))
        scheme, bsize = parse_scheme(label)
        if scheme != "dense" and fits(cfg, scheme, bsize):
            prune[name] = layer_prune(scheme, bsize, ctx.search.scheme_ratio)
    return prune


def precision_param(name: str, genome: Genome) -> str:
    """The Optuna parameter of a layer's precision: "head.precision", "cells.1.res.c2.precision", "tail.precision"."""
    if not name.startswith("cells."):
        return f"{name}.precision"
    _, cell, local = name.split(".", 2)
    return f"cells.{cell}.{genome.cells[int(cell)].block}.{local}.precision"


def suggest_precisions(trial: Any, genome: Genome, ctx: SearchContext) -> dict[str, str]:
    """A precision for every layer that may take one (fp32 ones omitted); {} when only fp32 is searched."""
    if ctx.search.precisions == ["fp32"]:
        return {}
    out = {}
    for name in ctx.precision_layers(genome):
        prec = trial.suggest_categorical(precision_param(name, genome), list(ctx.search.precisions))
        if prec != "fp32":
            out[name] = prec
    return out


def objective(ctx: SearchContext):
    """Optuna objective of stage 2: ([proxy PSNR, predicted ms], constraints) or None outside the space."""
    def run(trial: Any):
        genome = suggest_genome(trial, ctx.space, ctx.scale)
        if genome is None:
            return None
        cand = Candidate(genome, suggest_schemes(trial, genome, ctx), suggest_precisions(trial, genome, ctx))
        return ctx.evaluate(trial, cand)
    return run


def _best(trials: list[Any]) -> Any | None:
    """The trial with the highest proxy PSNR (ties: the faster one, then the earlier one)."""
    return max(trials, key=lambda t: (t.values[0], -t.values[1], -t.number)) if trials else None


def best_feasible(trials: list[Any]) -> Any | None:
    """The feasible trial with the highest proxy PSNR (ties: the faster one, then the earlier one)."""
    return _best([t for t in trials if feasible(t)])


def fits_budget(trial: Any) -> bool:
    """Predicted at or under budget * (1 - margin): its first stored constraint (the second is min_fill's)."""
    return constraint_of(trial)[0] <= 0


def choose(trials: list[Any]) -> tuple[Any | None, bool]:
    """(the chosen trial, whether it fills less than min_fill): best_feasible, else the best trial under the
    budget (a network that fits beats none when the space has nothing big enough); (None, False) when no trial
    fits the budget at all."""
    best = best_feasible(trials)
    if best is not None:
        return best, False
    best = _best([t for t in trials if fits_budget(t)])
    return best, best is not None


def under_fill(ctx: SearchContext, predicted_ms: float, stage: str, log: logging.Logger | None) -> dict[str, Any]:
    """The fields marking a choice that fills less than min_fill of the budget; warns the user (stderr) and the
    run's log, since the result is not what the config asked for."""
    from srcommon.progress import note

    fill = predicted_ms / ctx.budget_ms
    msg = (f"{stage}: no network of the search space fills search.min_fill ({ctx.search.min_fill:.0%}) of the "
           f"{ctx.budget_ms:g} ms budget; took the best one under budget: {predicted_ms:.2f} ms predicted, "
           f"{fill:.0%} of the budget")
    note(f"[run] warning: {msg}")
    if log is not None:
        log.warning(msg)
    return {"under_fill": True, "fill": round(fill, 4)}


def search_architectures(ctx: SearchContext, storage: Any, layout: RunLayout, *, progress: bool = True,
              log: logging.Logger | None = None) -> dict[str, Any]:
    """Run (or resume, or join) the stage-2 study, then write trials.csv, pareto.json and arch.json."""
    import optuna

    from srcommon.atomic import write_text
    from srprune.errors import InputError
    from srprune.search.study import (complete_trials, make_sampler, pareto_front, run_trials, trials_csv)

    s = ctx.search
    study = optuna.create_study(study_name=STUDY_ARCH, storage=storage, directions=["maximize", "minimize"],
                                load_if_exists=True)

    def sampler(k: int):
        return make_sampler(s.sampler, s.seed * 1_000_003 + k, s.startup_trials)

    run_trials(study, s.trials, objective(ctx), sampler, progress=progress, desc="stage 2 (arch)", log=log)
    trials = complete_trials(study)
    place = {t.number: i for i, t in enumerate(trials)}
    best, short = choose(trials)
    write_text(layout.trials_csv, trials_csv(trials, _describe if s.precisions == ["fp32"] else _describe_precision))
    front = [_record(t, place) for t in pareto_front(trials)]
    write_text(layout.pareto, json.dumps(front, indent=1) + "\n")
    if best is None:
        fastest = f"the fastest of its {len(trials)} trials takes {min(t.values[1] for t in trials):.2f} ms" \
            if trials else "it scored no trial"
        raise InputError(f"stage 2 found no network under {ctx.upper_ms:.2f} ms predicted (budget_ms "
                         f"{ctx.budget_ms:g} less the {s.margin:.0%} margin): {fastest}, over the budget: raise "
                         "budget_ms or search.trials")
    result = {**_record(best, place), "trials": len(trials), "feasible": sum(1 for t in trials if feasible(t))}
    if short:
        result.update(under_fill(ctx, best.values[1], "stage 2", log))
    write_text(layout.arch, json.dumps(result, indent=1) + "\n")
    return result


def _record(t: Any, place: dict[int, int]) -> dict[str, Any]:
    return {"trial": place[t.number], "proxy_psnr": t.values[0], "predicted_ms": t.values[1], **t.user_attrs["candidate"]}


def _describe(t: Any) -> dict[str, Any]:
    cand = t.user_attrs["candidate"]
    g = cand["genome"]
    cells = " ".join("skip" if c["block"] == "skip" else f"{c['block']}{c['width']}" for c in g["cells"])
    pruned = " ".join(f"{k}:{scheme_name(v['scheme'], v.get('block'))}@{v['ratio']:.2f}"
                      for k, v in cand["prune"].items())
    return {"head": g["head"], "cells": cells, "pruned": pruned or "-"}


def _describe_precision(t: Any) -> dict[str, Any]:
    """_describe plus the precision column (searches with precisions beyond fp32)."""
    return {**_describe(t), "precision": precision_text(t.user_attrs["candidate"].get("precision", {}))}


def precision_text(precision: dict[str, str]) -> str:
    """"cells.0.conv:int8 tail:int8" (fp32 layers omitted), "-" when every layer is fp32."""
    return " ".join(f"{k}:{v}" for k, v in precision.items()) or "-"
