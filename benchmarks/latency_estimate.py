"""Static latency estimate vs measurement on this host: is llvm-mca's model good enough to rank layers?

Usage (quiet machine):
    python benchmarks/latency_estimate.py --doc
Tiny check (seconds, numbers meaningless):
    python benchmarks/latency_estimate.py --tiny

For every dense layer of the demo's search space at the LR size of a WxH output (default 1280x720, x2), on
`--threads` threads: the measured time (the layer table's own path, `compiler.latency.measure.measure_into`:
compiled alone, interleaved rounds, median; or an existing table with `--table`) and the static estimate of
llvm-mca-19 with this CPU's model (`compiler.latency.estimate`, cpu `host` = the LLVM name TVM detects, e.g.
rocketlake). Reports MAPE, Spearman and the measured/estimated ratio per kernel kind; the ratio is a stated
correction for what the static model misses (caches, memory, threads), never folded into the estimate. Writes
JSON (--json) and, with --doc, the `latency_estimate` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import machine, update_section, write_json  # noqa: E402

DEMO_SPACE = {"num_cells": 3, "widths": [8, 16, 24, 32], "blocks": ["conv", "res", "ecb", "dws", "skip"],
              "activation": "relu", "scales": [2]}
TINY_SPACE = {"num_cells": 1, "widths": [8, 16], "blocks": ["conv", "dws", "skip"], "activation": "relu",
              "scales": [2]}


def kind(cfg, kernel: str = "") -> str:
    """The kernel kind a ratio is reported for (with the kernel the compiler emits: direct, winograd2/4)."""
    if cfg.op != "conv":
        return cfg.op
    dw = cfg.groups > 1 and cfg.groups == cfg.cin
    base = f"conv{cfg.k}x{cfg.k}" + (" dw" if dw else "") + (" +res" if cfg.residual else "")
    return f"{base} {kernel}" if kernel else base


def run(args: argparse.Namespace) -> dict:
    """Measure (or load) and estimate every layer; the comparison as plain data."""
    from compiler.latency.estimate import Estimator, get_cpu
    from compiler.latency.measure import measure_into
    from compiler.latency.table import load_table, open_table
    from compiler.targets import get_target
    from srprune.latency import make_runner, mape, space_layers, spearman
    from supernet.space import SearchSpace

    target = get_target("host", args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    space = SearchSpace.from_dict(TINY_SPACE if args.tiny else DEMO_SPACE)
    layers = space_layers(space, (h, w))
    t0 = time.time()
    source = "measured here"
    if args.table:
        table = load_table(args.table)
        table.check_target("host", target.threads)
        h = table.header
        source = (f"{args.table}, created {h.get('created', '?')} by compiler {h.get('compiler', '?')}, "
                  "its load not recorded")
    else:
        path = Path(tempfile.mkdtemp(prefix="latency-estimate-")) / "table.json"
        table = open_table(path, "host", target.threads)
        measure_into(table, layers, target, make_runner(target, None), repeat=args.repeat)
    measured_s = time.time() - t0
    est = Estimator(target, get_cpu("host", target))
    rows = []
    t0 = time.time()
    for cfg in layers:
        entry = table.get(cfg)
        if entry is None:
            continue
        e = est.layer(cfg)
        kernel = e.detail.get("kernel", "")
        rows.append({"layer": cfg.key(), "kind": kind(cfg, kernel), "macs": cfg.macs(), "measured_ms": entry.median_ms,
                     "estimated_ms": e.ms, "kernel": kernel, "table_kernel": getattr(entry, "kernel", None)})
    estimated_s = time.time() - t0
    m = [r["measured_ms"] for r in rows]
    e = [r["estimated_ms"] for r in rows]
    kinds = {}
    for k in sorted({r["kind"] for r in rows}):
        sel = [r for r in rows if r["kind"] == k]
        ratios = [r["measured_ms"] / r["estimated_ms"] for r in sel]
        kinds[k] = {"n": len(sel), "median_ratio": statistics.median(ratios), "min_ratio": min(ratios),
                    "max_ratio": max(ratios)}
    convs = [r for r in rows if r["kind"] != "adapter"]
    conv_spearman = spearman([r["estimated_ms"] for r in convs], [r["measured_ms"] for r in convs]) if convs else None
    overall = statistics.median([a / b for a, b in zip(m, e)])
    # the table records the kernel it timed: the estimate must model the same one (direct / winogradM)
    mismatch = [r["layer"] for r in rows if r["kernel"] and r["table_kernel"] not in (None, r["kernel"])]
    corrected = [x * overall for x in e]
    return {"machine": machine(target.threads), "threads": target.threads, "output_size": [w, h],
            "cpu": est.describe(), "space": TINY_SPACE if args.tiny else DEMO_SPACE, "n": len(rows),
            "mape_pct": mape(e, m), "spearman": spearman(e, m), "median_ratio": overall,
            "mape_corrected_pct": mape(corrected, m), "kinds": kinds, "rows": rows, "kernel_mismatch": mismatch,
            "spearman_without_adapters": conv_spearman, "n_without_adapters": len(convs), "table": source,
            "measure_seconds": measured_s, "estimate_seconds": estimated_s}


def markdown(res: dict, command: str) -> str:
    """The docs/benchmarks.md section."""
    cpu = res["cpu"]["cores"][0]
    lines = ["## Static latency estimate (llvm-mca-19) vs measured layer table, host", "",
             f"Machine: {res['machine']}", f"Command: `{command}`", f"Measured table: {res['table']}", "",
             f"- {res['n']} dense layers of the demo's search space at the LR size of a "
             f"{res['output_size'][0]}x{res['output_size'][1]} output, {res['threads']} thread(s); measured with the "
             f"table's own path (compiled alone, interleaved rounds, median); estimated by llvm-mca-19 "
             f"-mcpu={cpu['mca']} (LLVM's name of this CPU) at {cpu['ghz']:g} GHz on the assembly of the kernel the "
             f"compiler emits for each layer (Winograd F(2x2)/F(4x4) where `choose_conv_kernel` picks it: GEMM, input "
             f"and output transforms; the direct kernel elsewhere). Layers whose measured kernel differs from the "
             f"estimated one: {len(res['kernel_mismatch'])}.",
             f"- Raw estimate: MAPE {res['mape_pct']:.1f}%, Spearman {res['spearman']:.3f} (goal >= 0.9). "
             f"With the one stated correction (x{res['median_ratio']:.3f}, the median measured/estimated ratio): "
             f"MAPE {res['mape_corrected_pct']:.1f}%.", "",
             "| kernel kind | layers | measured / estimated (median) | min | max |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for k, v in res["kinds"].items():
        lines.append(f"| {k} | {v['n']} | {v['median_ratio']:.2f} | {v['min_ratio']:.2f} | {v['max_ratio']:.2f} |")
    sw = res.get("spearman_without_adapters")
    if sw is not None:
        lines += ["", f"Spearman without the {res['n'] - res['n_without_adapters']} adapters (graph-lowered channel "
                  f"pad/slice copies): {sw:.3f} over {res['n_without_adapters']} conv and tail layers."]
    lines += ["", "What the static model misses: llvm-mca assumes every load hits L1 (no cache misses or memory "
              "bandwidth), ignores thread start-up and barriers, turbo/thermal clocks and other processes; the "
              "ratio above is how much of that this host shows, not a property of a phone. In this table: the "
              "memory-bound kinds (adapters: pure copies; depthwise and 1x1 convs: few multiply-adds per byte; a "
              "residual read on top of a 3x3 conv) measure several times their estimate, while compute-bound direct "
              "3x3 convs measure below it (the estimate uses the nominal clock; the FMA ceiling of this host "
              "implies a higher effective clock). That spread across kinds, not the Winograd kernels, is what "
              "keeps the rank correlation below the goal."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", default="1280x720", help="output frame WxH (layers run at the LR size)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--table", type=Path, default=None, help="an existing host table.json to compare against")
    ap.add_argument("--tiny", action="store_true", help="a 2-width space at 64x32: checks the script runs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--doc", action="store_true", help="write the latency_estimate section of docs/benchmarks.md")
    args = ap.parse_args()
    if args.tiny:
        args.size, args.repeat = "64x32", 1
    res = run(args)
    command = "python benchmarks/latency_estimate.py " + " ".join(sys.argv[1:])
    text = markdown(res, command.strip())
    print(text)
    if args.json:
        write_json(args.json, res)
    if args.doc and not args.tiny:
        update_section("latency_estimate", text)


if __name__ == "__main__":
    main()
