"""Build the c-lib of a model: kernels object + generated driver + our runtime -> libsrmodel.so.

`build_clib(model, shape, target, out_dir)` writes `out_dir/{libsrmodel.so, srmodel.h, manifest.json,
srmodel_bench}` atomically (a temp folder beside it, then rename). On the host target the library is
loaded through ctypes and compared with PyTorch before anything is written (max |diff| <= tol).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tvm
from torch import nn

from compiler.artifact import check_out_dir, sha256, staged_folder, write_manifest
from compiler.clib.codegen import consts_asm, driver_source, version_script
from compiler.clib.plan import Plan, build_plan
from compiler.clib.toolchain import CSRC, Toolchain, classify, needed_symbols, run, stub_libraries, toolchain_for
from compiler.errors import CompilerError
from compiler.targets import CHECK_TOL, TargetSpec, feature_mask, get_target

LIB_NAME = "libsrmodel.so"
HEADER = "srmodel.h"
BENCH = "srmodel_bench"
DEFAULT_TOL = 1e-4


@dataclass
class BuiltLib:
    """What `link_clib` produced in its work folder."""

    library: Path
    bench: Path | None
    plan: Plan
    needed: dict[str, list[str]]


def _compile(tc: Toolchain, src: Path, obj: Path, extra: tuple[str, ...] = ()) -> str:
    run([tc.cc, *tc.cflags, *extra, "-I", str(CSRC), "-c", str(src), "-o", str(obj)], f"compiling {src.name}")
    return str(obj)


def kernels_object(plan: Plan, target: TargetSpec, path: Path) -> str:
    """Build the plan's PrimFuncs for the target into one relocatable object (tvm-ffi calling convention)."""
    try:
        with tvm.transform.PassContext(opt_level=3):  # as relax.build runs in compiler.build
            lib = tvm.tirx.build(plan.tir, target=target.tvm_target())
        lib.write_to_file(str(path))
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompilerError(f"building the kernels for {target.name} failed: {first}") from exc
    return str(path)


def link_clib(plan: Plan, target: TargetSpec, work: Path, describe: str, *, bench: bool = True,
              runtime_flags: tuple[str, ...] = ()) -> BuiltLib:
    """Compile driver + runtime + constants, link them with the kernels into work/libsrmodel.so (`runtime_flags`:
    extra compiler flags for the runtime, e.g. -DSRM_PAUSE=N for benchmarks/clib_contention.py)."""
    tc = toolchain_for(target.name, target.triple)
    tc.check()
    (work / "consts.bin").write_bytes(plan.consts)
    (work / "model.c").write_text(driver_source(plan, describe, target.threads, feature_mask(target.features),
                                                target.name), encoding="utf-8")
    (work / "consts.S").write_text(consts_asm(work / "consts.bin"), encoding="utf-8")
    (work / "srmodel.map").write_text(version_script(), encoding="utf-8")
    objs = [kernels_object(plan, target, work / "kernels.o"),
            _compile(tc, work / "model.c", work / "model.o"),
            _compile(tc, CSRC / "srmodel_rt.c", work / "srmodel_rt.o", runtime_flags),
            _compile(tc, work / "consts.S", work / "consts.o")]
    exe_objs = []
    if bench:
        exe_objs.append(_compile(tc, CSRC / "srmodel_bench.c", work / "srmodel_bench.o"))
        if tc.exe_flags:
            exe_objs.append(_compile(tc, CSRC / "srmodel_start.c", work / "srmodel_start.o"))
    by_lib = classify(needed_symbols(objs) | needed_symbols(exe_objs), tc.android)
    libs = ["-Wl,--as-needed", *stub_libraries(work, by_lib, tc)] if tc.android else list(tc.libs)
    lib = work / LIB_NAME
    run([tc.cc, "-shared", *tc.ldflags, f"-Wl,--version-script={work / 'srmodel.map'}", "-Wl,-soname," + LIB_NAME,
         "-o", str(lib), *objs, *libs], f"linking {LIB_NAME}")
    exe = None
    if bench:
        exe = work / BENCH
        run([tc.cc, *[f for f in tc.ldflags if f != "-Wl,-z,defs"], *tc.exe_flags, "-o", str(exe), *exe_objs, *libs],
            f"linking {BENCH}")
    lib_needed = classify(needed_symbols([str(lib)]), tc.android)
    return BuiltLib(lib, exe, plan, {k: sorted(v) for k, v in lib_needed.items() if v})


def verify_clib(library: str | os.PathLike, model: nn.Module, *, tol: float = DEFAULT_TOL, seed: int = 0) -> dict:
    """Run the library (host build) through ctypes on uniform [0, 1) input and compare with PyTorch."""
    from compiler.build import check_against_torch
    from compiler.clib.runner import CLib

    with CLib(library) as lib:
        return check_against_torch(lib.run, lib.input_shape, model, tol=tol, seed=seed, what="c-lib")


def host_check(model: nn.Module, input_shape: tuple[int, int, int, int], target: TargetSpec, *,
               tol: float = DEFAULT_TOL, tuning_db: str | None = None) -> dict:
    """Numerics of a cross target checked here: the same plan built for the host with the target's SIMD width."""
    host = dataclasses.replace(get_target("host"), vec=target.vec, registers=target.registers,
                               precision=target.precision)
    plan = build_plan(model, input_shape, host, tuning_db)
    with tempfile.TemporaryDirectory() as work:
        built = link_clib(plan, host, Path(work), "host check", bench=False)
        result = verify_clib(built.library, model, tol=tol)
    return {**result, "checked_on": f"host c-lib build with the target's {target.vec}-lane {target.precision} schedules"}


def clib_manifest(folder: Path, spec: TargetSpec, plan, built, numerics: dict | None, meta: dict | None,
                  **extra: object) -> dict:
    """The manifest of a c-lib folder (fp32/fp16 from build_clib, int8 from compiler.int8.network): one shape, so
    `srprune android stage` and the loaders check every library the same way. `extra` adds fields (int8_isa)."""
    files = [f for f in (LIB_NAME, HEADER, BENCH) if (folder / f).exists()]
    return {
        "format": "srprune-compiled", "version": 1, "kind": "c-lib", "abi_version": 1,
        "target": spec.describe(), "precision": spec.precision, "cpu_features": list(spec.features),
        "library": LIB_NAME, "header": HEADER, "bench": BENCH if (folder / BENCH).exists() else None,
        "input": {"name": "input", "shape": list(plan.input_shape), "dtype": "float32", "layout": "NCHW",
                  "range": [0.0, 1.0]},
        "output": {"shape": list(plan.output_shape), "dtype": "float32", "layout": "NCHW"},
        "kernels": len(plan.kernels), "steps": len(plan.steps), "arena_bytes": plan.arena_bytes,
        "const_bytes": len(plan.consts), "fused_convs": plan.fused_convs,
        "system_symbols": built.needed,
        "numerics": numerics,
        "checksums": {f: sha256(folder / f) for f in files},
        "versions": {"tvm": tvm.__version__, "python": platform.python_version()},
        "meta": dict(meta or {}),
        **extra,
    }


def build_clib(model: nn.Module, input_shape: tuple[int, int, int, int], target: str | TargetSpec,
               out_dir: str | os.PathLike, *, meta: dict | None = None, force: bool = False,
               check: bool = True, tol: float = DEFAULT_TOL, name: str = "model",
               tuning_db: str | None = None) -> dict:
    """Compile `model` for one input shape into a C library folder; returns the manifest.

    `check`: compare with PyTorch before writing (max |diff| <= tol); the host library itself on the
    host target, a host build of the same plan with the target's SIMD width for a cross target
    (arm64 code cannot run here outside qemu).
    """
    spec = target if isinstance(target, TargetSpec) else get_target(target)
    tol = max(tol, CHECK_TOL[spec.precision])
    out = Path(out_dir)
    check_out_dir(out, force)
    plan = build_plan(model, input_shape, spec, tuning_db)
    describe = f"{name}, target {spec.name}, input {'x'.join(map(str, plan.input_shape))}"
    numerics = host_check(model, input_shape, spec, tol=tol, tuning_db=tuning_db) if check and spec.cross else None
    with staged_folder(out, force) as tmp:
        with tempfile.TemporaryDirectory() as work_dir:
            built = link_clib(plan, spec, Path(work_dir), describe)
            if check and not spec.cross:
                numerics = verify_clib(built.library, model, tol=tol)
            shutil.copy2(built.library, tmp / LIB_NAME)
            if built.bench:
                shutil.copy2(built.bench, tmp / BENCH)
        shutil.copy2(CSRC / HEADER, tmp / HEADER)
        manifest = clib_manifest(tmp, spec, plan, built, numerics, meta)
        write_manifest(tmp, manifest)
    return manifest
