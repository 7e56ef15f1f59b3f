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


def machine() -> str:
    """One line naming the CPU, cores, memory, OS and date."""
    from compiler.targets import cpu_model

    cpu = cpu_model()
    try:
        mem_kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem = f"{mem_kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        mem = "? GiB"
    today = _dt.date.today().isoformat()
    return f"{cpu}, {os.cpu_count()} cores, {mem}, {platform.system()} {platform.machine()}, {today}"


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


def kernel_timer(func, arrays: list, target) -> tuple:
    """(f(repeat) -> per-run ms, compile seconds) of one PrimFunc built for `target` on fixed numpy arguments
    (one warm-up run done); the shape compiler.latency.runners.interleaved takes."""
    import time

    import tvm

    args = [tvm.runtime.tensor(a, tvm.cpu()) for a in arrays]
    t0 = time.perf_counter()
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target.tvm_target())
    compile_s = time.perf_counter() - t0
    f = lib.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=1)
    f(*args)  # warm-up
    return (lambda _repeat: [x * 1e3 for x in f(*args).results]), compile_s


def add_timing_args(ap, section: str) -> None:
    """The options every kernel benchmark takes: --rounds, --threads, --json, --doc (rewrites `section`)."""
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="TVM threads (default: all cores)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--doc", action="store_true", help=f"rewrite the {section} section of docs/benchmarks.md")


def publish(text: str, data: object, section: str, json_path: Path | None, doc: bool) -> None:
    """Print a benchmark's markdown, write its --json file, and (with --doc) its docs/benchmarks.md section."""
    print(text)
    if json_path:
        write_json(json_path, data)
    if doc:
        update_section(section, text)


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
