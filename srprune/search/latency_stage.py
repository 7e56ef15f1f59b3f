"""The latency stage: the target's layer table for the search space, its pruned kernels, and the calibration.

Runs first, before the supernet, because it decides whether the budget is possible at all: a budget
below the fastest network of the space is refused here, after a few minutes of measuring instead
of after the supernet's training. The table resumes after a kill (it is saved after every chunk).

What lives here and not in srprune.latency: the search's own knowledge of pruning, i.e. which pruned
layers to time (`sparse_configs`: the schemes, block sizes and ratios the search can pick) and on which
weights (`pruned_weight`: the masks the search's pruner makes). `pruned_kernels` hands both to
srprune.latency's `build_latency_model`, which this stage and `srprune latency build` share.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compiler.latency.config import LayerConfig
from srprune.errors import InputError
from srprune.latency import PrunedKernels, in_precisions, lr_size
from srprune.search.candidate import (Candidate, apply_masks, fits, latency_ms, layer_prune, pruning_spec,
                                      scheme_ratios, searchable_layers)
from supernet.blocks import deployed_kernel_sizes
from supernet.space import Genome, SearchSpace

# Names the weights pruned layers are timed on (stored in the table header; change it when
# `pruned_weight` changes what it makes, so that tables re-measure their pruned entries).
PRUNED_WEIGHTS = "srprune.pruning masks (search spec) on seeded N(0,1) weights, v1"


def sparse_configs(space: SearchSpace, search: dict[str, Any], out_hw: tuple[int, int],
                   precisions: tuple[str, ...] | list[str] = ("fp32",)) -> list[LayerConfig]:
    """Pruned layers to time (each beside its dense twin) so the predictor has a speed factor per scheme.

    One representative conv (the middle trunk width, ReLU) per kernel size the space uses, for every
    scheme, block size and ratio the search can pick, in each of `precisions` (each precision's sparse kernel
    exploits other zeros, so each has its own factors, measured against its own dense twin).
    """
    hw = lr_size(out_hw, min(space.scales))
    w = space.widths[len(space.widths) // 2]
    kernels = deployed_kernel_sizes(space.blocks)
    ratios = sorted(set(search["ratios"]) | {float(search["scheme_ratio"])})
    out = []
    for k in kernels:
        dense = LayerConfig("conv", w, w, hw[0], hw[1], k=k, pad=k // 2, act="relu")
        for scheme in search["schemes"]:
            if scheme == "dense" or (scheme == "pattern" and k != 3):
                continue
            blocks = [tuple(b) for b in search["blocks"]] if scheme == "block" else [None]
            for block in blocks:
                if not fits(dense, scheme, block):
                    continue
                rs = scheme_ratios(scheme, ratios)
                out.append(dense)
                for r in rs:
                    p = layer_prune(scheme, block, r)
                    out.append(LayerConfig("conv", w, w, hw[0], hw[1], k=k, pad=k // 2, act="relu", scheme=scheme,
                                           ratio=p["ratio"], block=tuple(p.get("block") or (0, 0))))
    return in_precisions(list({c.key(): c for c in out}.values()), precisions)


class _OneConv(torch.nn.Module):
    """A model of one conv, the unit the pruner works on (its module name is the spec's layer name)."""

    def __init__(self, cfg: LayerConfig) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(cfg.cin, cfg.cout, cfg.k, padding=cfg.pad, groups=cfg.groups, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.conv(x)


def pruned_weight(cfg: LayerConfig, seed: int = 0) -> np.ndarray:
    """The OIHW weight of pruned layer `cfg` as the search prunes it: its pruner's mask on a seeded random weight.

    Why the real pruner: a sparse kernel's code follows the zeros (block pruning drops the same
    columns in every block, balanced across blocks; pattern pruning learns a library of patterns per
    layer), so the table must time that structure, not a look-alike. The spec is the one the search
    gives its candidates (`pruning_spec`), and `apply_masks` is the call that prunes them. A random
    weight gives the structure's form (balanced columns, at most 8 four-tap patterns); which columns and
    patterns a trained layer keeps depends on its values, which the table cannot know in advance.
    """
    with torch.random.fork_rng(devices=[]):  # the conv's default init must not move the caller's torch RNG
        model = _OneConv(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.conv.weight.copy_(torch.randn(model.conv.weight.shape, generator=gen))
    block = tuple(cfg.block) if cfg.scheme == "block" else None
    apply_masks(model, pruning_spec({"conv": layer_prune(cfg.scheme, block, cfg.ratio)}))
    return model.conv.weight.detach().numpy().copy()


def random_pruned_network(genome: Genome, rng: np.random.Generator, search: dict[str, Any],
                          out_hw: tuple[int, int]) -> tuple[dict[str, dict], torch.nn.Module]:
    """`genome`'s deployed network (seeded weights) with each prunable layer given a random scheme, block size and
    ratio among the search's choices, masked by the search's own pruner: a network like those a run deploys, for
    the latency model's calibration and validation. Returns ({layer: prune}, model)."""
    from supernet.standalone import GenomeNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**31)))
        model = GenomeNet(genome).deploy().eval()
    prune = {}
    for name, c in searchable_layers(genome, out_hw).items():
        scheme = str(rng.choice(search["schemes"]))
        block = tuple(search["blocks"][int(rng.integers(len(search["blocks"])))]) if scheme == "block" else None
        if scheme != "dense" and fits(c, scheme, block):
            prune[name] = layer_prune(scheme, block, float(rng.choice(search["ratios"])))
    apply_masks(model, pruning_spec(prune))
    return prune, model


def pruned_kernels(space: SearchSpace, search: dict[str, Any], out_hw: tuple[int, int],
                   precisions: tuple[str, ...] | list[str] = ("fp32",)) -> PrunedKernels:
    """What the latency model times of the search's pruning: `sparse_configs` (in `precisions`) on
    `pruned_weight`s (the same masks whatever the precision: an int8 layer is the pruned weight quantised), and
    randomly pruned networks for its calibration (`random_pruned_network`)."""
    return PrunedKernels(sparse_configs(space, search, out_hw, precisions), pruned_weight, PRUNED_WEIGHTS,
                         functools.partial(random_pruned_network, search=search, out_hw=out_hw))


def fastest_ms(predictor: Any, space: SearchSpace, search: dict[str, Any], scale: int,
               out_hw: tuple[int, int]) -> float:
    """Predicted time of the fastest network the search can reach: the smallest genome, pruned the most, in each
    precision the search may give every layer that can take one."""
    g = space.smallest(scale)
    prunes = [{}]
    top = max(search["ratios"])
    for scheme in search["schemes"]:
        for block in ([tuple(b) for b in search["blocks"]] if scheme == "block" else [None]):
            if scheme == "dense":
                continue
            prune = {n: layer_prune(scheme, block, top) for n, c in searchable_layers(g, out_hw).items()
                     if fits(c, scheme, block)}
            if prune:
                prunes.append(prune)
    precisions = [{}]
    if search.get("precisions", ["fp32"]) != ["fp32"]:
        from srprune.models.registry import deploy
        from srprune.quant.plan import precision_layers
        from supernet.standalone import GenomeNet

        names = precision_layers(deploy(GenomeNet(g)).eval())
        precisions += [dict.fromkeys(names, p) for p in search["precisions"] if p != "fp32"]
    return min(latency_ms(predictor, Candidate(g, prune, prec), out_hw) for prune in prunes for prec in precisions)


def check_budget(predictor: Any, cfg: dict[str, Any], space: SearchSpace, out_hw: tuple[int, int]) -> float:
    """Refuse a budget below the fastest network of the space (one line); return that network's time."""
    fast = fastest_ms(predictor, space, cfg["search"], int(cfg["scale"]), out_hw)
    upper = float(cfg["budget_ms"]) * (1.0 - float(cfg["search"]["margin"]))
    if fast > upper:
        raise InputError(f"budget_ms {cfg['budget_ms']} is impossible on {cfg['target']}: the fastest network of the "
                         f"search space takes {fast:.1f} ms per {out_hw[1]}x{out_hw[0]} frame (predicted), and the "
                         f"search keeps a {cfg['search']['margin']:.0%} margin")
    return fast


def run_stage(cfg: dict[str, Any], run_dir: Path, target: Any, out_hw: tuple[int, int], *,
              progress: bool = True) -> dict[str, Any]:
    """Build (or complete) RUN/latency/TARGET: table, pruned-kernel entries, calibration; check the budget."""
    from srprune.latency import build_latency_model, load_predictor, make_runner

    space = SearchSpace.from_dict(cfg["supernet"]["space"])
    lat = cfg["latency"]
    if lat.get("source") == "estimate":
        return _estimate_stage(cfg, run_dir, target, out_hw, space, progress)
    runner = make_runner(target, cfg["rpc"])
    precisions = tuple(cfg["search"].get("precisions") or ("fp32",))  # every precision the search may pick
    built = build_latency_model(run_dir, target, runner, space, out_hw,
                                pruned=pruned_kernels(space, cfg["search"], out_hw, precisions),
                                repeat=int(lat["repeat"]), calibrate_n=int(lat["calibrate"]), recalibrate=True,
                                progress=progress, precisions=precisions)
    cal = built.calibration
    predictor = load_predictor(run_dir, target.name, target.threads)
    fast = check_budget(predictor, cfg, space, out_hw)
    summary = {"layers": len(built.table.entries), "measured_now": built.measured, "fastest_ms": fast,
               "calibration": {"alpha": cal.alpha, "beta_ms": cal.beta_ms, "gamma_ms": cal.gamma_ms}}
    if cal.int8 is not None:
        summary["calibration_int8"] = {"alpha": cal.int8.alpha, "beta_ms": cal.int8.beta_ms,
                                       "gamma_ms": cal.int8.gamma_ms}
    return summary


def _estimate_stage(cfg: dict[str, Any], run_dir: Path, target: Any, out_hw: tuple[int, int], space: SearchSpace,
                    progress: bool) -> dict[str, Any]:
    """`latency.source: estimate`: the table from llvm-mca on the emitted code (no device, no calibration)."""
    from srprune.latency import load_predictor
    from srprune.latency.estimated import build_estimated_table

    precisions = tuple(cfg["search"].get("precisions") or ("fp32",))
    table, n = build_estimated_table(run_dir, target, cfg["latency"]["cpu"], space, out_hw,
                                     pruned=pruned_kernels(space, cfg["search"], out_hw, precisions),
                                     progress=progress, precisions=precisions)
    predictor = load_predictor(run_dir, target.name, target.threads)
    fast = check_budget(predictor, cfg, space, out_hw)
    return {"layers": len(table.entries), "estimated_now": n, "fastest_ms": fast,
            "latency": table.header["estimate"]["label"], "calibration": None}
