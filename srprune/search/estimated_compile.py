"""The compile stage without a device (`latency.source: estimate`): the static estimate of the compiled model.

Why the model's own kernels: the table's pruned entries were estimated on the pruner's masks of random
weights, the compiled model's sparse kernels follow its trained weights; estimating each layer of the
deployed model with its own weights (as `srprune latency estimate` does) is this mode's stand-in for
timing the compiled network, and it is labelled as an estimate everywhere.
"""

from __future__ import annotations

from typing import Any

from srprune.layout import RunLayout
from srprune.search.candidate import Candidate, latency_ms, layer_breakdown
from srprune.search.compile_result import common_result
from srprune.search.config import RunConfig


def estimate_final(cfg: RunConfig, layout: RunLayout, target: Any, done: Any, cand: Candidate) -> dict[str, Any]:
    """compiled/TARGET/latency.json for an estimated run: predicted (table) and estimated (own kernels) ms."""
    from srprune.latency import conv_weights, latency_prune, load_predictor, named_genome_layers
    from srprune.latency.estimated import estimate_layers, make_estimator

    out_hw = cfg.out_hw
    est = make_estimator(target, str(cfg.latency.cpu))
    predictor = load_predictor(layout.root, target.name, target.threads)
    named = named_genome_layers(cand.genome, out_hw, latency_prune(cand.prune), cand.precision)
    weights = conv_weights(done.model)
    rows = estimate_layers(est, [(n, c, weights[n] if c.scheme != "dense" else None) for n, c in named])
    breakdown = layer_breakdown(predictor, cand, out_hw)
    for row, r in zip(breakdown, rows):
        row["estimated_ms"] = r["ms"]
    total = sum(r["ms"] for r in rows)
    if done.compiled is not None:  # tvm format; an int8 / mixed model is an int8 c-lib, checked on the host if it can
        check, kernels = (done.compiled.check or {}).get("max_abs_diff"), done.compiled.fused_convs
    else:
        check, kernels = (done.manifest.get("numerics") or {}).get("max_abs_diff"), done.manifest.get("kernels")
    return common_result(cfg, target, done, latency_ms(predictor, cand, out_hw), total, breakdown,
                         estimated_ms=total, latency=est.cpu.label(), estimate=est.describe(), max_abs_diff=check,
                         fused_convs=kernels)
