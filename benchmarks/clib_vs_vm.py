"""Host latency of the c-lib (libsrmodel.so through ctypes) vs the same model in the TVM Relax VM.

Both run the same kernels (compiler.build's pipeline); the difference is the runtime around them: our
generated driver + thread pool vs TVM's VM + thread pool. Networks: the `engines` benchmark's
plain-c32-d6 and ecbsr-x2, plus FSRCNN x2, seeded untrained weights. Engines are timed interleaved
(alternating order each round, same thread count) so load from other processes hits both alike;
latency = median of the rounds after warm-up. Outputs are compared first (max |diff| must be <= 1e-4).

Usage: python benchmarks/clib_vs_vm.py [--size 640x360] [--threads N[,M...]] [--repeat R] [--json FILE] [--doc [SECTION]]
(--size is the INPUT width x height; --doc rewrites the `clib` section of docs/benchmarks.md, --doc SECTION
writes SECTION instead.)
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
import torch
import tvm
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import add_doc_arg, doc_flag, doc_section, machine, stats_ms, update_section  # noqa: E402
from compiler.build import compile_model  # noqa: E402
from compiler.clib.export import build_clib  # noqa: E402
from compiler.clib.runner import CLib, aligned_empty  # noqa: E402
from compiler.targets import default_threads, get_target  # noqa: E402

TARGET_RATIO = 1.10


def networks() -> dict[str, torch.nn.Module]:
    """plain-c32-d6 and ecbsr-x2 (as in benchmarks/engines.py) and FSRCNN x2, seeded."""
    from benchmarks.engines import networks as engine_networks
    from srprune.models import build_model, deploy

    nets = engine_networks()
    torch.manual_seed(0)
    nets["fsrcnn-x2"] = deploy(build_model("fsrcnn", 2)).eval()
    return nets


def bench_one(model: torch.nn.Module, shape: tuple[int, int, int, int], threads: int, repeat: int,
              work: Path) -> dict:
    """Build both engines, check they agree, then time them interleaved."""
    spec = get_target("host", threads)
    compiled = compile_model(model, shape, spec)
    build_clib(model, shape, spec, work, name="bench")
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    vm = compiled._machine()
    x_tvm = tvm.runtime.tensor(x, tvm.cpu())
    with CLib(work / "libsrmodel.so") as lib:
        lib.set_threads(threads)
        y = aligned_empty(lib.output_shape)
        diff = float(np.abs(lib.run(x, y) - vm["main"](x_tvm).numpy()).max())
        if diff > 1e-4:
            raise SystemExit(f"c-lib and VM outputs differ by {diff:.3g}")

        def run_vm() -> None:
            vm["main"](x_tvm)

        def run_clib() -> None:
            lib.run(x, y)

        engines = {"vm": run_vm, "clib": run_clib}
        times: dict[str, list[float]] = {k: [] for k in engines}
        for r in tqdm(range(repeat + 2), desc="rounds", leave=False):
            order = list(engines) if r % 2 == 0 else list(reversed(engines))
            for name in order:
                t0 = time.perf_counter()
                engines[name]()
                dt = time.perf_counter() - t0
                if r >= 2:
                    times[name].append(dt)
    res = {k: stats_ms(v) for k, v in times.items()}
    res["ratio"] = res["clib"]["median_ms"] / res["vm"]["median_ms"]
    res["max_abs_diff"] = diff
    return res


def markdown(results: dict, shape: tuple[int, ...], threads: list[int], repeat: int, load: float,
             section: str = "clib") -> str:
    """The `clib` section of docs/benchmarks.md (or `section`, named in its command line)."""
    tlist = ",".join(map(str, threads))
    lines = [
        "## clib_vs_vm.py: the c-lib vs the TVM Relax VM (host)",
        "",
        "```",
        f"python benchmarks/clib_vs_vm.py --size {shape[3]}x{shape[2]} --threads {tlist} --repeat {repeat} "
        f"{doc_flag(section, 'clib')}",
        "```",
        "",
        f"Machine: {machine()}, load average {load:.1f} when the run started (a shared machine: medians move by "
        f"10-20% between runs, and with this load 2 threads can be slower than 1). Input "
        f"{'x'.join(map(str, shape))}, {tlist} threads, median of {repeat} "
        "interleaved rounds after 2 warm-up rounds; both engines run the same kernels, called from Python "
        "(the c-lib through ctypes with preallocated 64-byte aligned buffers, the VM with a preallocated "
        "input tensor). Target: c-lib within 10% of the VM (ratio <= 1.10).",
        "",
        "| network | threads | VM median ms (min-max) | c-lib median ms (min-max) | c-lib / VM | max abs diff |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, r in results.items():
        vm, cl = r["vm"], r["clib"]
        name, nthreads = key.rsplit("@", 1)
        lines.append(f"| {name} | {nthreads} | {vm['median_ms']:.2f} ({vm['min_ms']:.2f}-{vm['max_ms']:.2f}) | "
                     f"{cl['median_ms']:.2f} ({cl['min_ms']:.2f}-{cl['max_ms']:.2f}) | {r['ratio']:.3f} | "
                     f"{r['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="640x360", help="input WIDTHxHEIGHT (default 640x360: 720p output at x2)")
    ap.add_argument("--threads", default=None,
                    help="comma-separated thread counts for both engines (default: all cores)")
    ap.add_argument("--repeat", type=int, default=15, help="timed rounds")
    ap.add_argument("--only", default=None, help="comma-separated network names")
    ap.add_argument("--json", type=Path, default=None)
    add_doc_arg(ap, "clib")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    shape = (1, 3, h, w)
    threads = [int(t) for t in args.threads.split(",")] if args.threads else [default_threads()]
    nets = networks()
    if args.only:
        nets = {k: v for k, v in nets.items() if k in args.only.split(",")}
    load = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in nets.items():
            for n in threads:
                key = f"{name}@{n}"
                results[key] = bench_one(model, shape, n, args.repeat, Path(tmp) / key)
                r = results[key]
                print(f"{key}: vm {r['vm']['median_ms']:.2f} ms, clib {r['clib']['median_ms']:.2f} ms, "
                      f"ratio {r['ratio']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"shape": shape, "threads": threads, "results": results}, indent=2))
    md = markdown(results, shape, threads, args.repeat, load, doc_section(args.doc, "clib"))
    print(md)
    if args.doc:
        update_section(doc_section(args.doc, "clib"), md)


if __name__ == "__main__":
    main()
