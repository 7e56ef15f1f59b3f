"""The FMA ceiling probe (benchmarks/fma_ceiling.py) and the machine line of every benchmark header."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import _report, fma_ceiling  # noqa: E402
from benchmarks.fma_ceiling import Ceiling, compile_probe, run_probe  # noqa: E402

X86 = platform.machine() in ("x86_64", "AMD64")
ARM64 = platform.machine() in ("aarch64", "arm64")
pytestmark = pytest.mark.skipif(not (X86 or ARM64) or not (shutil.which("cc") or shutil.which("gcc")),
                                reason="needs a C compiler on x86_64 or aarch64")


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    return compile_probe(tmp_path_factory.mktemp("fma"))


def _fma_lines(binary: Path) -> list[str]:
    """The FMA instructions of the probe's `chains` function, from objdump."""
    if not shutil.which("objdump"):
        pytest.skip("objdump not installed")
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    body = asm[asm.index("<chains>:"):]
    body = body[:body.find("\n\n")]
    return [line for line in body.splitlines() if re.search(r"\b(vfmadd\w*ps|fmla)\b", line)]


def test_probe_loop_is_vector_fmas_of_the_widest_isa(probe):
    """The loop is CHAINS independent FMAs on the widest registers the CPU has (zmm with AVX-512, ymm with AVX2)."""
    c = run_probe(probe, 1000, 1, [0])
    lines = _fma_lines(probe)
    flags = set(_report.cpu_info()["flags"])
    width = {"avx512": "zmm", "avx2": "ymm", "neon": ".4s"}[c.isa]
    assert c.isa == ("avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "neon")
    assert c.lanes == {"avx512": 16, "avx2": 8, "neon": 4}[c.isa]
    wide = [line for line in lines if width in line]
    assert len(wide) >= c.chains, lines
    # independent chains: every FMA of the loop writes a different register
    dests = {re.split(r"[,\s]+", line.strip())[-1] if X86 else re.split(r"[,\s]+", line.split("fmla")[1].strip())[0]
             for line in wide[:c.chains]}
    assert len(dests) == c.chains, wide


@pytest.mark.skipif(not X86, reason="x86 only")
def test_avx2_build_uses_ymm_fmas(tmp_path):
    """The AVX2 branch of the source (CPUs without AVX-512) compiles to 12 independent ymm FMAs."""
    binary = compile_probe(tmp_path, flags=("-mavx2", "-mfma"))
    assert sum("ymm" in line for line in _fma_lines(binary)) >= 12


def test_gflops_is_the_formula_from_its_own_timing(probe):
    """GFLOP/s = threads x iterations x chains x lanes x 2 / seconds, with a short run positive and below
    cores x 6 GHz x 2 FMA units x 16 lanes x 2 flops."""
    for threads in sorted({1, min(2, len(fma_ceiling.process_cpus()))}):
        c = fma_ceiling.measure(threads, seconds=0.02, repeats=2, binary=probe)
        assert c.threads == threads and c.iterations >= 10_000
        assert c.gflops == pytest.approx(threads * c.iterations * c.chains * c.lanes * 2 / c.seconds / 1e9)
        assert 0 < c.gflops < threads * 6.0 * 2 * 16 * 2


def test_probe_timer_in_wall_and_cpu_time():
    """The interleaved probe: flops of one run from the probe's own parameters; both clocks give positive
    milliseconds below the same physical bound as above, and a run's CPU time (1 thread) is not above its wall time
    by more than the process start."""
    wall, cpu = fma_ceiling.ProbeTimer(1, seconds=0.01), fma_ceiling.ProbeTimer(1, seconds=0.01, cpu_time=True)
    c = run_probe(wall.binary, wall.iterations, 1, wall.cpus)
    assert wall.flops == c.iterations * c.chains * c.lanes * 2
    for timer in (wall, cpu):
        (ms,) = timer(1)
        assert 0 < timer.flops / ms / 1e6 < 6.0 * 2 * 16 * 2
    t0 = time.perf_counter()
    (ms,) = cpu(1)
    assert ms <= (time.perf_counter() - t0) * 1e3 + 5


def test_ceiling_is_cached_per_machine_and_forced_again(tmp_path, monkeypatch):
    """Measured once per (machine, threads), re-measured with force=True or SRPRUNE_FMA_REMEASURE (once per process),
    and again when the CPU (its flags) changes."""
    calls = []

    def fake_measure(threads: int, seconds: float = 0.25) -> Ceiling:
        calls.append(threads)
        return Ceiling("avx512", 16, 16, threads, 1000 * len(calls), 0.001, "2026-01-01", 0.5)

    monkeypatch.setattr(fma_ceiling, "measure", fake_measure)
    monkeypatch.delenv(fma_ceiling.REMEASURE_ENV, raising=False)
    cache = tmp_path / "c.json"
    first = fma_ceiling.ceiling(2, cache=cache)
    assert fma_ceiling.ceiling(2, cache=cache) == first and calls == [2]
    fma_ceiling.ceiling(1, cache=cache)
    assert calls == [2, 1]
    forced = fma_ceiling.ceiling(2, force=True, cache=cache)
    assert forced != first and fma_ceiling.ceiling(2, cache=cache) == forced and calls == [2, 1, 2]
    monkeypatch.setenv(fma_ceiling.REMEASURE_ENV, "1")
    monkeypatch.setattr(fma_ceiling, "_FRESH", set())
    fma_ceiling.ceiling(1, cache=cache)
    fma_ceiling.ceiling(1, cache=cache)  # the env var forces once per process, not at every call
    assert calls == [2, 1, 2, 1]
    monkeypatch.delenv(fma_ceiling.REMEASURE_ENV)
    info = _report.cpu_info()
    monkeypatch.setattr(fma_ceiling, "cpu_info", lambda: {**info, "flags": info["flags"] + ["new_flag"]})
    fma_ceiling.ceiling(1, cache=cache)
    assert calls == [2, 1, 2, 1, 1]


def test_machine_line_names_the_cpu_threads_and_ceiling(monkeypatch):
    """Every benchmark header: model name, family/model (or arm64 part), LLVM's CPU name, ISA features, the
    threads used and the ceiling on 1 core and on those threads."""
    monkeypatch.setattr(fma_ceiling, "ceiling",
                        lambda threads, **_: Ceiling("avx512", 16, 16, threads, 10**8, 0.1, "2026-01-01", 0.3))
    line = _report.machine(3)
    info = _report.cpu_info()
    assert info["model_name"] in line and f"model {info['model']}" in line.replace("part", "model")
    assert f"LLVM {_report.llvm_cpu()}" in line and not _report.llvm_cpu().startswith("?")
    assert all(f in line for f in info["features"])
    if X86:
        assert "family" in line and "avx2" in info["features"]
    assert "3 threads used" in line
    assert "fp32 FMA ceiling 512 GFLOP/s on 1 core, 1536 on 3 cores (avx512" in line and "quiet" not in line
    monkeypatch.setattr(fma_ceiling, "ceiling",  # N cores no faster than one: measured while others ran
                        lambda threads, **_: Ceiling("avx512", 16, 16, threads, 10**8, 0.1 * threads, "2026-01-01", 2.0))
    assert "re-measure on a quiet machine" in _report.machine(3)
    assert _report.of_ceiling(256.0, 512.0) == "50%" and _report.of_ceiling(1.0, None) == "?"


def test_machine_line_survives_an_unmeasurable_ceiling(monkeypatch):
    def broken(threads, **_):
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")

    monkeypatch.setattr(fma_ceiling, "ceiling", broken)
    assert "fp32 FMA ceiling not measured (RuntimeError: no C compiler" in _report.machine(1)
    assert _report.fma_ceiling_gflops(1) is None


def test_doc_section_rows(monkeypatch):
    """The fma_ceiling section: one row per core count with its GFLOP/s and per-core share."""
    monkeypatch.setattr(_report, "machine", lambda threads=None: "MACHINE")
    rows = [Ceiling("avx2", 8, 12, n, 10**8, 0.1, "2026-01-01", 0.1) for n in (1, 2)]
    md = fma_ceiling.to_markdown(rows)
    assert "Machine: MACHINE." in md
    assert "| 1 | 192.0 | 192.0 | avx2 | 8 | 12 |" in md and "| 2 | 384.0 | 192.0 | avx2 | 8 | 12 |" in md


ARM64_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 0

processor\t: 1
Features\t: fp
"""


def test_arm64_cpuinfo_names_implementer_part_and_neon_features():
    """On arm64 /proc/cpuinfo has no family/model: the line names implementer, architecture, part, revision and
    the NEON features (first processor only)."""
    info = _report.cpu_info(ARM64_CPUINFO, "aarch64")
    assert info["features"] == ["neon", "dotprod", "fp16"]
    line = _report.cpu_line(info)
    assert "implementer 0x41 architecture 8 part 0xd0b revision 0" in line and line.endswith("; neon dotprod fp16)")
