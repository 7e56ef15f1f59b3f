"""TVM (our untuned build) vs PyTorch eager vs ONNX Runtime on fixed SR networks, untrained weights.

(1) plain-c32-d6: conv3x3 3->32 + ReLU, five conv3x3 32->32 + ReLU, global residual over the body,
    conv3x3 32->12, PixelShuffle(2);  (2) ecbsr-x2: the ECBSR reference model (M4C16) deployed, x2;
(3) fsrcnn-x2: FSRCNN, whose 9x9 transposed conv the compiler turns into a sub-pixel conv; (4) espcn-x2: ESPCN,
whose tanh activations are fused into our conv kernels (compiler/epilogue.py).
Input 1x3x360x640 (720p output). Engines are timed interleaved, same thread count.

Usage: python benchmarks/engines.py [--json FILE] [--threads N] [--repeat R] [--doc [SECTION]]
(--doc rewrites the `engines` section of docs/benchmarks.md; --doc SECTION writes SECTION instead.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import (add_doc_arg, doc_flag, doc_section, fma_ceiling_gflops, machine, of_ceiling,  # noqa: E402
                                publish)
from compiler.bench import ENGINES, PlainSR, bench_engines, format_table, peak_gflops  # noqa: E402

INPUT = (1, 3, 360, 640)


def networks() -> dict[str, nn.Module]:
    """The benchmark networks with seeded untrained weights (the issue's two, plus FSRCNN for its deconvolution)."""
    from srprune.models import build_model, deploy

    torch.manual_seed(0)
    plain = PlainSR().eval()
    ecb = deploy(build_model("ecbsr", 2)).eval()
    fsrcnn = deploy(build_model("fsrcnn", 2)).eval()  # its transposed conv goes through compiler.canonicalize
    espcn = deploy(build_model("espcn", 2)).eval()  # tanh after its convs
    return {"plain-c32-d6": plain, "ecbsr-x2": ecb, "fsrcnn-x2": fsrcnn, "espcn-x2": espcn}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None, help="write {model: {engine: {median_ms, ...}, macs}}")
    ap.add_argument("--threads", type=int, default=None, help="threads for every engine (default: all cores)")
    ap.add_argument("--repeat", type=int, default=15)
    add_doc_arg(ap, "engines")
    args = ap.parse_args()

    results: dict = {}
    for name, model in networks().items():
        print(f"== {name}", flush=True)
        res = bench_engines(model, INPUT, threads=args.threads, repeat=args.repeat)
        print(format_table(res), flush=True)
        results[name] = res
    threads = next(iter(results.values()))["threads"]
    peak = peak_gflops(threads)
    ceil = fma_ceiling_gflops(threads)
    gemms = [(label, peak[key]) for key, label in (("blas", "PyTorch BLAS 2048^2"), ("onnxruntime", "ONNX Runtime "
             "MatMul 2048^2"), ("tvm", "our kernel as a 256x256 @ 256x16384 product")) if key in peak]
    lines = ["## Engines: untuned TVM vs PyTorch eager vs ONNX Runtime", "",
             f"Machine: {machine(threads)}. The same threads for every engine, input 1x3x360x640 (720p output), "
             f"untrained weights, median of {args.repeat} interleaved rounds. GFLOP/s = 2 x the network's MACs / "
             "median time, read against the FMA ceiling above: above 100% an engine does fewer multiplications "
             "(e.g. Winograd). Large matrix products in the same run, for reference (GFLOP/s, % of ceiling): "
             + "; ".join(f"{label} {g:.0f} ({of_ceiling(g, ceil)})" for label, g in gemms) + ". "
             f"Command: `python benchmarks/engines.py --json engines.json {doc_flag(doc_section(args.doc, 'engines'), 'engines')}`.", "",
             "| model | GMACs | engine | median ms | min ms | max ms | GFLOP/s | % of ceiling | TVM / engine |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    verdicts = []
    for name, res in results.items():
        tvm_ms = res["tvm"]["median_ms"]
        for eng in ENGINES:
            r = res[eng]
            gflops = 2 * res["macs"] / (r["median_ms"] / 1e3) / 1e9
            lines.append(f"| {name} | {res['macs'] / 1e9:.2f} | {eng} | {r['median_ms']:.1f} | {r['min_ms']:.1f} "
                         f"| {r['max_ms']:.1f} | {gflops:.1f} | {of_ceiling(gflops, ceil)} "
                         f"| {tvm_ms / r['median_ms']:.2f} |")
        res["peak_gflops"], res["fma_ceiling_gflops"] = peak, ceil
        ort, pt = tvm_ms / res["onnxruntime"]["median_ms"], tvm_ms / res["torch"]["median_ms"]
        verdicts.append(f"- {name}: TVM / ONNX Runtime {ort:.2f} (target <= 1.0: {'met' if ort <= 1.0 else 'NOT met'}), "
                        f"TVM / PyTorch {pt:.2f} (target <= 0.5: {'met' if pt <= 0.5 else 'NOT met'}).")
    lines += ["", "Targets of the compiler issue, from this run:", *verdicts]
    publish("\n".join(lines), results, "engines", args.json, args.doc)


if __name__ == "__main__":
    main()
