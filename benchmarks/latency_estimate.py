"""Static latency estimate vs measurement on this host: is llvm-mca's model good enough to rank layers?

Usage (quiet machine):
    python benchmarks/latency_estimate.py --doc
Tiny check (seconds, numbers meaningless):
    python benchmarks/latency_estimate.py --tiny

For every dense layer of the demo's search space at the LR size of a WxH output (default 1280x720, x2), on
`--threads` threads: the measured time (the layer table's own path, `compiler.latency.measure.measure_into`:
compiled alone, interleaved rounds, median; or an existing table with `--table`) and the static estimate of
llvm-mca-19 with this CPU's model (`compiler.latency.estimate`, cpu `host` = the LLVM name TVM detects, e.g.
rocketlake; its memory term at this host's bandwidth recorded in compiler/latency/cpus.json by
benchmarks/mem_bandwidth.py --record). Reports MAPE, Spearman and the measured/estimated ratio per kernel kind; the
ratio is a stated correction for what the static model misses (caches, threads), never folded into the estimate.
Also reports how the memory term is combined, on the same layers: compute only, max(compute, memory) (a roofline:
memory hidden behind the multiply-adds), compute + memory (the estimate's choice), and the sum at half and twice
the recorded bandwidth (how much the figure matters). Writes JSON (--json) and, with --doc, the `latency_estimate`
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import add_doc_arg, doc_section, machine, update_section, write_json  # noqa: E402

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
        hdr = table.header
        source = (f"{args.table}, created {hdr.get('created', '?')} by compiler {hdr.get('compiler', '?')}, "
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
        memory = float(e.detail.get("memory_ms", 0.0))
        rows.append({"layer": cfg.key(), "kind": kind(cfg, kernel), "macs": cfg.macs(), "measured_ms": entry.median_ms,
                     "estimated_ms": e.ms, "compute_ms": e.ms - memory, "memory_ms": memory,
                     "bytes": e.detail.get("bytes"), "kernel": kernel, "table_kernel": getattr(entry, "kernel", None)})
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
    combos = {"compute only (no memory term)": [r["compute_ms"] for r in rows],
              "max(compute, memory)": [max(r["compute_ms"], r["memory_ms"]) for r in rows],
              "compute + memory (the estimate)": e,
              "compute + memory at half the bandwidth": [r["compute_ms"] + 2 * r["memory_ms"] for r in rows],
              "compute + memory at twice the bandwidth": [r["compute_ms"] + r["memory_ms"] / 2 for r in rows]}
    combinations = {k: {"mape_pct": mape(v, m), "spearman": spearman(v, m)} for k, v in combos.items()}
    return {"machine": machine(target.threads), "threads": target.threads, "output_size": [w, h],
            "cpu": est.describe(), "space": TINY_SPACE if args.tiny else DEMO_SPACE, "n": len(rows),
            "mape_pct": mape(e, m), "spearman": spearman(e, m), "median_ratio": overall,
            "mape_corrected_pct": mape(corrected, m), "kinds": kinds, "rows": rows, "kernel_mismatch": mismatch,
            "spearman_without_adapters": conv_spearman, "n_without_adapters": len(convs), "table": source,
            "measure_seconds": measured_s, "estimate_seconds": estimated_s, "combinations": combinations}


def memory_text(memory: dict | None) -> str:
    """How the header names the memory term's bandwidth (or its absence)."""
    if not memory:
        return "none (no bandwidth recorded for this CPU: python benchmarks/mem_bandwidth.py --record)"
    return (f"bytes read + written by each kernel (compiler.latency.estimate.traffic_bytes) at {memory['gbps']:g} GB/s "
            f"({memory['source']}), added to the compute estimate")


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
             f"- Memory term: {memory_text(res['cpu'].get('memory'))}.",
             f"- Raw estimate: MAPE {res['mape_pct']:.1f}%, Spearman {res['spearman']:.3f} (goal >= 0.9). "
             f"With the one stated correction (x{res['median_ratio']:.3f}, the median measured/estimated ratio): "
             f"MAPE {res['mape_corrected_pct']:.1f}%.", "",
             "| kernel kind | layers | measured / estimated (median) | min | max |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for k, v in res["kinds"].items():
        lines.append(f"| {k} | {v['n']} | {v['median_ratio']:.2f} | {v['min_ratio']:.2f} | {v['max_ratio']:.2f} |")
    lines += ["", "How the memory term is combined with the compute estimate (same layers, same measurements):", "",
              "| combination | MAPE | Spearman |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {v['mape_pct']:.1f}% | {v['spearman']:.3f} |" for k, v in res["combinations"].items()]
    sw = res.get("spearman_without_adapters")
    if sw is not None:
        lines += ["", f"Spearman without the {res['n'] - res['n_without_adapters']} adapters (graph-lowered channel "
                  f"pad/slice copies): {sw:.3f} over {res['n_without_adapters']} conv and tail layers."]
    lines += ["", "Why compute + memory: over the table the sum ranks the layers best of the combinations above, and "
              "keeps ranking them about as well at half or twice the recorded bandwidth (the figure is measured on a "
              "shared machine). Per kind the two bracket the truth: max(compute, memory), the roofline, prices the "
              "layers that are mostly memory right (adapters, depthwise, 1x1 convs, whose memory term is 1.5-20x "
              "their compute) but under-prices those where both are of a size (a 3x3 Winograd conv with a residual, "
              "the tail), which the sum prices right while over-pricing the former. The emitted kernels do not hide "
              "their memory work behind the multiply-adds (the direct kernel copies its input rows into a window "
              "before them and writes back after them), and a partial overlap (max + a x min) fitted here would be "
              "a correction for this host, not a property of the code: the sum it is.",
              "", "What the static model still misses: the cache levels between L1 and memory (one bandwidth for "
              "every layer; this VM's bandwidth drops between 16 and 32 MiB arrays and the layers' tensors are 7-29 "
              "MiB), thread start-up and barriers, turbo/thermal clocks and other processes; the ratios above are how "
              "much of that this host shows, not a property of a phone. Compute-bound direct 3x3 and 1x1 convs "
              "measure below their estimate: the estimate runs at the nominal clock (cpuinfo), while this host's FMA "
              "ceiling (benchmarks/fma_ceiling.py) implies a higher effective clock; that, not the memory-bound "
              "kinds, is now most of the MAPE. The measured table is an earlier session's (under that session's "
              "conditions); the estimate itself does not depend on the load; the bandwidth was measured under load "
              "(best repeat)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", default="1280x720", help="output frame WxH (layers run at the LR size)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--table", type=Path, default=None, help="an existing host table.json to compare against")
    ap.add_argument("--tiny", action="store_true", help="a 2-width space at 64x32: checks the script runs")
    ap.add_argument("--json", type=Path, default=None)
    add_doc_arg(ap, "latency_estimate")
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
        update_section(doc_section(args.doc, "latency_estimate"), text)


if __name__ == "__main__":
    main()
