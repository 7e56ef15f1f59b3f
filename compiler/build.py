"""Compile an nn.Module for a named target and check it against PyTorch.

`compile_model` = import (torch.export -> Relax) -> canonical forms (compiler.canonicalize: deconvolution as
sub-pixel conv, PReLU) -> our conv kernels (compiler.rewrite) ->
TVM's default CPU lowering for what is left (each remaining loop nest made parallel) -> relax.build.
Every host compile is run on random input and compared with PyTorch; a model whose output differs
by more than `tol` raises CompilerError, so no artifact is ever written from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import tvm
from torch import nn
from tvm import relax

from compiler.errors import CompilerError
from compiler.canonicalize import canonicalize
from compiler.importer import check_shape, import_module
from compiler.rewrite import fuse_convs
from compiler.targets import TargetSpec, get_target, set_runtime_threads

DEFAULT_TOL = 1e-4


@dataclass
class CompiledModel:
    """A built Relax VM executable plus what it was built for; `run` works for host targets only."""

    executable: tvm.runtime.Executable
    target: TargetSpec
    input_shape: tuple[int, int, int, int]
    output_shape: tuple[int, ...]
    fused_convs: int
    check: dict = field(default_factory=dict)
    tuning_db: str | None = None  # the MetaSchedule database applied, if any
    _vm: object | None = None

    def _machine(self):
        if self.target.cross:
            raise CompilerError(f"target {self.target.name} is cross-compiled; it cannot run on this machine")
        if self._vm is None:
            set_runtime_threads(self.target.threads)
            self._vm = relax.VirtualMachine(self.executable, tvm.cpu())
        return self._vm

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one float32 NCHW input and return the output as numpy."""
        x = np.ascontiguousarray(x, dtype="float32")
        if tuple(x.shape) != self.input_shape:
            raise CompilerError(f"input shape {tuple(x.shape)} differs from the compiled {self.input_shape}")
        out = self._machine()["main"](tvm.runtime.tensor(x, tvm.cpu()))
        return out.numpy()

    def timer(self, number: int = 1, repeat: int = 10):
        """A callable returning per-repeat seconds (TVM's time_evaluator on a fixed random input)."""
        vm = self._machine()
        x = tvm.runtime.tensor(np.random.default_rng(0).random(self.input_shape, dtype=np.float32), tvm.cpu())
        vm.set_input("main", x)
        f = vm.time_evaluator("invoke_stateful", tvm.cpu(), number=number, repeat=repeat)
        return lambda: np.asarray(f("main").results)


@tvm.transform.module_pass(opt_level=0, name="ParallelizeRemaining")
def _parallelize_remaining(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Give unscheduled loop nests (PixelShuffle, skips, pads) a parallel outer and unrolled inner loop.

    Our kernels are marked `tir.is_scheduled` and skipped; everything else would otherwise run
    single-threaded scalar loops.
    """
    from tvm import s_tir

    for gv, func in list(mod.functions.items()):
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs and func.attrs.get("tir.is_scheduled", False):
            continue
        sch = s_tir.Schedule(tvm.IRModule({"main": func}))
        try:
            for block in sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []:
                loops = sch.get_loops(block)
                if len(loops) >= 2:
                    sch.parallel(sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0])
                elif len(loops) == 1:
                    sch.parallel(loops[0])
        except Exception:  # noqa: BLE001  (leave a nest we cannot transform as TVM lowered it)
            continue
        mod[gv] = sch.mod["main"].with_attr("tir.is_scheduled", True)
    return mod


def _has_root(sch) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except Exception:  # noqa: BLE001
        return False


def _pipeline(target: TargetSpec, tuning_db: str | None = None) -> tvm.transform.Pass:
    """TVM's CPU pipeline after our rewrite: tuned schedules from `tuning_db` (if any), the rest parallelised."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    tgt = target.tvm_target()

    @tvm.transform.module_pass(opt_level=0, name="SrpruneCompile")
    def _run(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with tgt:
            tuned = [relax.transform.MetaScheduleApplyDatabase(tuning_db)] if tuning_db else []
            passes = (cpu_generic.library_dispatch_passes(tgt) + cpu_generic.legalize_passes(tgt) + tuned
                      + [_parallelize_remaining] + cpu_generic.dataflow_lower_passes(tgt)
                      + cpu_generic.finalize_passes(tgt))
            return tvm.transform.Sequential(passes)(mod)

    return _run


def reference_output(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """PyTorch's output for `x` (eval mode, no grad): the numerics reference."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(torch.from_numpy(x)).detach().cpu().numpy()
    finally:
        model.train(was_training)


def prepare_module(model: nn.Module, shape: tuple[int, int, int, int], spec: TargetSpec,
                   sparse: str = "auto") -> tuple[tvm.IRModule, int]:
    """Import, canonicalise and rewrite convs into our kernels: the module every build and tuning starts from.

    `sparse`: "auto" (a pruned conv gets a sparse kernel where compiler.sparse's cost model says it pays),
    "dense" (never) or "sparse" (every ungrouped conv).
    """
    mod = import_module(model, shape)
    mod, _ = canonicalize(mod)
    return fuse_convs(mod, spec.vec, spec.registers, sparse=sparse)


def compile_model(model: nn.Module, input_shape: tuple[int, int, int, int], target: str | TargetSpec = "host",
                  *, check: bool = True, tol: float = DEFAULT_TOL, seed: int = 0,
                  tuning_root: str | None = None, sparse: str = "auto") -> CompiledModel:
    """Compile `model` for one input shape and target; on host, verify against PyTorch (max |diff| <= tol).

    `tuning_root`: folder of MetaSchedule databases (compiler.tune); the target's records there, if any,
    replace the default schedules of the operators they cover. `sparse`: see `prepare_module`.
    """
    from compiler.tune import database_dir, has_records

    spec = target if isinstance(target, TargetSpec) else get_target(target)
    db = database_dir(tuning_root, spec) if tuning_root else None
    tuning_db = str(db) if has_records(db) else None
    shape = check_shape(input_shape)
    mod, fused = prepare_module(model, shape, spec, sparse)
    try:
        with tvm.transform.PassContext(opt_level=3):
            exe = relax.build(mod, target=spec.tvm_target(), relax_pipeline=_pipeline(spec, tuning_db))
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompilerError(f"TVM build failed for target {spec.name}: {first}") from exc
    out_shape = tuple(int(d) for d in mod["main"].ret_ty.shape.values)
    compiled = CompiledModel(exe, spec, shape, out_shape, fused, tuning_db=tuning_db)
    if check and not spec.cross:
        compiled.check = verify(compiled, model, tol=tol, seed=seed)
    return compiled


def compile_checked(model: nn.Module, input_shape: tuple[int, int, int, int], target: str | TargetSpec = "host",
                    *, tuning_root: str | None = None) -> CompiledModel:
    """compile_model with its numerics check on every target: a cross target's graph and kernel schedules
    are built once more for the host (with the target's vector width) and checked there."""
    import dataclasses

    spec = target if isinstance(target, TargetSpec) else get_target(target)
    compiled = compile_model(model, input_shape, spec, tuning_root=tuning_root)
    if spec.cross:  # cannot run arm64 code here
        host_spec = dataclasses.replace(get_target("host"), vec=spec.vec, registers=spec.registers)
        host = compile_model(model, input_shape, host_spec, check=False)
        compiled.check = {**verify(host, model), "checked_on": f"host build with the target's {spec.vec}-float schedules"}
    return compiled


def check_against_torch(run, input_shape: tuple[int, ...], model: nn.Module, *, tol: float = DEFAULT_TOL,
                        seed: int = 0, what: str = "compiled") -> dict:
    """Run `run(x)` and PyTorch on the same uniform [0, 1) input; raise CompilerError past `tol`."""
    x = np.random.default_rng(seed).random(input_shape, dtype=np.float32)
    got, want = run(x), reference_output(model, x)
    if got.shape != want.shape:
        raise CompilerError(f"{what} output shape {got.shape} differs from PyTorch's {want.shape}")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not np.isfinite(diff) or diff > tol:
        raise CompilerError(f"{what} output differs from PyTorch by {diff:.3g} (> {tol:g}); refusing it")
    return {"max_abs_diff": diff, "tol": tol, "seed": seed}


def verify(compiled: CompiledModel, model: nn.Module, *, tol: float = DEFAULT_TOL, seed: int = 0) -> dict:
    """Compare compiled and PyTorch outputs on uniform [0, 1) input; raise CompilerError past `tol`."""
    return check_against_torch(compiled.run, compiled.input_shape, model, tol=tol, seed=seed)
