"""int8 entries of the latency table against whole int8 networks: is the sum of a network's int8 layers its time?

Issue 19 (int8 entries of the latency table), the ground issue 20's precision search stands on. For `--n` random
genomes of configs/demo.yaml's space (seeded), each GenomeNet (its default random init, deployed) is quantised
with srprune.quant's PTQ (min-max ranges over a few random LR images: the numbers do not change the code or its
speed) and built as what `srprune compile` ships for an int8 model, the int8 c-lib (`build_int8_clib`, host
target). Every int8 layer entry those networks need is built with `compiler.latency.measure.build_layer` (the
table's own code), and the layers and the networks are timed in the same interleaved rounds (one call of each per
round, after a warm-up), so that load hits both sides of a round alike. Per network and round: the sum of its
layers' times in that round (the uncalibrated prediction, `Predictor.sum_ms` of int8 entries) over the network's
time; reported as median [min, max] over rounds, and the networks' Spearman between median sum and median time.

Usage: python benchmarks/latency_int8.py [--n 6] [--rounds R] [--threads N] [--json FILE] [--doc] [--config CFG]
       python benchmarks/latency_int8.py --reuse FILE [--doc]   (report a --json file without measuring)
(--doc rewrites the `latency_int8` section of docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import add_timing_args, machine, publish  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Reading of the run in docs/benchmarks.md (written by hand after it; update it with the numbers when re-running).
NOTES = (
    "Reading (2026-12-06, measured under load; the lead may re-run it quiet). Two more runs the same day: 1 thread, "
    "load 8.0 to 6.9: sum/measured 0.923 to 0.970 (median 0.949), Spearman 0.943; 2 threads, load 9.3 to 13.0: "
    "0.757 to 1.033 (median 0.827), Spearman 0.771, per-round ratios down to 0.27: with more runnable threads than "
    "cores every parallel kernel waits at its barrier for a descheduled thread, a cost per kernel call that a "
    "layer timed alone does not see in the same way, so loaded multi-thread numbers say little; at 1 thread the sum "
    "of int8 entries is within about 10% of the int8 c-lib and ranks the networks as they measure. Where the time "
    "goes: the int8 tail entry (127 to 143 ms at every width) is most of each network, and nearly all of it is the "
    "bicubic skip kernel (`compiler.int8.network.skip_primfunc`, scalar: 25 taps x 12 channels per LR pixel), not "
    "the tail conv; vectorising that kernel is what whole int8 GenomeNets need next (issue 19), and the table "
    "will show it (the tail entry times that kernel)."
)


def _shown(path: Path) -> str:
    """A path as the doc names it: relative to the repository where it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _quantised(genome, seed: int):
    """The genome's deployed GenomeNet (seeded default init) after PTQ on 4 random LR images."""
    import torch

    from srprune.quant.quantize import QuantConfig, quantize_model
    from supernet.standalone import GenomeNet

    torch.manual_seed(seed)
    net = GenomeNet(genome).eval()
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(4)]
    q, _ = quantize_model(net, images, QuantConfig(calib_images=4), progress=False)
    return q


def run(config: Path, n: int, rounds: int, threads: int | None, seed: int) -> dict:
    """Build the networks and their int8 layer entries, time all interleaved, return per-network stats."""
    from compiler.clib.runner import CLib
    from compiler.int8.network import build_int8_clib
    from compiler.latency.measure import build_layer
    from compiler.latency.runners import POOL_SETTLE_S, LocalRunner, interleaved
    from compiler.targets import get_target
    from srprune.frame import parse_size
    from srprune.latency import genome_layers, lr_size, random_genomes
    from srprune.quant.deploy import to_int8_network
    from srprune.search.config import load
    from supernet.space import SearchSpace

    cfg = load(config, run_dir=Path("/tmp/unused"))
    target = get_target(cfg["target"], threads or cfg["threads"])
    w, h = parse_size(cfg["output_size"])
    space = SearchSpace.from_dict(cfg["supernet"]["space"])
    genomes = random_genomes(space, n, seed)
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    layers = {g.to_json(): genome_layers(g, (h, w), precision="int8") for g in genomes}
    distinct = {c.key(): c for ls in layers.values() for c in ls if c.op != "adapter"}
    built, kernels = {}, {}
    for key, c in distinct.items():
        b = build_layer(c, target)
        built[key], kernels[key] = b, b.extra["kernel"]
        print(f"[layer] {key}: {b.extra['kernel']}", file=sys.stderr, flush=True)
    runner = LocalRunner(target.threads)
    keys = list(built)
    timers = [runner.timer(built[k]) for k in keys]
    libs, isa = [], ""
    with tempfile.TemporaryDirectory(prefix="latency-int8-") as tmp:
        for i, g in enumerate(genomes):
            lh, lw = lr_size((h, w), g.scale)
            manifest = build_int8_clib(to_int8_network(_quantised(g, seed + i)), (1, 3, lh, lw), target,
                                       Path(tmp) / f"net{i}", check=False, name=f"genome {i}")
            isa = manifest["int8_isa"]
            lib = CLib(Path(tmp) / f"net{i}" / manifest["library"])
            lib.set_threads(target.threads)
            libs.append(lib)
            print(f"[net] {i}: {len(layers[g.to_json()])} layers, {isa}", file=sys.stderr, flush=True)
        net_timers = [lib.timer(settle_s=POOL_SETTLE_S) for lib in libs]  # other pools asleep first
        t0 = time.perf_counter()
        samples = interleaved(timers + net_timers, rounds)
        timing_s = time.perf_counter() - t0
        for lib in libs:
            lib.close()
    layer_s = {k: np.asarray(s) for k, s in zip(keys, samples[:len(keys)])}
    rows = []
    for g, net_s in zip(genomes, samples[len(keys):]):
        ls = layers[g.to_json()]
        per_round = sum((layer_s[c.key()] for c in ls if c.op != "adapter"), np.zeros(rounds))
        net = np.asarray(net_s)
        ratio = per_round / net
        rows.append({"genome": g.to_dict(), "blocks": [c.block for c in g.cells], "widths": [c.width for c in g.cells],
                     "layers": len(ls), "adapters": sum(c.op == "adapter" for c in ls),
                     "sparse_layers": sum(kernels[c.key()].endswith("-sparse") for c in ls if c.op != "adapter"),
                     "sum_ms": float(np.median(per_round)), "measured_ms": float(np.median(net)),
                     "ratio_median": float(np.median(ratio)), "ratio_min": float(ratio.min()),
                     "ratio_max": float(ratio.max())})
    from srprune.latency.stats import spearman

    return {"machine": machine(target.threads), "threads": target.threads, "rounds": rounds, "n": n, "seed": seed,
            "config": _shown(config), "output_size": [w, h], "int8_isa": isa, "loadavg_start": list(load0),
            "loadavg_end": list(os.getloadavg()), "timing_s": timing_s, "wall_s": time.perf_counter() - t_start,
            "distinct_layers": len(keys), "rows": rows,
            "layers_ms": {k: {"median_ms": float(np.median(v)), "kernel": kernels[k]} for k, v in layer_s.items()},
            "spearman": spearman([r["sum_ms"] for r in rows], [r["measured_ms"] for r in rows])}


def markdown(res: dict) -> str:
    """The `latency_int8` section of docs/benchmarks.md."""
    w, h = res["output_size"]
    la, lb = res["loadavg_start"], res["loadavg_end"]
    ratios = [r["ratio_median"] for r in res["rows"]]
    lines = [
        "## Latency table: int8 entries vs whole int8 networks", "",
        f"Machine: {res['machine']}. Measured under load (other agents' work on the same 2 cores; load average "
        f"{la[0]:.1f} at the start, {lb[0]:.1f} at the end): absolute times are loaded ones, the ratios are per round "
        f"of one interleaved timing ({res['rounds']} rounds, one call of every layer and network per round after a "
        f"warm-up). Command: `python benchmarks/latency_int8.py --n {res['n']} --rounds {res['rounds']} "
        f"--threads {res['threads']} --doc` "
        f"({res['wall_s']:.0f} s, of which {res['timing_s']:.0f} s timing).", "",
        f"{res['n']} random genomes (seed {res['seed']}) of `{res['config']}`'s space at a {w}x{h} output, quantised "
        "by srprune.quant's PTQ (random init, min-max ranges over 4 random images) and built as the int8 c-lib "
        f"`srprune compile` ships ({res['int8_isa']}, {res['threads']} thread(s)); beside them the "
        f"{res['distinct_layers']} int8 layer entries they need, built by the latency table's `build_layer`. "
        "`sum` = the sum of a network's int8 entries (int8 adapters count 0: fused) = the uncalibrated prediction; "
        "`sum/measured` is per round, median [min, max].", "",
        "| # | cells (block:width) | layers | sparse layers | sum of entries ms | measured c-lib ms | sum/measured |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for i, r in enumerate(res["rows"]):
        cells = " ".join(f"{b}:{wd}" for b, wd in zip(r["blocks"], r["widths"]))
        lines.append(f"| {i} | {cells} | {r['layers']} | {r['sparse_layers']} | {r['sum_ms']:.2f} | "
                     f"{r['measured_ms']:.2f} | {r['ratio_median']:.3f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] |")
    top = sorted(res["layers_ms"].items(), key=lambda kv: -kv[1]["median_ms"])[:5]
    lines += ["", "Costliest entries (median ms, kernel): " + "; ".join(
        f"`{k}` {v['median_ms']:.2f} ({v['kernel']})" for k, v in top) + "."]
    lines += ["", f"Across networks: sum/measured from {min(ratios):.3f} to {max(ratios):.3f} (median "
              f"{float(np.median(ratios)):.3f}); Spearman(sum, measured) = {res['spearman']:.3f}. A calibration of "
              "int8 networks (alpha x sum + beta + gamma x layers, as fitted for fp32) is not built yet: the fp32 "
              "calibration of a table must not be applied to int8 sums."]
    lines += ["", NOTES]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--seed", type=int, default=3000)
    ap.add_argument("--reuse", type=Path, default=None, help="report this --json file without measuring")
    add_timing_args(ap, "latency_int8")
    ap.set_defaults(rounds=30)
    args = ap.parse_args()
    if args.reuse:
        res = json.loads(args.reuse.read_text())
    else:
        res = run(args.config, args.n, args.rounds, args.threads, args.seed)
    publish(markdown(res), res, "latency_int8", args.json, args.doc)


if __name__ == "__main__":
    main()
