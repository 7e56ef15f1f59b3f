"""Shared by the benchmarks: machine description, timing statistics, and docs/benchmarks.md sections.

Each benchmark owns one section of docs/benchmarks.md between
`<!-- BEGIN name -->` and `<!-- END name -->` markers and rewrites only that
section, so benchmarks can be re-run independently.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import statistics
import tempfile
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


# The ISA features that decide which kernels run and how fast: /proc/cpuinfo flag -> name printed.
FEATURES = {"x86_64": {f: f for f in ("fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16")},
            "aarch64": {"asimd": "neon", "asimddp": "dotprod", "asimdhp": "fp16", "i8mm": "i8mm", "sve": "sve"}}


def cpu_info(cpuinfo: str | None = None, arch: str | None = None) -> dict:
    """The CPU as /proc/cpuinfo names it (first processor): vendor, model name, family/model/stepping (on arm64:
    implementer, architecture, part, revision), every flag, and the features in FEATURES it has.
    `cpuinfo`/`arch` replace the file and platform.machine() (tests)."""
    from compiler.targets import cpu_model

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: only what the platform module knows
            cpuinfo = ""
    info: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip() and info:
            break
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    flags = sorted((info.get("flags") or info.get("Features") or "").split())
    names = FEATURES.get((arch or platform.machine()).lower().replace("arm64", "aarch64"), {})
    return {"vendor": info.get("vendor_id") or info.get("CPU implementer", "?"),
            "model_name": info.get("model name") or cpu_model(),
            "family": info.get("cpu family") or info.get("CPU architecture", "?"),
            "model": info.get("model") or info.get("CPU part", "?"),
            "stepping": info.get("stepping") or info.get("CPU revision", "?"),
            "flags": flags, "features": [names[f] for f in names if f in flags]}


def llvm_cpu() -> str:
    """LLVM's name for this CPU (what -mcpu=native and our host target use: 'znver4', 'rocketlake', ...)."""
    try:
        from tvm.target import codegen

        return str(codegen.llvm_get_system_cpu())
    except Exception as e:  # noqa: BLE001 - a header line must not fail a benchmark
        return f"? ({type(e).__name__})"


def cpu_line(c: dict | None = None) -> str:
    """'MODEL (VENDOR family F model M stepping S, LLVM NAME; FEATURES)': the CPU precisely, for headers."""
    c = c or cpu_info()
    ident = f"family {c['family']} model {c['model']} stepping {c['stepping']}"
    if c["vendor"].startswith("0x"):  # arm64: the implementer's code; architecture, part, revision
        ident = f"implementer {c['vendor']} architecture {c['family']} part {c['model']} revision {c['stepping']}"
    else:
        ident = f"{c['vendor']} {ident}"
    return f"{c['model_name']} ({ident}, LLVM {llvm_cpu()}; {' '.join(c['features']) or 'no SIMD FMA features'})"


def machine(threads: int | None = None) -> str:
    """One line naming the CPU precisely, cores, memory, OS, date, the thread count used (when given) and the
    measured fp32 FMA ceiling (benchmarks/fma_ceiling.py, cached per machine) on 1 core and on `threads`."""
    from benchmarks.fma_ceiling import describe
    from compiler.targets import default_threads

    try:
        mem_kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem = f"{mem_kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        mem = "? GiB"
    today = _dt.date.today().isoformat()
    used = f"; {threads} thread{'s' if threads != 1 else ''} used" if threads else ""
    return (f"{cpu_line()}, {os.cpu_count()} cores, {mem}, {platform.system()} {platform.machine()}, {today}{used}; "
            f"{describe(threads or default_threads())}")


def fma_ceiling_gflops(threads: int) -> float | None:
    """The machine's fp32 FMA ceiling on `threads` cores (cached; see fma_ceiling.py), None where unmeasurable."""
    from benchmarks.fma_ceiling import UNMEASURABLE, ceiling

    try:
        return ceiling(threads).gflops
    except UNMEASURABLE:
        return None


def of_ceiling(gflops: float, ceiling_gflops: float | None) -> str:
    """'87%': a GFLOP/s figure read against the FMA ceiling ('?' without one); above 100% means fewer multiplies."""
    return f"{100 * gflops / ceiling_gflops:.0f}%" if ceiling_gflops else "?"


def stats_ms(samples_s: list[float]) -> dict[str, float]:
    """Median/min/max in milliseconds of timings in seconds."""
    ms = [s * 1e3 for s in samples_s]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}


def vs_base(samples_ms, base_ms) -> dict[str, float]:
    """Median/min/max of interleaved timings (ms) and of their per-round ratio to a baseline's timings."""
    import numpy as np

    ms, ratio = np.asarray(samples_ms, dtype=float), np.asarray(samples_ms, dtype=float) / np.asarray(base_ms, dtype=float)
    return {"median_ms": float(np.median(ms)), "min_ms": float(ms.min()), "max_ms": float(ms.max()),
            "ratio_median": float(np.median(ratio)), "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max())}


def kernel_timer(func, arrays: list, target, cpu_time: bool = False) -> tuple:
    """(f(repeat) -> per-run ms, compile seconds) of one PrimFunc built for `target` on fixed numpy arguments
    (one warm-up run done); the shape compiler.latency.runners.interleaved takes.

    `cpu_time` (1 thread only): the calling thread's CPU time per call instead of wall time. With one thread TVM
    runs the kernel on the caller (a one-off check: 35.5 ms of CPU there, 1.5 ms in the pool's idle worker), so
    time other processes take from the core does not count: the figure to compare on a loaded machine.
    """
    import time

    import tvm

    args = [tvm.runtime.tensor(a, tvm.cpu()) for a in arrays]
    t0 = time.perf_counter()
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target.tvm_target())
    compile_s = time.perf_counter() - t0
    if cpu_time:
        fn = lib.mod["main"]
        fn(*args)  # warm-up

        def run(repeat: int) -> list[float]:
            out = []
            for _ in range(repeat):
                c0 = time.thread_time()
                fn(*args)
                out.append((time.thread_time() - c0) * 1e3)
            return out

        return run, compile_s
    f = lib.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=1)
    f(*args)  # warm-up
    return (lambda _repeat: [x * 1e3 for x in f(*args).results]), compile_s


def add_timing_args(ap, section: str) -> None:
    """The options every kernel benchmark takes: --rounds, --threads, --json, --doc (rewrites `section`)."""
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="TVM threads (default: all cores)")
    ap.add_argument("--json", type=Path, default=None)
    add_doc_arg(ap, section)


def add_doc_arg(ap, section: str) -> None:
    """--doc [SECTION]: rewrite `section` of docs/benchmarks.md, or SECTION (another CPU's figures beside the
    section's, which stay); `doc_section` reads it."""
    ap.add_argument("--doc", nargs="?", const=True, default=False, metavar="SECTION",
                    help=f"rewrite the {section} section of docs/benchmarks.md (or SECTION: e.g. another CPU's "
                         "figures beside the section's, which stay)")


def doc_flag(section: str, default: str) -> str:
    """The --doc argument that rewrites `section` of a benchmark whose own section is `default` (for its Command line)."""
    return "--doc" if section == default else f"--doc {section}"


def doc_section(doc: bool | str, default: str) -> str:
    """The section a --doc value names: its own name, else the benchmark's `default`."""
    return doc if isinstance(doc, str) else default


def load_note(load: float) -> str:
    """The doc's sentence on the load a benchmark ran under (`load`: the highest 1-minute load average seen), so a
    reader knows whether its times are quiet ones or ratios taken while other jobs shared the cores."""
    if load > 0.5:
        return f"Measured under load (load average {load:.1f} on {os.cpu_count()} cores, other jobs running)"
    return f"Load average {load:.1f}"


def publish(text: str, data: object, section: str, json_path: Path | None, doc: bool | str) -> None:
    """Print a benchmark's markdown, write its --json file, and (with --doc) its docs/benchmarks.md section
    (`doc` a name: that section instead, so a CPU without a feature adds its figures beside the ones with it)."""
    print(text)
    if json_path:
        write_json(json_path, data)
    if doc:
        update_section(doc_section(doc, section), text)


def write_json(path: Path, data: object) -> None:
    """A benchmark's --json output, written atomically (temp file beside it, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def update_section(name: str, markdown: str, doc: Path = DOC) -> None:
    """Replace (or append) the section `name` of docs/benchmarks.md, atomically."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    fd, tmp = tempfile.mkstemp(dir=doc.parent, prefix=".benchmarks.", suffix=".md")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, doc)
