"""int8 conv kernels (compiler/int8) vs our fp32 direct kernel: conv3x3 32->32 + ReLU at 640x360.

Variants, each one PrimFunc built for the host and timed in interleaved rounds (one call of each per round, after
one warm-up call), ratio = variant / fp32 dense per round (median, min, max over rounds):
- fp32 dense: compiler.kernels' template (the default schedule of the target), bias + ReLU fused;
- int8 dense: the host's int8 form (VNNI where the CPU has it), uint8 in -> uint8 out, the contract's epilogue;
- int8 dense, no prefetch: the same without the software prefetch of the next input row (what it is worth);
- int8 dense, other tile order: the dense tiles in the order compiler.kernels.channel_tiles_inner does not pick;
- int8 50% block-sparse: half of the (4 output x 4 input channels at one tap) blocks zero, the structure the int8
  kernels skip (a 4-channel dot is their unit of work);
- int8 dense, AVX2 form (a Haswell target: what a CPU without VNNI runs), for comparison.
Issue 19's goals: int8 dense <= 0.35 of fp32 dense, int8 + 50% block-sparse <= 0.25.

Usage: python benchmarks/int8_kernels.py [--rounds R] [--threads N] [--json FILE] [--doc] [--quick]
(--doc rewrites the `int8_kernels` section of docs/benchmarks.md; --quick: a 1x32x36x64 input, a smoke test.)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import (add_timing_args, doc_flag, doc_section, kernel_timer, load_note, machine,  # noqa: E402
                                publish, vs_base)
from compiler.int8.isa import choose_isa  # noqa: E402
from compiler.int8.kernel import build_kernel, default_channels_inner  # noqa: E402
from compiler.kernels import ConvSpec, choose_schedule, conv2d_primfunc, pack_weight  # noqa: E402
from compiler.latency.runners import interleaved  # noqa: E402
from compiler.quant_spec import QConv, QParams, reference_conv  # noqa: E402
from compiler.targets import TargetSpec, get_target, set_runtime_threads  # noqa: E402

CHANNELS = 32
GOALS = {"int8 dense": 0.35, "int8 50% block-sparse": 0.25}


def _layer(rng, zero_blocks: float) -> QConv:
    w = rng.integers(-127, 128, (CHANNELS, CHANNELS, 3, 3)).astype(np.int8)
    if zero_blocks:
        blocks = rng.random((CHANNELS // 4, CHANNELS // 4, 3, 3)) < zero_blocks
        mask = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)
        w[mask] = 0
    ws = np.full(CHANNELS, 2.0 / (127 * np.sqrt(CHANNELS * 9)), np.float32)
    return QConv(w, ws, rng.integers(-2000, 2000, CHANNELS).astype(np.int32), QParams(0.02, 10),
                 QParams(0.03, 5), "relu")


def _check(name: str, func, arrays: list, target: TargetSpec, want: np.ndarray) -> None:
    """The timed PrimFunc, built once more and run here, must equal the integer reference."""
    import tvm

    with tvm.transform.PassContext(opt_level=3):
        lib = tvm.tirx.build(func, target=target.tvm_target())
    args = [tvm.runtime.tensor(a) for a in arrays]
    lib(*args)
    if not np.array_equal(args[-1].numpy(), want):
        raise SystemExit(f"{name}: output differs from compiler.quant_spec.reference_conv")


def _int8(name: str, layer: QConv, shape: tuple[int, int, int, int], target: TargetSpec, x: np.ndarray,
          sparse: str, prefetch: bool = True, channels_inner: bool | None = None) -> dict:
    isa = choose_isa(target)
    n, _, h, w = shape
    kernel = build_kernel(layer, n, h, w, isa, sparse=sparse, prefetch=prefetch, channels_inner=channels_inner)
    arrays = [x, *kernel.consts, np.zeros((n, CHANNELS, h, w), np.uint8)]
    timer, compile_s = kernel_timer(kernel.func, arrays, target)
    _check(name, kernel.func, arrays, target, reference_conv(x, layer))
    kept = 1.0 - float(np.mean(layer.weight == 0))
    return {"name": name, "isa": isa.name, "timer": timer, "compile_s": compile_s, "kept": kept,
            "sparse": kernel.plan.sparse}


def run(rounds: int, threads: int | None, quick: bool) -> dict:
    """Build every variant, time them interleaved, return per-variant stats and ratios to fp32 dense."""
    target = get_target("host", threads)
    set_runtime_threads(target.threads)
    shape = (1, CHANNELS, 36, 64) if quick else (1, CHANNELS, 360, 640)
    rng = np.random.default_rng(0)
    spec = ConvSpec(shape[0], CHANNELS, shape[2], shape[3], CHANNELS, 3, 3, (1, 1, 1, 1), act="relu")
    sched = choose_schedule(spec, target.vec, target.registers)
    wf = rng.standard_normal((CHANNELS, CHANNELS, 3, 3)).astype(np.float32) * 0.06
    xf = rng.random(shape, dtype=np.float32)
    arrays = [xf, pack_weight(wf, sched.oc_tile), np.zeros(CHANNELS, np.float32), np.zeros(spec.out_shape, np.float32)]
    timer, compile_s = kernel_timer(conv2d_primfunc(spec, sched), arrays, target)
    variants = [{"name": "fp32 dense", "isa": f"fp32 x{target.vec}", "timer": timer, "compile_s": compile_s,
                 "kept": 1.0, "sparse": False}]
    x = rng.integers(0, 256, shape).astype(np.uint8)
    dense, sparse = _layer(rng, 0.0), _layer(rng, 0.5)
    variants.append(_int8("int8 dense", dense, shape, target, x, "dense"))
    variants.append(_int8("int8 dense, no prefetch", dense, shape, target, x, "dense", prefetch=False))
    isa = choose_isa(target)
    built = build_kernel(dense, shape[0], shape[2], shape[3], isa, sparse="dense")
    inner = default_channels_inner(built.spec, isa, built.plan)
    variants.append(_int8(f"int8 dense, channel tiles {'outer' if inner else 'inner'}", dense, shape, target, x,
                          "dense", channels_inner=not inner))
    variants.append(_int8("int8 50% block-sparse", sparse, shape, target, x, "sparse"))
    haswell = dataclasses.replace(target, name="x86-avx2", tvm={**target.tvm, "mcpu": "haswell"}, vec=8, registers=16)
    if choose_isa(target).name != "avx2" and not target.triple.startswith(("aarch64", "arm64")):
        variants.append(_int8("int8 dense (AVX2 form)", dense, shape, haswell, x, "dense"))
    load = os.getloadavg()[0]
    samples = interleaved([v["timer"] for v in variants], rounds)
    load = max(load, os.getloadavg()[0])
    base = samples[0]
    macs = int(np.prod(shape)) * CHANNELS * 9
    result = {"machine": machine(target.threads), "threads": target.threads, "rounds": rounds, "shape": list(shape),
              "load": load_note(load), "variants": []}
    for v, ms in zip(variants, samples):
        stats = vs_base(ms, base)
        result["variants"].append({k: v[k] for k in ("name", "isa", "compile_s", "kept", "sparse")} | stats
                                  | {"gmacs": macs * v["kept"] / stats["median_ms"] / 1e6})
    return result


def to_markdown(res: dict, section: str = "int8_kernels") -> str:
    """The docs/benchmarks.md section."""
    lines = ["## int8 kernels: conv3x3 32->32 + ReLU, int8 vs fp32", "",
             f"Machine: {res['machine']}. {res['load']}. Input {'x'.join(map(str, res['shape']))}; {res['rounds']} interleaved "
             "rounds (one call of every variant per round, after one warm-up call each); `vs fp32` = per-round "
             "latency ratio to the fp32 dense kernel (median [min, max] over rounds). The int8 kernels' outputs "
             "equal compiler.quant_spec.reference_conv (checked before timing). Block-sparse: half of the "
             "(4 output x 4 input channels at one tap) blocks zero. "
             f"Command: `python benchmarks/int8_kernels.py {doc_flag(section, 'int8_kernels')}`.",
             "",
             "| variant | form | kept weights | median ms | min ms | max ms | vs fp32 | GMAC/s (kept) | compile s |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for v in res["variants"]:
        ratio = "1" if v["name"] == "fp32 dense" else \
            f"{v['ratio_median']:.2f} [{v['ratio_min']:.2f}, {v['ratio_max']:.2f}]"
        lines.append(f"| {v['name']} | {v['isa']} | {v['kept']:.2f} | {v['median_ms']:.2f} | {v['min_ms']:.2f} "
                     f"| {v['max_ms']:.2f} | {ratio} | {v['gmacs']:.0f} | {v['compile_s']:.1f} |")
    lines += ["", "Goals of issue 19 (vs fp32 dense): int8 dense <= 0.35, int8 + 50% block-sparse <= 0.25."]
    for v in res["variants"]:
        if v["name"] in GOALS:
            r, goal = v["ratio_median"], GOALS[v["name"]]
            lines.append(f"- {v['name']}: {r:.2f} vs goal {goal} ({'met' if r <= goal else 'not met'})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_args(ap, "int8_kernels")
    ap.add_argument("--quick", action="store_true", help="a small input (smoke test)")
    args = ap.parse_args()
    res = run(args.rounds, args.threads, args.quick)
    publish(to_markdown(res, doc_section(args.doc, "int8_kernels")), res, "int8_kernels", args.json,
            args.doc if not args.quick else False)


if __name__ == "__main__":
    main()
