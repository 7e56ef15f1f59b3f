"""Winograd F(2x2, 3x3) and F(4x4, 3x3) kernels vs our direct conv kernel: one layer, and plain-c32-d6 whole.

(1) conv3x3 32->32 + ReLU at 640x360 (and the other layers of LAYERS): the direct kernel
    (compiler.kernels), F(2x2) and F(4x4) (compiler.winograd; F(4x4) also without its software prefetch of the
    next block's input rows, to check that it pays), each built alone for the host, timed
    round-robin (one call each per round), ratio = Winograd / direct per round (median [min, max]). The
    issue's goal: F(4x4) / direct <= 0.6 on conv3x3 32->32. The `model` column is what the compiler's
    cost model (`choose_conv_kernel`) picks for that layer, so a wrong pick shows next to the measurement.
(2) plain-c32-d6 (compiler.bench.PlainSR) at 1x3x360x640, compiled whole with `compile_model` (checked against
    PyTorch) under `winograd_mode("direct")`, `("f2")`, `("f4")` and the default `("auto")`, timed the same way.

Usage: python benchmarks/winograd.py [--rounds R] [--threads N] [--json FILE] [--doc] [--size WxH] [--no-net]
(--doc rewrites the `winograd` section of docs/benchmarks.md; `--size 64x36 --rounds 2` is a quick check.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import (add_timing_args, doc_flag, doc_section, fma_ceiling_gflops, kernel_timer, machine,  # noqa: E402
                                of_ceiling, publish, vs_base)
from compiler.bench import PlainSR  # noqa: E402
from compiler.build import compile_model  # noqa: E402
from compiler.kernels import ConvSpec, choose_schedule, conv2d_primfunc, pack_weight  # noqa: E402
from compiler.latency.runners import interleaved  # noqa: E402
from compiler.targets import get_target, set_runtime_threads  # noqa: E402
from compiler.winograd import (choose_conv_kernel, choose_winograd_schedule, kernel_name,  # noqa: E402
                               transform_weight, winograd_mode, winograd_primfunc)

PAD = (1, 1, 1, 1)


def layers(h: int, w: int) -> list[tuple[str, ConvSpec]]:
    """The benchmark layers at input h x w: the issue's conv3x3 32->32, a 16-channel body, a shuffled tail."""
    return [("conv3x3 32->32 relu", ConvSpec(1, 32, h, w, 32, 3, 3, PAD, act="relu")),
            ("conv3x3 16->16 prelu", ConvSpec(1, 16, h, w, 16, 3, 3, PAD, act="prelu")),
            ("conv3x3 64->64 relu", ConvSpec(1, 64, h, w, 64, 3, 3, PAD, act="relu")),
            ("conv3x3 32->12 + shuffle 2 (tail)", ConvSpec(1, 32, h, w, 12, 3, 3, PAD, shuffle=2))]


def _arrays(spec: ConvSpec, weight_arg: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Arguments in the kernels' order: data, weight (packed or transformed), bias, alpha, residual, out."""
    out = [rng.random((spec.n, spec.cin, spec.h, spec.w), dtype=np.float32), weight_arg]
    if spec.bias:
        out.append(rng.standard_normal(spec.cout).astype(np.float32))
    if spec.act == "prelu":
        out.append(np.full(spec.cout, 0.25, np.float32))
    if spec.residual:
        out.append(rng.random(spec.residual_shape, dtype=np.float32))
    return out + [np.zeros(spec.out_shape, np.float32)]


def run_layers(size: tuple[int, int], rounds: int, target) -> list[dict]:
    """Per layer: direct, F(2), F(4) built alone and timed interleaved; ratios to direct."""
    rng = np.random.default_rng(0)
    result = []
    for name, spec in layers(size[1], size[0]):
        weight = (rng.standard_normal((spec.cout, spec.cin, 3, 3)) * 0.1).astype(np.float32)
        sched = choose_schedule(spec, target.vec, target.registers)
        variants = [("direct", conv2d_primfunc(spec, sched), pack_weight(weight, sched.oc_tile))]
        for m in (2, 4):
            ws = choose_winograd_schedule(spec, m, target.vec, target.registers)
            variants.append((f"F({m}x{m})", winograd_primfunc(spec, ws), transform_weight(weight, ws)))
        variants.append(("F(4x4), no prefetch", winograd_primfunc(spec, ws, prefetch=False), transform_weight(weight, ws)))
        timers, compile_s = [], []
        for _, func, warg in variants:
            timer, seconds = kernel_timer(func, _arrays(spec, warg, rng), target)
            timers.append(timer)
            compile_s.append(seconds)
        samples = interleaved(timers, rounds)
        rows = [{"kernel": v[0], **vs_base(s, samples[0]), "compile_s": cs,
                 "gflops": 2 * spec.macs() / float(np.median(s)) / 1e6}  # direct-equivalent GFLOP/s
                for v, s, cs in zip(variants, samples, compile_s)]
        model = kernel_name(choose_conv_kernel(spec, target.vec, target.registers, mode="auto"))
        result.append({"layer": name, "model_choice": model, "rows": rows})
        print(f"{name} (model: {model}): " + ", ".join(f"{r['kernel']} {r['median_ms']:.2f} ms "
                                                       f"({r['ratio_median']:.2f})" for r in rows), flush=True)
    return result


def run_net(size: tuple[int, int], rounds: int, target) -> list[dict]:
    """plain-c32-d6 compiled whole per Winograd mode, timed interleaved; ratios to the direct build."""
    torch.manual_seed(0)
    net = PlainSR().eval()
    shape = (1, 3, size[1], size[0])
    builds = []
    for mode in ("direct", "f2", "f4", "auto"):
        t0 = time.perf_counter()
        with winograd_mode(mode):
            compiled = compile_model(net, shape, target)
        timer = compiled.timer(number=1, repeat=1)
        timer()  # warm-up
        builds.append((mode, compiled, time.perf_counter() - t0,
                       lambda _repeat, t=timer: [float(x) * 1e3 for x in t()]))
    samples = interleaved([b[3] for b in builds], rounds)
    return [{"mode": mode, **vs_base(s, samples[0]), "compile_s": cs, "max_abs_diff": c.check["max_abs_diff"]}
            for (mode, c, cs, _), s in zip(builds, samples)]


def to_markdown(res: dict, section: str = "winograd") -> str:
    w, h = res["size"]
    lines = ["## Winograd conv kernels vs the direct kernel", "",
             f"Machine: {res['machine']}; {res['rounds']} interleaved rounds; input {w}x{h}, SIMD width "
             f"{res['vec']} floats. `vs direct` = per-round time ratio to the direct kernel (median [min, max]); "
             "GFLOP/s counts the direct convolution's multiply-adds (so above the FMA ceiling = fewer multiplies); "
             "`model` = the kernel `choose_conv_kernel`'s cost model picks. "
             f"Command: `python benchmarks/winograd.py {doc_flag(section, 'winograd')}`.", "",
             "| layer | kernel | model | median ms | min ms | max ms | GFLOP/s | % of ceiling | vs direct | compile s |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for layer in res["layers"]:
        for i, r in enumerate(layer["rows"]):
            lines.append(f"| {layer['layer'] if i == 0 else ''} | {r['kernel']} | {layer['model_choice'] if i == 0 else ''} "
                         f"| {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['max_ms']:.2f} | {r['gflops']:.0f} "
                         f"| {of_ceiling(r['gflops'], res['fma_ceiling_gflops'])} "
                         f"| {r['ratio_median']:.2f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] | {r['compile_s']:.1f} |")
    if res.get("net"):
        lines += ["", f"plain-c32-d6 whole (1x3x{h}x{w}), `compile_model` per Winograd mode:", "",
                  "| mode | median ms | min ms | max ms | vs direct | max abs diff vs PyTorch | compile s |",
                  "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]
        for r in res["net"]:
            lines.append(f"| {r['mode']} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['max_ms']:.2f} "
                         f"| {r['ratio_median']:.2f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] "
                         f"| {r['max_abs_diff']:.2g} | {r['compile_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_args(ap, "winograd")
    ap.add_argument("--size", default="640x360", help="input WxH (default 640x360)")
    ap.add_argument("--no-net", action="store_true", help="skip the whole-network comparison")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    target = get_target("host", args.threads)
    set_runtime_threads(target.threads)
    res = {"machine": machine(target.threads), "threads": target.threads, "size": list(size), "rounds": args.rounds,
           "fma_ceiling_gflops": fma_ceiling_gflops(target.threads), "vec": target.vec,
           "layers": run_layers(size, args.rounds, target)}
    res["net"] = None if args.no_net else run_net(size, args.rounds, target)
    publish(to_markdown(res, doc_section(args.doc, "winograd")), res, "winograd", args.json, args.doc)


if __name__ == "__main__":
    main()
