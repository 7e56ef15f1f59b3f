"""The machine's measured fp32 FMA ceiling: what GFLOP/s figures in docs/benchmarks.md are read against.

benchmarks/fma_ceiling.c runs independent FMA chains (enough to cover FMA latency x FMA units) on the widest
vectors the CPU has (AVX-512 zmm, else AVX2 ymm, else NEON), one pinned thread per CPU, and reports wall seconds;
GFLOP/s = threads x iterations x chains x lanes x 2 / seconds. It is C with explicit intrinsics, compiled at run
time by the system compiler (`cc -O2 -march=native`): the instruction and width are fixed by the source, so the
figure is the hardware's, not a code generator's (a TVM-generated loop would measure TVM's vectoriser too), and
the test checks the instructions with objdump. Large matrix products (compiler.bench.peak_gflops) are lower
bounds that depend on the library; this is an upper bound no fp32 kernel doing every multiplication can pass.

Results are cached per machine (CPU vendor/model/stepping + flags + the C source) in
$XDG_CACHE_HOME/srprune/fma_ceiling.json, so every benchmark prints the ceiling without re-measuring;
`python benchmarks/fma_ceiling.py --force` (or SRPRUNE_FMA_REMEASURE=1 for any benchmark) measures again.

Usage: python benchmarks/fma_ceiling.py [--threads N ...] [--force] [--seconds S] [--json FILE] [--doc]
(--doc rewrites the `fma_ceiling` section of docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import cpu_info, write_json  # noqa: E402

SOURCE = Path(__file__).with_name("fma_ceiling.c")
REMEASURE_ENV = "SRPRUNE_FMA_REMEASURE"
# What keeps the probe from running: no compiler or no vector FMA (RuntimeError), the binary failing, odd output.
UNMEASURABLE = (OSError, RuntimeError, subprocess.CalledProcessError, ValueError, KeyError)
_FRESH: set[tuple[str, str]] = set()  # (machine key, threads) measured by this process: the env var forces once


@dataclass(frozen=True)
class Ceiling:
    """One measurement: the probe's own parameters and the best (shortest) wall time of its repeats."""

    isa: str
    lanes: int
    chains: int
    threads: int
    iterations: int
    seconds: float
    measured: str = ""  # ISO date
    load: float = -1.0  # 1-minute load average when measured (a loaded machine gives a low ceiling)

    @property
    def gflops(self) -> float:
        """2 flops per FMA lane: threads x iterations x chains x lanes x 2 / seconds."""
        return self.threads * self.iterations * self.chains * self.lanes * 2 / self.seconds / 1e9


def compile_probe(out_dir: Path, cc: str | None = None, flags: tuple[str, ...] = ("-march=native",),
                  source: Path = SOURCE) -> Path:
    """Build a probe (fma_ceiling.c; benchmarks/mem_bandwidth.c) with the system compiler; -march=native picks the
    widest ISA (aarch64 gcc may want -mcpu=native, tried next)."""
    cc = cc or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    out = out_dir / source.stem
    errors = []
    for arch in (flags, ("-mcpu=native",)):
        cmd = [cc, "-O2", *arch, "-pthread", str(source), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            return out
        errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()[-400:]}")
    raise RuntimeError(f"could not compile the probe {source.name}:\n" + "\n".join(errors))


def run_probe(binary: Path, iterations: int, repeats: int, cpus: list[int]) -> Ceiling:
    """Run the probe once per repeat on `cpus` (one pinned thread each); keep the best repeat."""
    proc = subprocess.run([str(binary), str(iterations), str(repeats), *map(str, cpus)],
                          capture_output=True, text=True, check=True)
    head, *times = proc.stdout.split("\n")
    fields = head.split()
    info = dict(zip(fields[::2], fields[1::2]))
    seconds = [float(t.split()[1]) for t in times if t.startswith("seconds")]
    return Ceiling(info["isa"], int(info["lanes"]), int(info["chains"]), int(info["threads"]),
                   int(info["iterations"]), min(seconds), _dt.date.today().isoformat(), os.getloadavg()[0])


def process_cpus() -> list[int]:
    """The CPUs this process may use, as compiler.targets saw them at import (TVM later re-pins the main thread)."""
    from compiler import targets

    return sorted(targets._PROCESS_CPUS or range(os.cpu_count() or 1))


def measure(threads: int, seconds: float = 0.25, repeats: int = 5, binary: Path | None = None) -> Ceiling:
    """Measure on `threads` cores: size the run to about `seconds` per repeat; the first repeat warms up
    (clock ramp, AVX-512 licence) and the best of the others counts."""
    cpus = process_cpus()
    cpus = [cpus[i % len(cpus)] for i in range(threads)]
    with tempfile.TemporaryDirectory(prefix="fma_ceiling.") as tmp:
        binary = binary or compile_probe(Path(tmp))
        probe = run_probe(binary, 1_000_000, 2, cpus[:1])
        iterations = max(10_000, int(probe.iterations * seconds / probe.seconds))
        return run_probe(binary, iterations, repeats + 1, cpus)


class ProbeTimer:
    """The probe as one more timer of compiler.latency.runners.interleaved: f(repeat) -> milliseconds per run.

    Why: on a shared machine a kernel loses time to other processes; the probe, run in the same rounds on the same
    cores, loses about as much, so `flops / its milliseconds` is the ceiling *under the same load* to read a kernel's
    GFLOP/s against (besides the quiet, cached figure of `ceiling`).
    """

    def __init__(self, threads: int, seconds: float = 0.02, cpu_time: bool = False) -> None:
        self.cpu_time = cpu_time  # the probe process's CPU time (one run, process start included: ~1 ms)
        cpus = process_cpus()
        self.cpus = [cpus[i % len(cpus)] for i in range(threads)]
        self._dir = tempfile.TemporaryDirectory(prefix="fma_ceiling.")
        self.binary = compile_probe(Path(self._dir.name))
        probe = run_probe(self.binary, 1_000_000, 2, self.cpus[:1])
        self.iterations = max(10_000, int(probe.iterations * seconds / probe.seconds))
        self.flops = threads * self.iterations * probe.chains * probe.lanes * 2

    def __call__(self, repeat: int) -> list[float]:
        if self.cpu_time:
            return [self._cpu_ms() for _ in range(repeat)]
        # best of 2: the first run of a fresh process may still ramp the clock up
        return [run_probe(self.binary, self.iterations, 2, self.cpus).seconds * 1e3 for _ in range(repeat)]

    def _cpu_ms(self) -> float:
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run_probe(self.binary, self.iterations, 1, self.cpus)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1e3


def cache_path() -> Path:
    """$XDG_CACHE_HOME/srprune/fma_ceiling.json (default ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "srprune" / "fma_ceiling.json"


def machine_key() -> str:
    """What the ceiling depends on: the CPU (vendor, model, stepping, every flag) and the probe's source."""
    cpu = cpu_info()
    ident = {k: cpu[k] for k in ("vendor", "model_name", "family", "model", "stepping", "flags")}
    ident["source"] = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def ceiling(threads: int, force: bool = False, cache: Path | None = None, seconds: float = 0.25) -> Ceiling:
    """The cached ceiling of this machine on `threads` cores, measured (and cached) when missing or forced."""
    cache = cache or cache_path()
    key, slot = machine_key(), str(threads)
    force = force or (os.environ.get(REMEASURE_ENV, "") not in ("", "0") and (key, slot) not in _FRESH)
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        data = {}
    entry = data.get(key, {})
    if not force and slot in entry:
        return Ceiling(**entry[slot])
    result = measure(threads, seconds)
    data[key] = {**entry, slot: asdict(result)}
    write_json(cache, data)
    _FRESH.add((key, slot))
    return result


def describe(threads: int) -> str:
    """'fp32 FMA ceiling A GFLOP/s on 1 core, B on N cores (avx512, ...)' for benchmark headers; never raises."""
    try:
        one, many = ceiling(1), ceiling(threads)
    except UNMEASURABLE as e:
        return f"fp32 FMA ceiling not measured ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    many_text = f", {many.gflops:.0f} on {threads} cores" if threads != 1 else ""
    # FMA units are per core: N cores below ~N x one core means other work shared the cores while measuring.
    loaded = (f"; the {threads}-core figure is under {threads} x the 1-core one, so other work probably shared the "
              "cores: re-measure on a quiet machine with `--force`") if many.gflops < 0.8 * threads * one.gflops else ""
    return (f"fp32 FMA ceiling {one.gflops:.0f} GFLOP/s on 1 core{many_text} ({one.isa}, {one.chains} independent "
            f"FMA chains per core, `benchmarks/fma_ceiling.py`, measured {many.measured} at load average "
            f"{many.load:.1f}{loaded})")


def to_markdown(results: list[Ceiling]) -> str:
    """The fma_ceiling section of docs/benchmarks.md: the machine line and one row per core count."""
    from benchmarks._report import machine

    lines = ["## fp32 FMA ceiling of this machine", "",
             f"Machine: {machine()}. Independent FMA chains on the widest vectors, one pinned thread per core, "
             "best of 5 repeats after a warm-up; GFLOP/s = threads x iterations x chains x lanes x 2 / seconds. "
             "Every GFLOP/s figure of the kernels and engines here is read against this (`% of ceiling`). "
             "Command: `python benchmarks/fma_ceiling.py --force --doc`.", "",
             "| cores | GFLOP/s | per core | ISA | lanes | chains | iterations per thread | seconds | load average |",
             "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {c.threads} | {c.gflops:.1f} | {c.gflops / c.threads:.1f} | {c.isa} | {c.lanes} | {c.chains} "
              f"| {c.iterations} | {c.seconds:.4f} | {c.load:.1f} |" for c in results]
    return "\n".join(lines)


def main() -> None:
    from benchmarks._report import publish

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="*", default=None, help="core counts (default: 1 and all)")
    ap.add_argument("--force", action="store_true", help="measure again even if cached")
    ap.add_argument("--seconds", type=float, default=0.25, help="per repeat, when measuring")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--doc", action="store_true", help="rewrite the fma_ceiling section of docs/benchmarks.md")
    args = ap.parse_args()
    results = [ceiling(n, force=args.force, seconds=args.seconds)
               for n in args.threads or sorted({1, len(process_cpus())})]
    publish(to_markdown(results), [{**asdict(c), "gflops": c.gflops} for c in results], "fma_ceiling",
            args.json, args.doc)


if __name__ == "__main__":
    main()
