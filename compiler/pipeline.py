"""The one TVM pass pipeline of every compile: named phases, run by `lower` up to a named stop point.

Why one module: the Relax VM build (compiler.build), MetaSchedule tuning (compiler.tune) and the c-lib
planner (compiler.clib.plan) must see the same passes in the same order. Tuning records are looked up by the
structure of the TIR functions where the database is applied, so tuning has to lower exactly as the build does;
and the c-lib promises to run the very kernels the VM runs. Each used to assemble its own list; now each
names where it stops.

Phases, in order (`Phase`; each is a TVM pass, or a Sequential of TVM's own passes):

1. `import_and_rewrite`: torch.export -> Relax (compiler.importer), then the module passes `Canonicalize`
   (compiler.canonicalize) and `FuseConvs` (compiler.rewrite: conv chains -> our kernels). Its input is an
   nn.Module, so it runs first, under the caller's PassContext as it always has; every build and tuning starts
   from its module.
2. `legalize`: TVM's CPU library dispatch + legalisation (operators -> fused TIR functions). Tuning stops here.
3. `apply_tuning`: MetaSchedule's best schedules from a database (only when one is given).
4. `parallelize_remaining`: loop nests that are not our kernels get a parallel outer loop.
5. `lower_dataflow`: TVM's CPU dataflow lowering (call_tir -> calls with explicit output buffers).
6. `plan_memory`: StaticPlanBlockMemory + LowerAllocTensor. The c-lib stops here: `main` is then a straight
   line of storages, tensors and kernel calls (stopping here also attaches the kernels' global symbols,
   which `finalize` would otherwise attach last).
7. `finalize`: the rest of TVM's CPU finalisation (VM builtins, shape lowering, symbols); `relax.build` then
   only generates code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum

import tvm
from torch import nn
from tvm import relax

from compiler.canonicalize import canonicalize
from compiler.errors import CompilerError
from compiler.importer import check_shape, import_module
from compiler.rewrite import fuse_convs
from compiler.targets import TargetSpec, get_target


class Phase(str, Enum):
    """The pipeline's phases in order; a `lower` stop point is one of them (or its string value)."""

    IMPORT_AND_REWRITE = "import_and_rewrite"
    LEGALIZE = "legalize"
    APPLY_TUNING = "apply_tuning"
    PARALLELIZE_REMAINING = "parallelize_remaining"
    LOWER_DATAFLOW = "lower_dataflow"
    PLAN_MEMORY = "plan_memory"
    FINALIZE = "finalize"


_ORDER = list(Phase)


def _phase(value: Phase | str) -> Phase:
    try:
        return Phase(value)
    except ValueError:
        raise CompilerError(f"unknown pipeline phase {value!r}; one of {', '.join(p.value for p in Phase)}") from None


@contextmanager
def tvm_errors(what: str) -> Iterator[None]:
    """Turn an exception raised inside (by TVM) into `CompilerError("what: <its first line>")`: one CLI line."""
    try:
        yield
    except CompilerError:
        raise
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompilerError(f"{what}: {first}") from exc


# ---- import_and_rewrite ---------------------------------------------------------------------------------------

@tvm.transform.module_pass(opt_level=0, name="Canonicalize")
def canonicalize_pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """compiler.canonicalize as a module pass: deconvolution as sub-pixel conv, PReLU, clipped takes."""
    return canonicalize(mod)[0]


@tvm.transform.module_pass(opt_level=0, name="FuseConvs")
class FuseConvs:
    """compiler.rewrite.fuse_convs as a module pass; `fused` holds the chains its last run rewrote."""

    def __init__(self, vec: int, registers: int, sparse: str = "auto", precision: str = "fp32") -> None:
        self.vec, self.registers, self.sparse, self.precision = vec, registers, sparse, precision
        self.fused = 0

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:  # noqa: D102
        mod, self.fused = fuse_convs(mod, self.vec, self.registers, sparse=self.sparse, precision=self.precision)
        return mod


def import_and_rewrite(model: nn.Module, shape: tuple[int, int, int, int], spec: TargetSpec,
                       sparse: str = "auto") -> tuple[tvm.IRModule, int]:
    """Import, canonicalise and rewrite convs into our kernels; returns (module, conv chains fused).

    `sparse`: "auto" (a pruned conv gets a sparse kernel where compiler.sparse's cost model says it pays),
    "dense" (never) or "sparse" (every ungrouped conv).
    """
    fuse = FuseConvs(spec.vec, spec.registers, sparse, spec.precision)
    mod = tvm.transform.Sequential([canonicalize_pass, fuse], name="ImportAndRewrite")(import_module(model, shape))
    return mod, fuse.fused


# ---- the TVM phases -------------------------------------------------------------------------------------------

@tvm.transform.module_pass(opt_level=0, name="ParallelizeRemaining")
def parallelize_remaining(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
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


_MEMORY_PASSES = ("StaticPlanBlockMemory", "LowerAllocTensor")


def _finalize_split(tgt: tvm.target.Target) -> tuple[list, list]:
    """TVM's CPU finalize passes as (memory planning, the rest): the c-lib stops between the two."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    passes = cpu_generic.finalize_passes(tgt)
    n = len(_MEMORY_PASSES)
    if tuple(p.info.name for p in passes[:n]) != _MEMORY_PASSES:  # a TVM upgrade moved them: fail, never reorder
        raise CompilerError(f"TVM's CPU finalize passes no longer start with {' + '.join(_MEMORY_PASSES)}")
    return passes[:n], passes[n:]


def phase_passes(tgt: tvm.target.Target, tuning_db: str | None = None,
                 stop_after: Phase | str = Phase.FINALIZE) -> list[tuple[Phase, tvm.transform.Pass]]:
    """The passes of the phases after `import_and_rewrite`, in order, up to `stop_after` (inclusive).

    `apply_tuning` is left out without a `tuning_db`. A stop at `plan_memory` ends with AttachGlobalSymbol:
    the module goes to another code generator (the c-lib), which calls the kernels by their symbols.
    """
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    last = _phase(stop_after)
    memory, finalize = _finalize_split(tgt)
    if last is Phase.PLAN_MEMORY:
        memory = memory + [relax.transform.AttachGlobalSymbol()]
    seq = tvm.transform.Sequential
    with tgt:  # MetaScheduleApplyDatabase reads the current target when it is made
        phases = [
            (Phase.LEGALIZE, seq(cpu_generic.library_dispatch_passes(tgt) + cpu_generic.legalize_passes(tgt),
                                 name="Legalize")),
            (Phase.APPLY_TUNING, relax.transform.MetaScheduleApplyDatabase(tuning_db) if tuning_db else None),
            (Phase.PARALLELIZE_REMAINING, parallelize_remaining),
            (Phase.LOWER_DATAFLOW, seq(cpu_generic.dataflow_lower_passes(tgt), name="LowerDataflow")),
            (Phase.PLAN_MEMORY, seq(memory, name="PlanMemory")),
            (Phase.FINALIZE, seq(finalize, name="Finalize")),
        ]
    return [(phase, p) for phase, p in phases if p is not None and _ORDER.index(phase) <= _ORDER.index(last)]


def lower(model: nn.Module, input_shape: tuple[int, int, int, int], target: str | TargetSpec = "host", *,
          tuning_db: str | None = None, sparse: str = "auto",
          stop_after: Phase | str = Phase.FINALIZE) -> tuple[tvm.IRModule, int]:
    """Run the pipeline on `model` for one input shape and target up to `stop_after`; returns (module, convs fused).

    `tuning_db`: a MetaSchedule database folder to apply (compiler.tune), None for none. `sparse`: see
    `import_and_rewrite`. A failure inside a TVM phase is a one-line CompilerError naming the phase.
    """
    spec = target if isinstance(target, TargetSpec) else get_target(target)
    stop = _phase(stop_after)
    mod, fused = import_and_rewrite(model, check_shape(input_shape), spec, sparse)
    tgt = spec.tvm_target()
    with tgt, tvm.transform.PassContext(opt_level=3):
        for phase, p in phase_passes(tgt, tuning_db, stop):
            with tvm_errors(f"TVM lowering failed for target {spec.name} ({phase.value})"):
                mod = p(mod)
    return mod, fused
