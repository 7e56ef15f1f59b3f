"""The dense conv kernel's reduction chunk: weight columns of straight-line code per chunk, side by side.

compiler.kernels keeps a tile's accumulators in registers within a chunk of input channels and passes them
through memory between chunks (CHUNK_COLUMNS decides the chunk). This times the same conv3x3 32->32 + ReLU
at 640x360 (2 threads by default) built with several chunk sizes, round-robin (one call of each per round),
and reports each one's time relative to the default's per round (median [min, max]).

Usage: python benchmarks/conv_chunks.py [--rounds R] [--threads N] [--json FILE] [--doc]
(--doc rewrites the `conv_chunks` section of docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import (add_timing_args, fma_ceiling_gflops, kernel_timer, machine,  # noqa: E402
                                of_ceiling, publish, vs_base)
from compiler.kernels import CHUNK_COLUMNS, ConvSpec, choose_schedule, conv2d_primfunc  # noqa: E402
from compiler.latency.runners import interleaved  # noqa: E402
from compiler.targets import get_target, set_runtime_threads  # noqa: E402

SPEC = ConvSpec(1, 32, 360, 640, 32, 3, 3, (1, 1, 1, 1), act="relu")
COLUMNS = (9, 18, CHUNK_COLUMNS, 72, 144, 288)  # 1, 2, 4, 8, 16 and all 32 input channels of a 3x3 conv


def run(rounds: int, threads: int | None) -> dict:
    """Build one kernel per chunk size, time them interleaved, return stats and ratios to the default."""
    target = get_target("host", threads)
    set_runtime_threads(target.threads)
    sched = choose_schedule(SPEC, target.vec, target.registers)
    rng = np.random.default_rng(0)
    shapes = [(1, 32, 360, 640), (32 // sched.oc_tile, 32, 3, 3, sched.oc_tile), (32,), (1, 32, 360, 640)]
    arrays = [rng.random(s, dtype=np.float32) for s in shapes]
    timers, compile_s = zip(*(kernel_timer(conv2d_primfunc(SPEC, sched, chunk_columns=cols), arrays, target)
                              for cols in COLUMNS))
    samples = interleaved(list(timers), rounds)
    base = samples[COLUMNS.index(CHUNK_COLUMNS)]
    rows = [{"columns": cols, "channels": cols // 9, **vs_base(s, base), "compile_s": cs,
             "gflops": 2 * SPEC.macs() / float(np.median(s)) / 1e6}
            for cols, s, cs in zip(COLUMNS, samples, compile_s)]
    return {"machine": machine(target.threads), "threads": target.threads,
            "fma_ceiling_gflops": fma_ceiling_gflops(target.threads), "rounds": rounds, "oc_tile": sched.oc_tile,
            "w_tile": sched.w_tile, "rows": rows}


def to_markdown(res: dict) -> str:
    lines = ["## Dense conv kernel: reduction chunk size", "",
             f"Machine: {res['machine']}; {res['rounds']} interleaved rounds; conv3x3 32->32 "
             f"+ ReLU, input 1x32x360x640, register tile {res['oc_tile']} channels x {res['w_tile']} pixels. "
             f"`vs default` = per-round time ratio to the default chunk ({CHUNK_COLUMNS} columns). "
             "Command: `python benchmarks/conv_chunks.py --doc`.", "",
             "| columns per chunk | input channels | median ms | min ms | max ms | GFLOP/s | % of ceiling | vs default "
             "| compile s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in res["rows"]:
        lines.append(f"| {r['columns']} | {r['channels']} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['max_ms']:.2f} "
                     f"| {r['gflops']:.0f} | {of_ceiling(r['gflops'], res['fma_ceiling_gflops'])} "
                     f"| {r['ratio_median']:.2f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] "
                     f"| {r['compile_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_args(ap, "conv_chunks")
    args = ap.parse_args()
    res = run(args.rounds, args.threads)
    publish(to_markdown(res), res, "conv_chunks", args.json, args.doc)


if __name__ == "__main__":
    main()
