"""The c-lib's thread pool beside another process: how long a waiting thread pauses before it yields the CPU.

A waiting pool thread (a worker between kernels, the caller waiting for its workers) pauses, then yields the CPU
(sched_yield), then sleeps (compiler/clib/csrc/srmodel_rt.c). A yield hands the core to any other runnable process
for its time slice (milliseconds), so with one busy background process a network whose threads wait often loses
milliseconds per wait. This links the same plan twice, with the runtime's pause phase at its default (SRM_PAUSE,
256 rounds; TVM's pool yields as early) and 32 times longer, and times both interleaved: on the quiet machine, beside one busy process of normal priority, and beside one in the SCHED_IDLE class (what a job under
`chrt --idle 0` is: the lowest class, which a yield still hands the core to).

Networks: the `engines` benchmark's plain-c32-d6 and ecbsr-x2 (fp32, seeded), and with --model any model file
srprune compiles (a quantised / mixed int8 model builds the int8 c-lib's plan).

Usage: python benchmarks/clib_contention.py [--threads 2] [--rounds 15] [--model FILE ...] [--json FILE] [--doc [SECTION]]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import add_doc_arg, doc_section, machine, update_section, write_json  # noqa: E402

LONG_PAUSE = 8192
BUSY = "while True: pass"
CONDITIONS = ("quiet", "beside 1 busy process", "beside 1 busy SCHED_IDLE process")


def plans(models: list[Path], shape: tuple[int, int, int, int], threads: int) -> dict[str, tuple]:
    """name -> (plan, link target) for the built-in networks and each --model file."""
    from benchmarks.engines import networks
    from compiler.clib.plan import build_plan
    from compiler.int8.isa import choose_isa, kernel_target
    from compiler.int8.network import int8_plan
    from compiler.targets import get_target
    from srprune.export import deployable
    from srprune.quant.deploy import to_int8_network
    from srprune.quant.qmodel import is_quantized

    spec = get_target("host", threads)
    out = {name: (build_plan(net, shape, spec), spec) for name, net in networks().items()
           if name in ("plain-c32-d6", "ecbsr-x2")}
    for path in models:
        net, _, _ = deployable(str(path), None, 0)
        if is_quantized(net):
            isa = choose_isa(spec)
            out[f"{path} (int8 c-lib)"] = (int8_plan(to_int8_network(net, str(path)), shape, isa, "auto"),
                                           kernel_target(spec, isa))
        else:
            out[str(path)] = (build_plan(net, shape, spec), spec)
    return out


@contextlib.contextmanager
def background(condition: str):
    """One busy Python process for the condition (none when quiet), stopped afterwards."""
    if condition == "quiet":
        yield
        return
    cmd = [sys.executable, "-c", BUSY]
    if "SCHED_IDLE" in condition:
        cmd = ["chrt", "--idle", "0", *cmd]
    proc = subprocess.Popen(cmd)
    time.sleep(0.5)
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def measure(name: str, plan, target, threads: int, rounds: int, work: Path) -> list[dict]:
    """Both runtimes of one plan, interleaved, in every condition."""
    from compiler.clib.export import link_clib
    from compiler.clib.runner import CLib
    from compiler.latency.runners import POOL_SETTLE_S, interleaved

    variants = {"default": (), f"pause {LONG_PAUSE}": (f"-DSRM_PAUSE={LONG_PAUSE}",)}
    rows = []
    with contextlib.ExitStack() as stack:
        timers = []
        for i, flags in enumerate(variants.values()):
            folder = Path(tempfile.mkdtemp(prefix=f"variant{i}-", dir=work))
            built = link_clib(plan, target, folder, name, bench=False, runtime_flags=flags)
            lib = stack.enter_context(CLib(built.library))
            lib.set_threads(threads)
            timers.append(lib.timer(settle_s=POOL_SETTLE_S))  # the other variant's pool asleep first
        for condition in CONDITIONS:
            with background(condition):
                old, new = interleaved(timers, rounds)  # default, long pause
            ratios = [n / o for o, n in zip(old, new)]
            rows.append({"network": name, "condition": condition,
                         **{f"{k}_ms": {"median": statistics.median(s), "min": min(s), "max": max(s)}
                            for k, s in (("default", old), ("long", new))},
                         "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}})
            r = rows[-1]
            print(f"{name:>24} | {condition:<34} | default {r['default_ms']['median']:7.2f} ms | long pause "
                  f"{r['long_ms']['median']:7.2f} ms | long/default {r['ratio']['median']:.2f}", flush=True)
    return rows


def report(rows: list[dict], threads: int, rounds: int, shape: tuple, minutes: float, argv: list[str]) -> str:
    lines = ["## c-lib thread pool beside other processes (pause before yielding)", "",
             f"Machine: {machine(threads)}. Input {'x'.join(map(str, shape))}, {rounds} interleaved rounds per "
             f"condition (median [min, max]), {minutes:.1f} min. Default = the runtime as shipped (a waiting thread "
             f"yields after 256 pause rounds); long = linked with SRM_PAUSE={LONG_PAUSE}. The "
             "background process is one busy Python loop (normal priority, or `chrt --idle 0`). Command: "
             f"`python benchmarks/clib_contention.py{' ' + ' '.join(argv) if argv else ''}`.", "",
             "| network | condition | default ms | long pause ms | long / default |", "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        b, n, q = r["default_ms"], r["long_ms"], r["ratio"]
        lines.append(f"| {r['network']} | {r['condition']} | {b['median']:.2f} [{b['min']:.2f}, {b['max']:.2f}] | "
                     f"{n['median']:.2f} [{n['min']:.2f}, {n['max']:.2f}] | {q['median']:.2f} "
                     f"[{q['min']:.2f}, {q['max']:.2f}] |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--size", default="640x360", help="input W x H")
    ap.add_argument("--model", type=Path, action="append", default=[], help="also this model file (repeatable)")
    ap.add_argument("--json", type=Path, default=None)
    add_doc_arg(ap, "clib_contention")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    shape = (1, 3, h, w)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, (plan, target) in plans(args.model, shape, args.threads).items():
            rows += measure(name, plan, target, args.threads, args.rounds, Path(work))
    md = report(rows, args.threads, args.rounds, shape, (time.perf_counter() - started) / 60,
                sys.argv[1:])
    print(md)
    if args.json:
        write_json(args.json, rows)
    if args.doc:
        update_section(doc_section(args.doc, "clib_contention"), md)


if __name__ == "__main__":
    main()
