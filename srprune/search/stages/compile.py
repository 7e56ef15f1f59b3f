"""Stage `compile`: compile final/model.pt for the target, check numerics, measure its real latency.

(Named `deploy` before: that word also meant re-parameterising a model, srprune.models.deploy, and shipping it to
a phone, `srprune android`.)

The numerics check is <= 1e-4 against PyTorch; writes RUN/compiled/TARGET/ and times the whole network (median
of interleaved runs) and each layer alone, recording predicted vs measured in RUN/compiled/TARGET/latency.json.
"""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING, Any

from srcommon.atomic import write_text
from srcommon.owned import OwnedFolder
from srprune.search.candidate import Candidate, layer_breakdown
from srprune.search.config import RunConfig
from srprune.layout import RunLayout
from srprune.search.stages.base import Stage

if TYPE_CHECKING:
    from srprune.search.pipeline import Run


def run(run: "Run", fresh: bool) -> dict[str, Any]:
    """Compile and measure; the summary is what the replanning and the run's headline read."""
    r = compile_final(run.config, run.layout, run.target, progress=run.progress)
    keys = ("predicted_ms", "measured_ms", "estimated_ms", "budget_ms", "within_budget", "budget_fill",
            "max_abs_diff", "latency")
    return {k: r[k] for k in keys if k in r}


def compile_final(cfg: RunConfig, layout: RunLayout, target: Any, *, rounds: int = 25, progress: bool = True) -> dict:
    """Compile final/model.pt for the target (numerics checked), write the artifact, measure its latency."""
    from compiler.latency.measure import built_network, interleaved
    from srprune.export import ExportRequest, export
    from srprune.latency import latency_prune, load_predictor, make_runner, named_genome_layers, own_layer_builds
    from srprune.search.candidate import latency_ms

    out_hw = cfg.out_hw
    done = export(ExportRequest(str(layout.final_model), target, layout.compiled, size=(out_hw[1], out_hw[0]),
                                force=True))
    compiled, manifest, shape = done.compiled, done.manifest, done.shape
    cand = Candidate.from_dict(done.info.meta["candidate"])
    if cfg.latency.source == "estimate":  # no device: the static estimate of the compiled model's own kernels
        from srprune.search.estimated_compile import estimate_final

        result = estimate_final(cfg, layout, target, done, cand)
        OwnedFolder(layout.compiled, "compile").add(layout.latency_report.name)
        write_text(layout.latency_report, json.dumps(result, indent=1) + "\n")
        return result
    runner = make_runner(target, cfg.rpc)
    predictor = load_predictor(layout.root, target.name, target.threads)
    net_timer = runner.timer(built_network(compiled))
    named = named_genome_layers(cand.genome, out_hw, latency_prune(cand.prune))
    layer_timers = [runner.timer(b) for b in own_layer_builds(done.model, named, target, progress=progress)]
    samples = interleaved([net_timer] + layer_timers, rounds)
    measured = statistics.median(samples[0])
    breakdown = layer_breakdown(predictor, cand, out_hw)
    for row, s in zip(breakdown, samples[1:]):
        row["measured_ms"] = statistics.median(s)
    budget = float(cfg.budget_ms)
    result = {"target": target.name, "threads": target.threads, "output_size": [out_hw[1], out_hw[0]],
              "input_shape": list(shape), "budget_ms": budget, "predicted_ms": latency_ms(predictor, cand, out_hw),
              "measured_ms": measured, "min_ms": min(samples[0]), "max_ms": max(samples[0]),
              "samples_ms": samples[0], "rounds": rounds, "within_budget": measured <= budget,
              "budget_fill": measured / budget, "max_abs_diff": compiled.check["max_abs_diff"],
              "fused_convs": compiled.fused_convs, "library": manifest["library"], "layers": breakdown}
    OwnedFolder(layout.compiled, "compile").add(layout.latency_report.name)  # srprune's own file, for --force
    write_text(layout.latency_report, json.dumps(result, indent=1) + "\n")
    return result


STAGE = Stage(
    name="compile",
    reads=("target", "threads", "rpc", "output_size", "budget_ms", "latency.source", "latency.cpu"),
    after=("finetune", "latency"),
    writes=lambda layout: [layout.compiled],
    run=run,
    reads_model=True,
)
