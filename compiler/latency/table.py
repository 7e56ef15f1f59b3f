"""The layer table on disk: measured time of each layer configuration, for one target and thread count.

Why JSON rewritten atomically after every measurement: a build of a few hundred entries must survive
being killed (resume = skip the keys already there), and a half-written file must never be read as a
table. The header names the target, threads, TVM version, machine and a fingerprint of the compiler
sources, because a timing is only meaningful for the code and the machine that produced it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srcommon.atomic import write_json
from compiler.errors import CompilerError
from compiler.latency.config import LayerConfig

FORMAT = "srprune-latency-table"
VERSION = 1
TABLE_FILE = "table.json"
# Header field naming where the weights of the pruned entries came from (see LatencyTable.use_pruned_weights).
PRUNED_WEIGHTS = "pruned_weights"
# The compiler sources whose code a timing depends on (the fingerprint in the header).
_COMPILER_SOURCES = ("kernels.py", "epilogue.py", "rewrite.py", "build.py", "pipeline.py", "targets.py", "canonicalize.py",
                     "sparse.py", "winograd.py", "quant_spec.py", "int8/spec.py", "int8/isa.py", "int8/kernel.py",
                     "int8/writeback.py", "int8/network.py")
# Header field naming how conv layers choose their kernel (direct, Winograd F(m), sparse). A table whose conv
# entries were timed under another rule (older tables: direct kernels only) holds times of other code: its conv
# entries are re-measured by a build (`open_table`) and refused by a prediction (`load_table`).
KERNEL_CHOICE = "kernel_choice"
KERNEL_RULE = "direct|winograd(F2,F4)|sparse per layer, v2 (sparse only below the chosen dense kernel; direct twins)"


def median(samples: list[float]) -> float:
    """The median of timing samples (the mean of the middle two for an even count)."""
    ordered = sorted(float(s) for s in samples)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def compiler_fingerprint() -> str:
    """Short hash of the compiler sources that decide what a layer compiles to."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for name in _COMPILER_SOURCES:
        p = root / name
        if p.exists():
            h.update(name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def machine_name() -> str:
    """CPU model and core count of this machine (where a host table was measured)."""
    from compiler.targets import cpu_model

    cpu = cpu_model()
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def make_header(target: str, threads: int, machine: str | None = None) -> dict[str, Any]:
    """The header of a new table for `target` at `threads` threads."""
    import tvm

    return {"target": target, "threads": int(threads), "tvm": str(tvm.__version__),
            "machine": machine or machine_name(), "compiler": compiler_fingerprint(), KERNEL_CHOICE: KERNEL_RULE,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


@dataclass
class Entry:
    """One measured configuration: median of `samples_ms` (each one timed run after warm-up); `kernel` is the code
    that ran (compiler.winograd.kernel_name: "direct", "winograd2", "winograd4"; "sparse"; "graph" for subgraphs;
    int8 entries "int8-FORM" or "int8-FORM-sparse", FORM the dot form of compiler.int8.isa: vnni, avx2, sdot, neon)."""

    config: LayerConfig
    median_ms: float
    samples_ms: list[float] = field(default_factory=list)
    kernel: str = ""
    # A dense conv that runs a Winograd kernel: the median time of the direct kernel on the same layer, timed in the
    # same rounds. Why: a pruned layer's sparse kernel is a direct kernel skipping pruned weights, so its speed factor
    # is measured and applied against the direct time (compiler.latency.predict).
    direct_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        out: dict[str, Any] = {"config": self.config.to_dict(), "median_ms": self.median_ms,
                               "samples_ms": self.samples_ms}
        if self.kernel:
            out["kernel"] = self.kernel
        if self.direct_ms is not None:
            out["direct_ms"] = self.direct_ms
        return out


@dataclass
class LatencyTable:
    """Entries by configuration key plus the header; `save()` replaces the file atomically."""

    path: Path
    header: dict[str, Any]
    entries: dict[str, Entry] = field(default_factory=dict)

    def __contains__(self, cfg: LayerConfig) -> bool:
        return cfg.key() in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, cfg: LayerConfig) -> Entry | None:
        """The entry of `cfg`, or None."""
        return self.entries.get(cfg.key())

    def add(self, cfg: LayerConfig, samples_ms: list[float], kernel: str = "", direct_ms: float | None = None) -> Entry:
        """Record a measurement (median of the samples), the kernel that ran and (Winograd) the direct kernel's
        median; does not save."""
        if not samples_ms or any(not (s >= 0) for s in samples_ms):
            raise CompilerError(f"no valid timing samples for {cfg.key()}")
        if direct_ms is not None and not float(direct_ms) > 0:
            raise CompilerError(f"direct-kernel time of {cfg.key()} must be positive, got {direct_ms!r}")
        entry = Entry(cfg, median(samples_ms), [float(s) for s in samples_ms], str(kernel),
                      None if direct_ms is None else float(direct_ms))
        self.entries[cfg.key()] = entry
        return entry

    def direct_view(self) -> LatencyTable:
        """The same entries with each Winograd entry's time replaced by its direct twin's (entries without one left
        out): the table a direct-kernel-only compiler would have, against which sparse speed factors are taken."""
        view = LatencyTable(self.path, dict(self.header))
        for key, e in self.entries.items():
            if e.kernel.startswith("winograd"):
                if e.direct_ms is None:
                    continue
                e = Entry(e.config, e.direct_ms, [e.direct_ms], "direct")
            view.entries[key] = e
        return view

    def missing(self, configs: list[LayerConfig]) -> list[LayerConfig]:
        """The configurations not yet measured, in order, without duplicates."""
        seen, out = set(self.entries), []
        for c in configs:
            k = c.key()
            if k not in seen:
                seen.add(k)
                out.append(c)
        return out

    def pruned_entries(self) -> list[str]:
        """Keys of the entries of pruned layers."""
        return [k for k, e in self.entries.items() if e.config.scheme != "dense"]

    def use_pruned_weights(self, source: str) -> int:
        """Record that pruned layers are timed on weights from `source`; drop entries timed on others.

        Why: a sparse kernel's code and time depend on where the zeros are, so an entry measured on
        another weight generator (tables older than this field: random whole blocks, a fixed list of
        patterns) means something else and must be measured again, not silently reused. Dense
        entries do not depend on it and stay. Returns how many entries were dropped (not saved yet).
        """
        if self.header.get(PRUNED_WEIGHTS) == source:
            return 0
        stale = self.pruned_entries()
        for key in stale:
            del self.entries[key]
        self.header[PRUNED_WEIGHTS] = source
        return len(stale)

    def conv_entries(self) -> list[str]:
        """Keys of the entries of conv layers (whose kernel the per-layer choice decides)."""
        return [k for k, e in self.entries.items() if e.config.op == "conv"]

    def use_kernel_rule(self) -> int:
        """Adopt this compiler's kernel choice (KERNEL_RULE); drop conv entries timed under another. Returns how many
        were dropped (not saved yet): they are measured again, never reused for code the compiler no longer emits."""
        if self.header.get(KERNEL_CHOICE) == KERNEL_RULE:
            return 0
        stale = self.conv_entries()
        for key in stale:
            del self.entries[key]
        self.header[KERNEL_CHOICE] = KERNEL_RULE
        return len(stale)

    def check_target(self, target: str, threads: int) -> None:
        """Raise CompilerError unless this table was measured for `target` at `threads` threads."""
        t, n = self.header.get("target"), self.header.get("threads")
        if t != target or n != threads:
            raise CompilerError(f"{self.path}: the table was measured for target {t} ({n} threads), "
                                f"not {target} ({threads} threads)")

    def to_dict(self) -> dict[str, Any]:
        """The file's content."""
        return {"format": FORMAT, "version": VERSION, "header": self.header,
                "entries": {k: e.to_dict() for k, e in sorted(self.entries.items())}}

    def save(self) -> None:
        """Write the table atomically (temp file beside it, then rename)."""
        write_json(self.path, self.to_dict())


def load_table(path: str | os.PathLike, *, check_kernels: bool = True) -> LatencyTable:
    """Read a table; a missing, foreign or corrupt file raises CompilerError naming the file and the problem, and so
    does (with `check_kernels`) a table whose conv layers were timed under another kernel choice (KERNEL_RULE)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CompilerError(f"{path}: no latency table here (run `srprune latency build` first)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CompilerError(f"{path}: cannot read the latency table ({exc.__class__.__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CompilerError(f"{path}: corrupt latency table (not valid JSON: {exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CompilerError(f"{path}: not a latency table (no '{FORMAT}' format marker)")
    if data.get("version") != VERSION:
        raise CompilerError(f"{path}: latency table version {data.get('version')!r} is not supported (expected {VERSION})")
    header, raw = data.get("header"), data.get("entries")
    if not isinstance(header, dict) or not isinstance(raw, dict) or not {"target", "threads"} <= set(header):
        raise CompilerError(f"{path}: corrupt latency table (header or entries missing)")
    table = LatencyTable(path, header)
    for key, item in raw.items():
        try:
            cfg = LayerConfig.from_dict(item["config"])
            entry = table.add(cfg, item["samples_ms"], item.get("kernel", ""), item.get("direct_ms"))
        except (CompilerError, KeyError, TypeError, ValueError) as exc:
            raise CompilerError(f"{path}: corrupt latency table entry {key!r} ({exc})") from None
        if cfg.key() != key:
            raise CompilerError(f"{path}: corrupt latency table entry {key!r} (its configuration says {cfg.key()!r})")
        if abs(entry.median_ms - float(item.get("median_ms", entry.median_ms))) > 1e-9 * max(1.0, entry.median_ms):
            raise CompilerError(f"{path}: corrupt latency table entry {key!r} (median disagrees with its samples)")
    if check_kernels and header.get(KERNEL_CHOICE) != KERNEL_RULE and table.conv_entries():
        raise CompilerError(f"{path}: the table's conv layers were timed before this compiler's per-layer kernel "
                            "choice (direct / Winograd / sparse); rebuild it with `srprune latency build`")
    return table


def open_table(path: str | os.PathLike, target: str, threads: int, *, machine: str | None = None) -> LatencyTable:
    """The table at `path` for (target, threads): loaded and checked if the file exists (conv entries timed under an
    older kernel choice dropped), else a new empty one."""
    path = Path(path)
    if path.exists():
        table = load_table(path, check_kernels=False)
        table.check_target(target, threads)
        table.use_kernel_rule()  # conv entries of an older kernel choice are measured again
        return table
    return LatencyTable(path, make_header(target, threads, machine))
