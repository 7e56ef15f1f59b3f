"""compiler.pipeline: one pass pipeline, named phases and stop points; no import cycle inside compiler/."""

from __future__ import annotations

import ast

import pytest
import torch
import tvm
from tvm import relax

from compiler import pipeline
from compiler.bench import PlainSR
from compiler.errors import CompilerError
from compiler.pipeline import Phase, lower, phase_passes
from tests.conftest import ROOT

SHAPE = (1, 3, 8, 12)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return PlainSR(width=8, body=1).eval()


def _primfuncs(mod: tvm.IRModule) -> dict[str, tvm.tirx.PrimFunc]:
    return {gv.name_hint: f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}


def _main_ops(mod: tvm.IRModule) -> set[str]:
    ops: set[str] = set()
    relax.analysis.post_order_visit(mod["main"], lambda e: isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op)
                                    and ops.add(e.op.name))
    return ops


def _compiler_import_graph() -> dict[str, set[str]]:
    """compiler module -> the compiler modules it imports, at module level or inside functions."""
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (ROOT / "compiler").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("compiler"):
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                         for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in files}
        graph[name] = deps - {name, "compiler"}
    return graph


def test_no_import_cycle_inside_the_compiler():
    """build, tune and the c-lib planner all import pipeline; none imports another to reach the passes."""
    graph = _compiler_import_graph()
    assert "compiler.pipeline" in graph["compiler.build"] and "compiler.build" not in graph["compiler.tune"]
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, " -> ".join((*path, node))
        if node not in done:
            for dep in graph.get(node, ()):
                visit(dep, (*path, node))
            done.add(node)

    for name in graph:
        visit(name, ())


def test_phases_in_order_and_tuning_only_with_a_database():
    tgt = tvm.target.Target("llvm")
    assert [p for p, _ in phase_passes(tgt)] == [Phase.LEGALIZE, Phase.PARALLELIZE_REMAINING, Phase.LOWER_DATAFLOW,
                                                Phase.PLAN_MEMORY, Phase.FINALIZE]
    assert [p for p, _ in phase_passes(tgt, "db", "apply_tuning")] == [Phase.LEGALIZE, Phase.APPLY_TUNING]
    names = [p.info.name for _, p in phase_passes(tgt, stop_after=Phase.PLAN_MEMORY)]
    assert names == ["Legalize", "ParallelizeRemaining", "LowerDataflow", "PlanMemory"]
    with pytest.raises(CompilerError, match="unknown pipeline phase 'codegen'"):
        phase_passes(tgt, stop_after="codegen")


def test_stop_points():
    """legalize: TIR functions as MetaSchedule sees them; plan_memory: explicit storages and kernel symbols (the
    c-lib's input); finalize: what relax.build generates code from. The kernels are the same at both late stops."""
    model = _model()
    rewritten, fused = lower(model, SHAPE, "host", stop_after="import_and_rewrite")
    assert fused == 3 and len(_primfuncs(rewritten)) >= 1 and "relax.memory.alloc_storage" not in _main_ops(rewritten)
    legal, _ = lower(model, SHAPE, "host", stop_after=Phase.LEGALIZE)
    assert "relax.call_tir" in _main_ops(legal) and "relax.memory.alloc_storage" not in _main_ops(legal)
    planned, fused_planned = lower(model, SHAPE, "host", stop_after=Phase.PLAN_MEMORY)
    assert fused_planned == fused and "relax.memory.alloc_storage" in _main_ops(planned)
    assert all("global_symbol" in f.attrs for f in _primfuncs(planned).values())
    final, _ = lower(model, SHAPE, "host")
    kernels, final_kernels = _primfuncs(planned), _primfuncs(final)
    assert kernels.keys() == final_kernels.keys()
    for k in kernels:
        tvm.ir.assert_structural_equal(kernels[k], final_kernels[k])


def test_a_failing_phase_is_one_line_naming_it(monkeypatch):
    @tvm.transform.module_pass(opt_level=0, name="Broken")
    def broken(mod, _ctx):
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(pipeline, "parallelize_remaining", broken)
    with pytest.raises(CompilerError) as err:
        lower(_model(), SHAPE, "host")
    msg = str(err.value)
    assert "\n" not in msg and "(parallelize_remaining)" in msg and msg.endswith("first line"), msg
