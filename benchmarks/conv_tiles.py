"""The dense conv kernel's register tile (output channels x vectors of pixels) and input prefetch, side by side.

compiler.kernels.choose_schedule picks, for each conv, how many output channels (oc_tile) and how many
SIMD vectors of one output row (nvec) a tile keeps in registers. This builds the layers of the benchmark
networks (plain-c32-d6 and ECBSR at 640x360) with several tiles each, times them round-robin (one call of
each per round, 2 threads by default), and reports each tile's time relative to the default choice per
round (median [min, max]), so a better default shows as a ratio below 1 on every layer it applies to.
The default tile is also built without the software prefetch of the next input row (`prefetch=False`).

Usage: python benchmarks/conv_tiles.py [--rounds R] [--threads N] [--json FILE] [--doc]
(--doc rewrites the `conv_tiles` section of docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import (add_timing_args, fma_ceiling_gflops, kernel_timer, machine,  # noqa: E402
                                of_ceiling, publish, vs_base)
from compiler.kernels import ConvSpec, Schedule, choose_schedule, conv2d_primfunc  # noqa: E402
from compiler.latency.runners import interleaved  # noqa: E402
from compiler.targets import get_target, set_runtime_threads  # noqa: E402

PAD = (1, 1, 1, 1)
# (name, layer, candidate (oc_tile, nvec) tiles besides the default)
LAYERS = [
    ("conv3x3 32->32 relu", ConvSpec(1, 32, 360, 640, 32, 3, 3, PAD, act="relu"),
     [(8, 2), (4, 4), (2, 8), (8, 3), (4, 6), (16, 1)]),
    ("conv3x3 16->16 prelu", ConvSpec(1, 16, 360, 640, 16, 3, 3, PAD, act="prelu"),
     [(8, 2), (4, 4), (2, 8), (8, 3), (4, 6), (16, 1)]),
    ("conv3x3 3->32 relu (head)", ConvSpec(1, 3, 360, 640, 32, 3, 3, PAD, act="relu"),
     [(8, 2), (4, 4), (2, 8), (8, 3), (4, 6), (16, 1)]),
    ("conv3x3 32->12 + shuffle 2 (tail)", ConvSpec(1, 32, 360, 640, 12, 3, 3, PAD, shuffle=2),
     [(6, 2), (4, 4), (2, 8), (12, 2), (4, 3), (6, 3)]),
    ("conv3x3 16->12 + skip + shuffle 2 (ECB tail)",
     ConvSpec(1, 16, 360, 640, 12, 3, 3, PAD, residual=True, residual_repeat=4, shuffle=2),
     [(6, 2), (4, 4), (2, 8), (12, 2), (4, 3), (6, 3)]),
]


def _arrays(spec: ConvSpec, oc_tile: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random arguments of a conv kernel in the order conv2d_primfunc takes them (weights packed for oc_tile)."""
    shapes = [(spec.n, spec.cin, spec.h, spec.w), (spec.cout // oc_tile, spec.cin // spec.groups, spec.kh, spec.kw,
                                                     oc_tile)]
    if spec.bias:
        shapes.append((spec.cout,))
    if spec.act == "prelu":
        shapes.append((spec.cout,))
    if spec.residual:
        shapes.append(spec.residual_shape)
    return [rng.random(s, dtype=np.float32) for s in shapes] + [np.zeros(spec.out_shape, np.float32)]


def run(rounds: int, threads: int | None) -> dict:
    """Per layer: build the default and the candidate tiles, time them interleaved, ratios to the default."""
    target = get_target("host", threads)
    set_runtime_threads(target.threads)
    rng = np.random.default_rng(0)
    layers = []
    for name, spec, candidates in LAYERS:
        default = choose_schedule(spec, target.vec, target.registers)
        tiles = [(default.oc_tile, default.nvec, True)] + [(default.oc_tile, default.nvec, False)] + [
            (*t, True) for t in candidates if t != (default.oc_tile, default.nvec)]
        timers, compile_s = [], []
        for oc_tile, nvec, prefetch in tiles:
            func = conv2d_primfunc(spec, Schedule(target.vec, nvec, oc_tile), prefetch=prefetch)
            timer, seconds = kernel_timer(func, _arrays(spec, oc_tile, rng), target)
            timers.append(timer)
            compile_s.append(seconds)
        samples = interleaved(timers, rounds)
        rows = [{"oc_tile": oc_tile, "nvec": nvec, "prefetch": prefetch, **vs_base(s, samples[0]), "compile_s": cs,
                 "gflops": 2 * spec.macs() / float(np.median(s)) / 1e6}
                for (oc_tile, nvec, prefetch), s, cs in zip(tiles, samples, compile_s)]
        layers.append({"layer": name, "rows": rows})
        print(f"{name}: " + ", ".join(f"{_tile(r)} {r['median_ms']:.2f} ms ({r['ratio_median']:.2f})"
                                      for r in rows), flush=True)
    return {"machine": machine(target.threads), "threads": target.threads,
            "fma_ceiling_gflops": fma_ceiling_gflops(target.threads), "vec": target.vec, "registers": target.registers,
            "rounds": rounds, "layers": layers}


def _tile(row: dict) -> str:
    return f"{row['oc_tile']} x {row['nvec']}{'' if row['prefetch'] else ', no prefetch'}"


def to_markdown(res: dict) -> str:
    lines = ["## Dense conv kernel: register tile per layer", "",
             f"Machine: {res['machine']}; {res['rounds']} interleaved rounds; input "
             f"640x360, SIMD width {res['vec']} floats, {res['registers']} vector registers. Tile = output channels "
             "x vectors of one output row kept in registers; the first row of each layer is the default "
             "(`choose_schedule`, with the next input row prefetched), the second the same tile without the prefetch; "
             "`vs default` = per-round time ratio to the default. "
             "Command: `python benchmarks/conv_tiles.py --doc`.", "",
             "| layer | tile (channels x vectors) | median ms | min ms | max ms | GFLOP/s | % of ceiling | vs default "
             "| compile s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for layer in res["layers"]:
        for i, r in enumerate(layer["rows"]):
            lines.append(f"| {layer['layer'] if i == 0 else ''} | {_tile(r)}{' (default)' if i == 0 else ''} "
                         f"| {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['max_ms']:.2f} | {r['gflops']:.0f} "
                         f"| {of_ceiling(r['gflops'], res['fma_ceiling_gflops'])} "
                         f"| {r['ratio_median']:.2f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] | {r['compile_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_args(ap, "conv_tiles")
    args = ap.parse_args()
    res = run(args.rounds, args.threads)
    publish(to_markdown(res), res, "conv_tiles", args.json, args.doc)


if __name__ == "__main__":
    main()
