"""Named targets: a TVM target dict plus what our kernel template needs (SIMD width, threads).

Why our own table: in TVM 0.27 `"mcpu": "native"` silently becomes a generic CPU (no AVX), so
`host` is detected with `llvm_get_system_cpu()` and the CPU's feature list; the arm64 targets name
their triple and NEON features explicitly because they are cross-compiled here.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import tvm

from compiler.errors import CompilerError

TARGET_NAMES = ("host", "linux-arm64", "android-arm64", "android-arm64-fp16", "android-arm64-dotprod")


@dataclass(frozen=True)
class TargetSpec:
    """A named target: `tvm` is the TVM target dict; `vec` floats per SIMD register."""

    name: str
    tvm: dict = field(hash=False)
    vec: int
    registers: int
    threads: int
    triple: str
    cross: bool
    # What the kernels compute in ("fp32", "fp16"; the int8 branch adds "int8") and the CPU features the code
    # was compiled to use (CPU_FEATURES names): the c-lib refuses to load on a CPU without them, the manifest
    # records both, and `srprune android stage` checks them against the device profile.
    precision: str = "fp32"
    features: tuple[str, ...] = ()

    def tvm_target(self) -> tvm.target.Target:
        """The TVM Target object."""
        return tvm.target.Target(dict(self.tvm))

    def describe(self) -> dict:
        """Plain data for manifests and reports."""
        return {"name": self.name, "tvm": dict(self.tvm), "vec": self.vec, "threads": self.threads,
                "triple": self.triple, "precision": self.precision, "features": list(self.features)}


# The CPU features a target may require, each checked by the c-lib at load (csrc/srmodel_rt.c srm_cpu_check;
# the bit is the index here, shared with codegen.py): aarch64 from getauxval(AT_HWCAP), x86 from cpuid.
CPU_FEATURES = ("fp16", "dotprod", "avx2", "fma", "avx512f", "avx512vnni")
# Element type of each precision's activations between layers (the API stays float32 / uint8 RGB).
PRECISIONS = {"fp32": "float32", "fp16": "float16"}
# Least tolerance of a build's check against PyTorch (float32) per precision: fp16 rounds every layer's output to
# 11 significant bits (about 2e-3 at 1.0; 3e-3 seen on the ECB-style x2 model), so 1e-2 = 2.5 levels of an 8-bit image.
CHECK_TOL = {"fp32": 0.0, "fp16": 1e-2}


def feature_mask(features: tuple[str, ...] | list[str]) -> int:
    """The c-lib's bit mask of `features` (CPU_FEATURES order); CompilerError on an unknown name."""
    unknown = [f for f in features if f not in CPU_FEATURES]
    if unknown:
        raise CompilerError(f"unknown CPU feature(s) {', '.join(unknown)}; known: {', '.join(CPU_FEATURES)}")
    return sum(1 << CPU_FEATURES.index(f) for f in set(features))


def _host_required(features: set[str]) -> tuple[str, ...]:
    """What a host build needs at load: the vector extensions its code is compiled for (mcpu = this CPU)."""
    return tuple(f for f in ("avx2", "fma", "avx512f", "avx512vnni") if f in features)


def _cpuinfo_field(*names: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of `names` (None: no such line, or no file)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(names):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def host_cpu_features() -> set[str]:
    """The CPU's ISA features as LLVM spells them (e.g. 'avx512f', 'avx2', 'neon')."""
    from tvm.target import codegen

    cpu = codegen.llvm_get_system_cpu()
    triple = codegen.llvm_get_system_triple()
    try:
        feats = codegen.llvm_get_cpu_features(tvm.target.Target({"kind": "llvm", "mcpu": cpu, "mtriple": triple}))
        return {str(k) for k, v in dict(feats).items() if bool(v)} if hasattr(feats, "items") else {str(f) for f in feats}
    except Exception:  # noqa: BLE001  (older builds lack the query; fall back to /proc/cpuinfo)
        return set((_cpuinfo_field("flags", "Features") or "").split())
    return set()


@functools.cache
def cpu_vendor() -> str:
    """The CPU vendor as /proc/cpuinfo gives it ("GenuineIntel", "AuthenticAMD"; "" where unknown): the dense kernel's
    register tile depends on it (compiler.kernels.host_tile_shape)."""
    return _cpuinfo_field("vendor_id") or ""


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (for benchmark records and latency-table headers)."""
    import platform

    # not Linux: fall back to what the platform module knows
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown CPU"


def _host_vector_width(features: set[str], triple: str) -> tuple[int, int]:
    """(floats per vector, vector registers) of the widest SIMD unit the host has."""
    if triple.startswith(("aarch64", "arm64")):
        return 4, 32
    if "avx512f" in features:
        return 16, 32
    if "avx2" in features or "avx" in features:
        return 8, 16
    return 4, 16


def _process_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return None


# Taken at import: TVM's thread pool re-pins the calling thread when it is configured.
_PROCESS_CPUS = _process_cpus()

# TVM sizes its thread pool once, when first used, from TVM_NUM_THREADS or else *half* the logical
# CPUs on x86_64 (it assumes hyper-threading). On a 2-core machine without SMT that is 1 worker, and
# `config_threadpool` cannot grow the pool later: every kernel silently ran on one core. So the pool
# is sized to the cores this process may use, before anything in TVM creates it (a user's own
# TVM_NUM_THREADS wins).
os.environ.setdefault("TVM_NUM_THREADS", str(len(_PROCESS_CPUS) if _PROCESS_CPUS else (os.cpu_count() or 1)))


def default_threads() -> int:
    """Cores this process may use (its affinity mask at start, not the machine's total)."""
    return len(_PROCESS_CPUS) if _PROCESS_CPUS else (os.cpu_count() or 1)


def get_target(name: str, threads: int | None = None) -> TargetSpec:
    """The TargetSpec for a target name; unknown names raise CompilerError listing the known ones."""
    from tvm.target import codegen

    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise CompilerError(f"threads must be a positive integer, got {threads!r}")
    nthreads = threads or (default_threads() if name == "host" else 4)
    if name == "host":
        cpu, triple = codegen.llvm_get_system_cpu(), codegen.llvm_get_system_triple()
        feats = host_cpu_features()
        vec, regs = _host_vector_width(feats, triple)
        tgt = {"kind": "llvm", "mcpu": cpu, "mtriple": triple, "num-cores": nthreads}
        return TargetSpec(name, tgt, vec, regs, nthreads, triple, cross=False, features=_host_required(feats))
    # (triple, mcpu, mattr, precision, required features). The arm64 mcpu stays generic: cortex-a76 would let
    # LLVM use its fp16/dotprod instructions anywhere, also in the plain target that promises a bare ARMv8 CPU.
    # The dotprod target keeps fp32 kernels until the int8 kernels land (precision "int8" then).
    arm = {
        "linux-arm64": ("aarch64-linux-gnu", "generic", ["+neon"], "fp32", ()),
        "android-arm64": ("aarch64-linux-android", "generic", ["+neon"], "fp32", ()),
        "android-arm64-fp16": ("aarch64-linux-android", "generic", ["+neon", "+fullfp16"], "fp16", ("fp16",)),
        "android-arm64-dotprod": ("aarch64-linux-android", "generic", ["+neon", "+dotprod"], "fp32", ("dotprod",)),
    }
    if name not in arm:
        raise CompilerError(f"unknown target {name!r}; known targets: {', '.join(TARGET_NAMES)}")
    triple, mcpu, attrs, precision, required = arm[name]
    tgt = {"kind": "llvm", "mtriple": triple, "mcpu": mcpu, "mattr": attrs, "num-cores": nthreads}
    vec = 8 if precision == "fp16" else 4  # lanes per 128-bit NEON register
    return TargetSpec(name, tgt, vec, 32, nthreads, triple, cross=True, precision=precision, features=required)


def set_runtime_threads(threads: int) -> None:
    """Use `threads` workers of TVM's runtime pool (the target's thread count applies when running).

    Mode -3 (kSpecifyThreadShareAllCore) lets the workers share all of this process's cores instead of
    pinning worker k to core k (mode 1): with pinning, the calling thread (worker 0) could be scheduled
    onto worker 1's core and both ran on one (a one-off check: 21 ms vs 12.5 ms for one conv on 2 cores).
    More threads than the pool holds (TVM_NUM_THREADS, see above) raise CompilerError.
    """
    pool = int(os.environ.get("TVM_NUM_THREADS", "0") or 0)
    if pool and threads > pool:
        raise CompilerError(f"{threads} threads asked but TVM's pool has {pool} (TVM_NUM_THREADS); "
                            f"use at most {pool} or set TVM_NUM_THREADS before starting")
    cpus = sorted(_PROCESS_CPUS) if _PROCESS_CPUS else list(range(os.cpu_count() or 1))
    tvm.get_global_func("runtime.config_threadpool")(-3, int(threads), [str(c) for c in cpus])
    if _PROCESS_CPUS:  # whatever the pool did to the caller's mask, give it back the process's cores
        os.sched_setaffinity(0, _PROCESS_CPUS)
