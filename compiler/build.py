"""Compile an nn.Module for a named target and check it against PyTorch.

`compile_model` = compiler.pipeline's phases to the end (import, canonical forms, our conv kernels, TVM's CPU
lowering with the remaining loop nests parallelised and tuned schedules applied if any) -> relax.build, which
then only generates code. Every host compile is run on random input and compared with PyTorch; a model whose
output differs by more than `tol` raises CompilerError, so no artifact is ever written from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import tvm
from torch import nn
from tvm import relax

from compiler.errors import CompilerError
from compiler.importer import check_shape
from compiler.native_log import native_log
from compiler.pipeline import lower, tvm_errors
from compiler.targets import CHECK_TOL, TargetSpec, get_target, set_runtime_threads
from compiler.tune import database_dir, has_records

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


def reference_output(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """PyTorch's output for `x` (eval mode, no grad): the numerics reference."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(torch.from_numpy(x)).detach().cpu().numpy()
    finally:
        model.train(was_training)


def compile_model(model: nn.Module, input_shape: tuple[int, int, int, int], target: str | TargetSpec = "host",
                  *, check: bool = True, tol: float = DEFAULT_TOL, seed: int = 0,
                  tuning_root: str | None = None, sparse: str = "auto") -> CompiledModel:
    """Compile `model` for one input shape and target; on host, verify against PyTorch (max |diff| <= tol).

    `tuning_root`: folder of MetaSchedule databases (compiler.tune); the target's records there, if any,
    replace the default schedules of the operators they cover. `sparse`: see compiler.pipeline.import_and_rewrite.
    """
    spec = target if isinstance(target, TargetSpec) else get_target(target)
    db = database_dir(tuning_root, spec) if tuning_root else None
    tuning_db = str(db) if has_records(db) else None
    shape = check_shape(input_shape)
    mod, fused = lower(model, shape, spec, tuning_db=tuning_db, sparse=sparse)
    with tvm_errors(f"TVM build failed for target {spec.name}"), tvm.transform.PassContext(opt_level=3), \
            native_log():
        exe = relax.build(mod, target=spec.tvm_target(), relax_pipeline=None)  # lowered: code generation only
    out_shape = tuple(int(d) for d in mod["main"].ret_ty.shape.values)
    compiled = CompiledModel(exe, spec, shape, out_shape, fused, tuning_db=tuning_db)
    if check and not spec.cross:
        compiled.check = verify(compiled, model, tol=max(tol, CHECK_TOL[spec.precision]), seed=seed)
    return compiled


def compile_checked(model: nn.Module, input_shape: tuple[int, int, int, int], target: str | TargetSpec = "host",
                    *, tuning_root: str | None = None) -> CompiledModel:
    """compile_model with its numerics check on every target: a cross target's graph and kernel schedules
    are built once more for the host (with the target's vector width) and checked there."""
    import dataclasses

    spec = target if isinstance(target, TargetSpec) else get_target(target)
    compiled = compile_model(model, input_shape, spec, tuning_root=tuning_root)
    if spec.cross:  # cannot run arm64 code here
        host_spec = dataclasses.replace(get_target("host"), vec=spec.vec, registers=spec.registers,
                                        precision=spec.precision)
        host = compile_model(model, input_shape, host_spec, check=False)
        compiled.check = {**verify(host, model, tol=max(DEFAULT_TOL, CHECK_TOL[spec.precision])),
                          "checked_on": f"host build with the target's {spec.vec}-lane {spec.precision} schedules"}
    return compiled


def check_against_torch(run, input_shape: tuple[int, ...], model: nn.Module, *, tol: float = DEFAULT_TOL,
                        seed: int = 0, what: str = "compiled") -> dict:
    """Run `run(x)` and PyTorch on the same uniform [0, 1) input; raise CompilerError past the tolerance.

    The tolerance is `tol` for outputs within [-1, 1] (an SR network's image) and scales with the output's magnitude
    beyond (`tol x max |output|`): float32 rounding does, so an untrained network whose outputs reach thousands
    (where one float32 step is ~2e-4) is held to the same relative accuracy, not to an impossible absolute one."""
    x = np.random.default_rng(seed).random(input_shape, dtype=np.float32)
    got, want = run(x), reference_output(model, x)
    if got.shape != want.shape:
        raise CompilerError(f"{what} output shape {got.shape} differs from PyTorch's {want.shape}")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    allowed = check_tolerance(want, tol)
    if not np.isfinite(diff) or diff > allowed:
        raise CompilerError(f"{what} output differs from PyTorch by {diff:.3g} (> {allowed:g}); refusing it")
    return {"max_abs_diff": diff, "tol": allowed, "seed": seed}


def check_tolerance(reference: np.ndarray, tol: float = DEFAULT_TOL) -> float:
    """The largest |compiled - reference| accepted: `tol`, scaled by max |reference| where that exceeds 1."""
    peak = float(np.max(np.abs(reference))) if reference.size else 0.0
    return tol * max(1.0, peak if np.isfinite(peak) else 1.0)


def verify(compiled: CompiledModel, model: nn.Module, *, tol: float = DEFAULT_TOL, seed: int = 0) -> dict:
    """Compare compiled and PyTorch outputs on uniform [0, 1) input; raise CompilerError past `tol`."""
    return check_against_torch(compiled.run, compiled.input_shape, model, tol=tol, seed=seed)
