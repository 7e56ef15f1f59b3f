"""`srprune latency estimate`: per-layer and whole-network latency of a searched network on a named CPU, static.

    srprune latency estimate --target android-arm64 --cpu cortex-a77 runs/demo
    srprune latency estimate --target android-arm64 --cpu snapdragon-865 model.pt --json
    srprune latency estimate --target host --cpu host '{"scale": 2, ...genome...}'
    srprune latency estimate --target android-arm64-dotprod --cpu snapdragon-865 model_int8.pt   (srprune quantize)

Nothing is measured: each layer is compiled for the target as the latency table builds it and
llvm-mca-19 predicts its cycles on the CPU's scheduling model (compiler.latency.estimate). The whole
network is the sum of its layers (no calibration: nothing was measured to fit one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from srprune.cli.latency_cmd import _frame, _genome_or_model, _target, latency
from srprune.errors import InputError


def _layers(spec: str, out_hw: tuple[int, int]) -> tuple[list[tuple[str, Any, Any]] | Any, str]:
    """(name, LayerConfig, weight or None) per layer of a run folder's final model, a model file or a genome; for a
    quantised model file (srprune quantize) the model itself (its int8 c-lib's kernels are estimated)."""
    path = Path(spec)
    if path.is_dir():
        from srprune.layout import RunLayout

        model_file = RunLayout(path).final_model
        if not model_file.exists():
            raise InputError(f"{spec}: no final model in this run folder ({model_file} missing; run the pipeline first)")
        spec = str(model_file)
    text = spec.strip()
    from srprune.latency import latency_prune, named_genome_layers

    if text.startswith("{") or Path(spec).suffix == ".json":
        layers, name = _genome_or_model(spec, out_hw)  # checks the genome; names come from it below
        data = json.loads(text if text.startswith("{") else Path(spec).read_text())
        genome = data["genome"] if isinstance(data, dict) and "genome" in data and "cells" not in data else data
        return [(n, c, None) for n, c in named_genome_layers(genome, out_hw)], name
    from srprune.models import deploy, resolve_model

    net, info = resolve_model(spec, None)
    from srprune.quant.qmodel import is_quantized

    if is_quantized(net):
        return net, info.name
    genome = getattr(net, "genome", None)
    if not isinstance(genome, dict):
        raise InputError(f"{spec}: the estimate needs a searched network (a 'genome' model), got {info.name}")
    cand = (info.meta or {}).get("candidate") or {}
    named = named_genome_layers(genome, out_hw, latency_prune(cand.get("prune") or {}))
    modules = dict(deploy(net).named_modules())
    rows = []
    for name, c in named:
        weight = modules[name].weight.detach().numpy() if c.scheme != "dense" and name in modules else None
        rows.append((name, c, weight))
    return rows, info.name


@latency.command("estimate")
@click.argument("spec", metavar="RUN|MODEL|GENOME")
@click.option("--target", "-t", default="android-arm64", show_default=True, help="Target the code is built for.")
@click.option("--cpu", required=True,
              help="Core (cortex-a55, cortex-a76, cortex-a77, cortex-a78, cortex-x1), SoC (snapdragon-865, ...) "
                   "or, on target host, 'host'.")
@click.option("--size", default="1280x720", show_default=True, help="Output frame size WIDTHxHEIGHT.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads (default: the target's).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def estimate_cmd(spec: str, target: str, cpu: str, size: str, threads: int | None, as_json: bool) -> None:
    """Static latency estimate (llvm-mca on the emitted code) of a network on a named CPU, per layer and whole."""
    from srprune.latency.estimated import check_cpu, estimate_int8_network, estimate_layers, make_estimator

    tspec = _target(target, threads)
    out_hw = _frame(size)
    check_cpu(cpu, tspec, "--cpu")
    layers, name = _layers(spec, out_hw)
    est = make_estimator(tspec, cpu)
    rows = estimate_layers(est, layers) if isinstance(layers, list) else estimate_int8_network(est, layers, out_hw)
    total = sum(r["ms"] for r in rows)
    what = est.cpu.label()
    if as_json:
        click.echo(json.dumps({"model": name, "target": tspec.name, "output_size": [out_hw[1], out_hw[0]],
                               "estimate": est.describe(), "total_ms": total, "latency": what, "layers": rows}))
        return
    cores = ", ".join(f"{c['core']} @ {c['ghz']:g} GHz (llvm-mca {c['mca']})" for c in est.describe()["cores"][:1])
    click.echo(f"{name}: {total:.2f} ms per {out_hw[1]}x{out_hw[0]} frame, {what}; {tspec.name}, "
               f"{est.threads} threads, slowest core used: {_slowest(est)}; first core: {cores}")
    for r in rows:
        click.echo(f"  {r['name']:<14} {r['layer']:<52} {r['ms']:9.3f} ms (memory {r['memory_ms']:7.3f})  "
                   f"{r['macs'] / 1e6:9.1f} MMAC")
    memory = est.describe()["memory"]
    click.echo(f"  memory: each kernel's bytes at {memory['gbps']:g} GB/s ({memory['source']}), added" if memory else
               "  memory: not modelled (a core names no memory system: name a SoC, e.g. snapdragon-865)")
    click.echo("  not modelled: cache levels, thread start-up, frequency scaling (docs/latency_estimate.md)")


def _slowest(est: Any) -> str:
    core, ghz = min(est.used, key=lambda c: c[1])
    return f"{core.name} @ {ghz:g} GHz"
