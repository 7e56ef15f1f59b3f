"""The dense conv kernel's register tile (output channels x vectors of pixels) and input prefetch, side by side.

compiler.kernels.choose_schedule picks, for each conv, how many output channels (oc_tile) and how many
SIMD vectors of one output row (nvec) a tile keeps in registers; its shape depends on the CPU
(kernels.host_tile_shape). This builds the layers of the benchmark networks (plain-c32-d6 and ECBSR at 640x360,
and a 64-channel body) with several tiles each, times them round-robin (one call of each per round, at the
target's threads in wall time and at 1 thread in thread CPU time), and reports each tile's time relative to
the default choice per round (median [min, max]), so a better default shows as a ratio below 1 on every layer
it applies to. The default
tile is also built without the software prefetch of the next input row (`prefetch=False`).

GFLOP/s are read against the machine's cached (quiet) FMA ceiling and against the FMA probe run in the same
rounds on the same cores (benchmarks/fma_ceiling.ProbeTimer): on a shared machine the second is the fair one.
The hot loop of each default kernel is also run through llvm-mca-19 (compiler.latency.estimate) for LLVM's model
of this CPU and for skylake-avx512, whose model has the two 512-bit FMA pipes this Intel core measures.

Usage: python benchmarks/conv_tiles.py [--rounds R] [--threads N] [--json FILE] [--doc]
(--doc rewrites the `conv_tiles` section of docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import (add_timing_args, doc_flag, doc_section, fma_ceiling_gflops, kernel_timer, llvm_cpu,  # noqa: E402
                                machine, of_ceiling, publish, vs_base)
from benchmarks.fma_ceiling import ProbeTimer  # noqa: E402
from compiler.kernels import (ConvSpec, Schedule, choose_schedule, conv2d_primfunc,  # noqa: E402
                              default_channels_inner, host_tile_shape)
from compiler.latency.runners import interleaved  # noqa: E402
from compiler.targets import get_target, set_runtime_threads  # noqa: E402

PAD = (1, 1, 1, 1)
BODY = [(8, 2), (4, 4), (2, 8), (8, 3), (4, 6), (16, 1)]
TAIL = [(6, 2), (4, 4), (2, 8), (12, 2), (4, 3), (6, 3)]
# (name, layer, candidate (oc_tile, nvec) tiles besides the default)
LAYERS = [
    ("conv3x3 32->32 relu", ConvSpec(1, 32, 360, 640, 32, 3, 3, PAD, act="relu"), BODY),
    ("conv3x3 64->64 relu", ConvSpec(1, 64, 360, 640, 64, 3, 3, PAD, act="relu"), BODY),
    ("conv3x3 16->16 prelu", ConvSpec(1, 16, 360, 640, 16, 3, 3, PAD, act="prelu"), BODY),
    ("conv3x3 3->32 relu (head)", ConvSpec(1, 3, 360, 640, 32, 3, 3, PAD, act="relu"), BODY),
    ("conv3x3 32->12 + shuffle 2 (tail)", ConvSpec(1, 32, 360, 640, 12, 3, 3, PAD, shuffle=2), TAIL),
    ("conv3x3 16->12 + skip + shuffle 2 (ECB tail)",
     ConvSpec(1, 16, 360, 640, 12, 3, 3, PAD, residual=True, residual_repeat=4, shuffle=2), TAIL),
]
MCA_CPUS = ("skylake-avx512",)  # besides LLVM's name for this CPU
# Why the dense kernel stays far from the FMA ceiling on the Intel Xeon: one-off checks, printed in the doc section.
WHY = (
    "One-off checks on the Intel Xeon (2026-12-06, under load, thread CPU time against a 16-chain FMA loop run in the "
    "same rounds; not re-run by this script), conv3x3 32->32 unless said: "
    "(1) not the thread split: at 2 threads each thread spends 18.0 ms of CPU per call, at 1 thread 35.5 ms; "
    "(2) not memory: the same layer on 8 rows (every tensor in L2) and 16->16 on 32-pixel rows (ring and weights in "
    "L1) run at the same fraction of the FMA rate as 640x360; "
    "(3) a perf (cpu-clock) profile puts 92% of the kernel's samples in the hot loop (one chunk of 4 input channels: "
    "for 8 x 2, 576 vector FMAs, 72 input loads, 288 weight broadcasts, 16 partial-sum loads and stores); "
    "(4) llvm-mca-19 (below) does not see the limit: LLVM 19's rocketlake, icelake-server and sapphirerapids models "
    "have one 512-bit FMA pipe (1.00 FMA a cycle for any loop), and the two-pipe skylake-avx512 model gives 1.93 "
    "(4 x 4) and 1.73 (8 x 2) of 2; "
    "(5) that hot loop's own assembly run alone in a loop: its 576 FMAs without the loads reach the FMA loop's rate "
    "(~202 vs ~205 GFLOP/s), with its loads ~157-177 (75-85%), and in the kernel (tiles sweeping the ring) the "
    "kernel reaches 60-65%; "
    "(6) a C loop of 16 independent FMAs per iteration plus 8 zmm loads runs at 83% of the FMA-only rate with "
    "aligned loads, 64% with loads that straddle two cache lines, 92% with 8 broadcasts; "
    "(7) in the harness of (5), making every input load of the 8 x 2 loop whole-line gains only 3% (177 -> 183 GFLOP/s, "
    "FMAs alone 227): the number of loads matters, not their alignment, once the tile has few vector loads. "
    "So on this core the loads and broadcasts, about 0.6 per FMA in any tile of this NCHW template, cost issue "
    "bandwidth that llvm-mca's models call free: the 90% "
    "goal of issue 18 is out of reach for this template here; fewer loads per FMA need another layout (channel-blocked "
    "activations, as oneDNN's direct kernels) or fewer multiplications (Winograd: F(4x4) of the same layer took "
    "20.5 ms of CPU against about 33 ms for the direct 8 x 2, 1 thread). Rows of the input ring start on a cache "
    "line (`ring_width`): 6-8% less time for 32->32 and 64->64 in the same kind of check; with rows aligned for "
    "both, 8 x 2 took 0.90-0.98 of 4 x 4's CPU time on 32->32 (five runs of 5-11 rounds) and 0.94 on 64->64 "
    "(one run), 0.87-0.92 of the old kernel's (4 x 4, rows unaligned). Winograd's GEMM has its own tile chooser and "
    "already takes 8 x 2 for F(4x4) on 16-64 channels (4 x 4 for F(2x2)); in the same kind of check F(4x4) with "
    "4 x 4 took 1.10x and with 16 x 1 1.28x the time of 8 x 2, so it needs no change."
)


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


def mca_fma_per_cycle(func, target) -> dict[str, float]:
    """Vector FMAs per cycle that llvm-mca-19 predicts for the kernel's hot loop, per -mcpu model ({} without it)."""
    import tvm

    from compiler.errors import CompilerError
    from compiler.latency.estimate import KernelCode, run_mca

    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target.tvm_target())
    hot = KernelCode.from_asm(lib.mod.inspect_source("asm")).hot
    out = {}
    for cpu in (llvm_cpu(), *MCA_CPUS):
        try:
            r = run_mca("\n".join(hot.body), cpu, target.triple)
        except CompilerError:
            continue
        out[cpu] = hot.fma() / target.vec / r.cycles_per_iteration
    return out


def run_layers(rounds: int, threads: int, target) -> list[dict]:
    """Per layer at `threads` threads: the default and candidate tiles and the FMA probe, interleaved (1 thread:
    in CPU time, kernel and probe alike, see kernel_timer)."""
    set_runtime_threads(threads)
    rng = np.random.default_rng(0)
    cpu_time = threads == 1
    probe = ProbeTimer(threads, seconds=0.05 if cpu_time else 0.02, cpu_time=cpu_time)
    layers = []
    for name, spec, candidates in LAYERS:
        default = choose_schedule(spec, target.vec, target.registers)
        base = (default.oc_tile, default.nvec)
        order = default_channels_inner(spec, default)
        tiles = [(*base, True, order), (*base, False, order), (*base, True, not order)] + [
            (*t, True, order) for t in candidates if t != base]
        timers, compile_s = [], []
        for oc_tile, nvec, prefetch, channels_inner in tiles:
            func = conv2d_primfunc(spec, Schedule(target.vec, nvec, oc_tile), prefetch=prefetch,
                                   channels_inner=channels_inner)
            timer, seconds = kernel_timer(func, _arrays(spec, oc_tile, rng), target, cpu_time=cpu_time)
            timers.append(timer)
            compile_s.append(seconds)
        *samples, probe_ms = interleaved(timers + [probe], rounds)
        probe_gflops = probe.flops / np.asarray(probe_ms) / 1e6
        flops = 2 * spec.macs()
        rows = [{"oc_tile": oc_tile, "nvec": nvec, "prefetch": prefetch, "channels_inner": channels_inner,
                 "other_order": channels_inner != order, **vs_base(s, samples[0]), "compile_s": cs,
                 "gflops": flops / float(np.median(s)) / 1e6,
                 "of_probe": float(np.median(flops / np.asarray(s) / 1e6 / probe_gflops))}
                for (oc_tile, nvec, prefetch, channels_inner), s, cs in zip(tiles, samples, compile_s)]
        mca = mca_fma_per_cycle(conv2d_primfunc(spec, default), target) if threads == 1 else {}
        layers.append({"layer": name, "rows": rows, "probe_gflops": float(np.median(probe_gflops)), "mca": mca})
        print(f"{threads} thread(s) {name}: " + ", ".join(
            f"{_tile(r)} {r['median_ms']:.2f} ms ({r['ratio_median']:.2f}, {100 * r['of_probe']:.0f}% of probe)"
            for r in rows) + f"; probe {np.median(probe_gflops):.0f} GFLOP/s", flush=True)
    return layers


def run(rounds: int, threads: int | None) -> dict:
    """Every layer at the target's threads, then (if more than one) at 1 thread."""
    target = get_target("host", threads)
    load = os.getloadavg()[0]
    runs = [{"threads": n, "fma_ceiling_gflops": fma_ceiling_gflops(n), "cpu_time": n == 1,
             "layers": run_layers(rounds, n, target)}
            for n in sorted({target.threads, 1}, reverse=True)]
    return {"machine": machine(target.threads), "load_average": load, "threads": target.threads, "vec": target.vec,
            "registers": target.registers, "tile_shape": host_tile_shape(target.vec), "rounds": rounds, "runs": runs}


def _tile(row: dict) -> str:
    return (f"{row['oc_tile']} x {row['nvec']}{'' if row['prefetch'] else ', no prefetch'}"
            + (f", channel tiles {'inner' if row['channels_inner'] else 'outer'}" if row.get("other_order") else ""))


def to_markdown(res: dict, section: str = "conv_tiles") -> str:
    lines = ["## Dense conv kernel: register tile per layer", "",
             f"Machine: {res['machine']}; load average {res['load_average']:.1f} at the start"
             f"{' (measured under load: other work shared the cores)' if res['load_average'] > 0.5 else ''}; "
             f"{res['rounds']} interleaved rounds; input "
             f"640x360, SIMD width {res['vec']} floats, {res['registers']} vector registers, tile shape "
             f"`{res['tile_shape']}` (`compiler.kernels.host_tile_shape`). Tile = output channels x vectors of one "
             "output row kept in registers; the first row of each layer is the default (`choose_schedule`, with "
             "the next input row prefetched and the tile order of `compiler.kernels.channel_tiles_inner`: "
             "channel tiles inner where the input window exceeds `INNER_WINDOW_BYTES`, 96 KB), the second the same "
             "tile without the prefetch, the third with the other tile order; `vs default` = per-round time ratio "
             "to the default; `% of ceiling` = against the cached quiet FMA ceiling; `% of "
             "probe` = median per-round ratio to the FMA probe (`benchmarks/fma_ceiling.py`) run in the same rounds "
             "on the same cores, the fair figure when other processes share the machine. "
             f"Command: `python benchmarks/conv_tiles.py {doc_flag(section, 'conv_tiles')}`."]
    lines += ["", WHY]
    for run in res["runs"]:
        clock = ("thread CPU time (the kernel runs on the calling thread; the probe: its process's CPU time), so "
                 "time other processes take from the core does not count" if run.get("cpu_time") else "wall time")
        lines += ["", f"**{run['threads']} thread{'s' if run['threads'] > 1 else ''}**, {clock}:", "",
                  "| layer | tile (channels x vectors) | median ms | min ms | max ms | GFLOP/s | % of ceiling "
                  "| % of probe | vs default | compile s |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
        for layer in run["layers"]:
            for i, r in enumerate(layer["rows"]):
                lines.append(f"| {layer['layer'] if i == 0 else ''} | {_tile(r)}{' (default)' if i == 0 else ''} "
                             f"| {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['max_ms']:.2f} | {r['gflops']:.0f} "
                             f"| {of_ceiling(r['gflops'], run['fma_ceiling_gflops'])} | {100 * r['of_probe']:.0f}% "
                             f"| {r['ratio_median']:.2f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] "
                             f"| {r['compile_s']:.1f} |")
        probes = ", ".join(f"{lay['probe_gflops']:.0f}" for lay in run["layers"])
        lines += ["", f"FMA probe in the same rounds, per layer: {probes} GFLOP/s."]
        mca = [(lay["layer"], lay["mca"]) for lay in run["layers"] if lay["mca"]]
        if mca:
            per = "; ".join(f"{name}: " + ", ".join(f"{v:.2f} ({cpu})" for cpu, v in m.items()) for name, m in mca)
            lines += ["", f"llvm-mca-19 on each default kernel's hot loop (vector FMAs per cycle; this core does 2): "
                          f"{per}."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_args(ap, "conv_tiles")
    args = ap.parse_args()
    res = run(args.rounds, args.threads)
    publish(to_markdown(res, doc_section(args.doc, "conv_tiles")), res, "conv_tiles", args.json, args.doc)


if __name__ == "__main__":
    main()
