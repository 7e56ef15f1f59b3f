"""Stage `compile`: compile final/model.pt for the target, check numerics, measure its real latency.

(Named `deploy` before: that word also meant re-parameterising a model, srprune.models.deploy, and shipping it to
a phone, `srprune android`.)

The numerics check is <= 1e-4 against PyTorch; writes RUN/compiled/TARGET/ and times the whole network (median
of interleaved runs) and each layer alone, recording predicted vs measured in RUN/compiled/TARGET/latency.json.
A winner with int8 layers (final/model.pt is then the "quantized" model, int8 or mixed int8 / fp32) compiles to the
int8 c-lib (compiler.int8.network: its fp32 layers are the fp32 kernels with the codes converted at their edges),
checked against the numpy reference of the integer contract, and the c-lib itself is timed on host targets, each
timed run a fresh process (its srmodel_bench: compiler.clib.runner.process_timer, why there). On an
arm64 target over RPC the c-lib cannot be timed (TVM's RPC server loads TVM modules, not a C library): its numerics
are checked on a host build of the same network, and its time is the prediction from the layer table measured on
the device, labelled as such, until `srprune android bench` times it on the phone.
"""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING, Any

from compiler.latency.runners import interleaved
from srcommon.atomic import write_text
from srcommon.owned import OwnedFolder
from srcommon.progress import note
from srprune.search.candidate import Candidate, layer_breakdown
from srprune.search.compile_result import common_result
from srprune.search.config import RunConfig
from srprune.layout import RunLayout
from srprune.search.stages.base import Stage

if TYPE_CHECKING:
    from srprune.search.pipeline import Run


def run(run: "Run", fresh: bool) -> dict[str, Any]:
    """Compile and measure; the summary is what the replanning and the run's headline read."""
    r = compile_final(run.config, run.layout, run.target, progress=run.progress)
    keys = ("predicted_ms", "measured_ms", "estimated_ms", "budget_ms", "within_budget", "budget_fill",
            "max_abs_diff", "latency", "time_it")
    return {k: r[k] for k in keys if k in r}


def compile_final(cfg: RunConfig, layout: RunLayout, target: Any, *, rounds: int = 25, progress: bool = True) -> dict:
    """Compile final/model.pt for the target (numerics checked), write the artifact, measure its latency."""
    from compiler.clib.runner import process_timer
    from compiler.latency.measure import built_network
    from compiler.latency.runners import POOL_SETTLE_S
    from srprune.models.modelfile import read_model_file
    from srprune.quant.qmodel import NAME as QUANTIZED
    from srprune.export import ExportRequest, export
    from srprune.latency import latency_prune, load_predictor, make_runner, named_genome_layers, own_layer_builds
    from srprune.latency.layers import fused_in_c_lib
    from srprune.search.candidate import latency_ms

    out_hw = cfg.out_hw
    quantised = read_model_file(layout.final_model)["arch"]["name"] == QUANTIZED
    done = export(ExportRequest(str(layout.final_model), target, layout.compiled, size=(out_hw[1], out_hw[0]),
                                force=True, fmt="c-lib" if quantised else "tvm"))
    compiled, manifest = done.compiled, done.manifest
    cand = Candidate.from_dict(done.info.meta["candidate"])
    if cfg.latency.source == "estimate":  # no device: the static estimate of the compiled model's own kernels
        from srprune.search.estimated_compile import estimate_final

        result = estimate_final(cfg, layout, target, done, cand)
        OwnedFolder(layout.compiled, "compile").add(layout.latency_report.name)
        write_text(layout.latency_report, json.dumps(result, indent=1) + "\n")
        return result
    predictor = load_predictor(layout.root, target.name, target.threads)
    if quantised and target.cross:
        result = predicted_c_lib(cfg, target, done, cand, predictor, layout.compiled)
        OwnedFolder(layout.compiled, "compile").add(layout.latency_report.name)
        write_text(layout.latency_report, json.dumps(result, indent=1) + "\n")
        return result
    runner = make_runner(target, cfg.rpc)
    if quantised:  # a fresh process per timed run, as an app runs it; after TVM-timed layers, their pool asleep
        net_timer = process_timer(layout.compiled, target.threads, settle_s=POOL_SETTLE_S)
    else:
        net_timer = runner.timer(built_network(compiled))
    named = named_genome_layers(cand.genome, out_hw, latency_prune(cand.prune), cand.precision)
    # the int8 c-lib slices / pads residuals in the consumer's write-back: its adapters are no kernels (0 ms)
    fused = [quantised and fused_in_c_lib(c) for _, c in named]
    builds = iter(own_layer_builds(done.model, [nc for nc, f in zip(named, fused) if not f], target,
                                   progress=progress))
    layer_timers = [None if f else runner.timer(next(builds)) for f in fused]
    span_s = cfg.latency.span_s
    samples = interleaved([net_timer] + [t for t in layer_timers if t is not None], rounds, span_s)
    net_samples, again = confirm_outside_window(samples[0], net_timer, rounds, span_s, cfg.budget_ms,
                                                cfg.search.min_fill, progress)
    measured = statistics.median(net_samples)
    breakdown = layer_breakdown(predictor, cand, out_hw)
    timed = iter(samples[1:])
    for row, t in zip(breakdown, layer_timers):
        row["measured_ms"] = statistics.median(next(timed)) if t is not None else 0.0
    if quantised:  # numerics against the integer contract's numpy reference (compiler.int8.network)
        checks = {"max_abs_diff": manifest["numerics"]["max_abs_diff"], "kernels": manifest["kernels"],
                  "within_one_step": manifest["numerics"].get("within_one_step")}
    else:
        checks = {"max_abs_diff": compiled.check["max_abs_diff"], "fused_convs": compiled.fused_convs}
    result = common_result(cfg, target, done, latency_ms(predictor, cand, out_hw), measured, breakdown,
                           measured_ms=measured, min_ms=min(net_samples), max_ms=max(net_samples),
                           samples_ms=net_samples, rounds=rounds, span_s=span_s, **again, **checks)
    OwnedFolder(layout.compiled, "compile").add(layout.latency_report.name)  # srprune's own file, for --force
    write_text(layout.latency_report, json.dumps(result, indent=1) + "\n")
    return result


def confirm_outside_window(first: list[float], net_timer: Any, rounds: int, span_s: float, budget_ms: float,
                           min_fill: float, progress: bool = True) -> tuple[list[float], dict[str, Any]]:
    """The network's samples, timed again over another `span_s` and pooled when the median of the `first` ones
    lies outside the search window [min_fill, 1] x budget; with what was done, for latency.json.

    Why: a measurement outside the window makes the run replan (fine-tune, compile and measure another network,
    minutes); on a machine whose speed shifts for seconds at a time a single span misses the window often even when
    the prediction is right, and a second span pooled with the first about halves how often (docs/benchmarks.md
    `measurement_noise`). A result inside the window is kept as it is.
    """
    first_ms = statistics.median(first)
    if span_s <= 0 or budget_ms * min_fill <= first_ms <= budget_ms:
        return first, {}
    side = "over" if first_ms > budget_ms else "under"
    if progress:
        note(f"[compile] {first_ms:.1f} ms, {side} the window of the {budget_ms:g} ms budget: timing the network "
             f"again over {span_s:g} s before deciding")
    again = interleaved([net_timer], rounds, span_s)[0]
    pooled = first + again
    return pooled, {"first_ms": first_ms, "timed_again": {"reason": side, "rounds": rounds,
                                                           "median_ms": statistics.median(again),
                                                           "pooled_ms": statistics.median(pooled)}}


PREDICTED = "predicted (its layers measured on the device)"


def predicted_c_lib(cfg: RunConfig, target: Any, done: Any, cand: Candidate, predictor: Any,
                    folder: Any) -> dict[str, Any]:
    """compiled/TARGET/latency.json of an int8 / mixed c-lib for a device over RPC (module docstring): numerics
    from its host check, time = the table's prediction (layers measured on the device, calibrated), labelled."""
    from srprune.search.candidate import latency_ms

    out_hw = cfg.out_hw
    ms = latency_ms(predictor, cand, out_hw)
    numerics = done.manifest.get("numerics") or {}
    if target.name.startswith("android"):
        time_it = f"srprune android stage {cfg.run_dir} --target {target.name}, then srprune android bench"
    else:
        time_it = f"copy {folder} to the device and run its srmodel_bench"
    return common_result(cfg, target, done, ms, ms, layer_breakdown(predictor, cand, out_hw), estimated_ms=ms,
                         latency=PREDICTED, time_it=time_it,
                         max_abs_diff=numerics.get("max_abs_diff"), within_one_step=numerics.get("within_one_step"),
                         checked_on=numerics.get("checked_on"), kernels=done.manifest.get("kernels"))


STAGE = Stage(
    name="compile",
    reads=("target", "threads", "rpc", "output_size", "budget_ms", "latency.source", "latency.cpu", "latency.span_s",
           "search.min_fill"),
    after=("finetune", "latency"),
    writes=lambda layout: [layout.compiled],
    run=run,
    reads_model=True,
)
