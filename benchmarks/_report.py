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
