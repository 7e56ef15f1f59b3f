"""The latency model of a run from the static estimate (llvm-mca on the emitted code) instead of measurements.

Why a table like the measured one: the search, the budget check and the report read a `Predictor`; a
table whose entries are estimates (header `source: estimate`, the CPU's label) plugs into all of
them unchanged, and `label` tells every reader to call the numbers "estimated (static model of CPU
X)", never measured. There is no calibration (nothing was measured to fit it on): the predictor sums
the layers as they are, and a phone measurement later (`srprune latency calibrate`) reports the
estimate's error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.errors import CompilerError
from compiler.latency.config import LayerConfig
from srprune.errors import InputError
from srprune.layout import RunLayout, calibration_path, stale_stamp, table_path

if TYPE_CHECKING:
    from compiler.latency.estimate import Estimator
    from compiler.latency.table import LatencyTable
    from compiler.targets import TargetSpec
    from srprune.latency.workflow import PrunedKernels
    from supernet.space import SearchSpace


def make_estimator(target: TargetSpec, cpu: str) -> Estimator:
    """The estimator of `cpu` for `target`; an unknown CPU or a missing llvm-mca-19 is one InputError line."""
    from compiler.latency.estimate import Estimator, get_cpu

    try:
        return Estimator(target, get_cpu(cpu, target))
    except CompilerError as e:
        raise InputError(str(e)) from None


def check_cpu(cpu: Any, target: TargetSpec, where: str = "cpu") -> str:
    """`cpu` is a name the estimate knows for `target` (the table of compiler/latency/cpus.json, or host)."""
    from compiler.latency.estimate import get_cpu

    if not isinstance(cpu, str) or not cpu:
        raise InputError(f"{where}: a CPU name is required for the estimate (e.g. cortex-a77, snapdragon-865)")
    try:
        get_cpu(cpu, target)
    except CompilerError as e:
        raise InputError(f"{where}: {e}") from None
    return cpu


def build_estimated_table(run_dir: str | Path, target: TargetSpec, cpu: str, space: SearchSpace,
                          out_hw: tuple[int, int], *, pruned: PrunedKernels | None = None,
                          progress: bool = True, precisions: tuple[str, ...] = ("fp32",)) -> tuple[LatencyTable, int]:
    """RUN/latency/TARGET/table.json from estimates (completes a killed build); returns (table, estimated now).

    A table measured, or estimated for another CPU, is replaced: its numbers mean something else. It is moved to
    RUN/stale/ with any calibration fitted on it (measurements, perhaps hours on a phone, are never deleted).
    """
    from compiler.latency.estimate import estimate_header, estimate_into
    from compiler.latency.table import LatencyTable, make_header, open_table
    from srprune.latency.layers import space_layers

    est = make_estimator(target, cpu)
    path = table_path(run_dir, target.name)
    want = estimate_header(est)
    table = open_table(path, target.name, target.threads, machine=est.cpu.label()) if path.exists() else None
    layout, stamp = RunLayout(Path(run_dir)), stale_stamp()
    if table is None or {k: table.header.get(k) for k in want} != want:
        if path.exists():
            layout.set_aside(path, stamp)
        table = LatencyTable(path, {**make_header(target.name, target.threads, est.cpu.label()), **want})
    cpath = calibration_path(run_dir, target.name)
    if cpath.exists():  # a calibration fitted on measurements does not apply to estimates: kept aside
        layout.set_aside(cpath, stamp)
    n = estimate_into(table, space_layers(space, out_hw, precisions), est, progress=progress)
    if pruned:
        n += estimate_into(table, pruned.configs, est, progress=progress, weight_for=pruned.weight_for)
    if not path.exists():
        table.save()
    return table, n


def label(run_dir: str | Path, target: str) -> str:
    """'measured' or 'estimated (static model of CPU X)': how RUN/latency/TARGET's numbers must be named."""
    from compiler.latency.estimate import table_label
    from compiler.latency.table import load_table

    path = table_path(run_dir, target)
    if not path.exists():
        return "measured"
    return table_label(load_table(path).header)


def estimate_layers(est: Estimator, layers: list[tuple[str, LayerConfig, Any]]) -> list[dict[str, Any]]:
    """Per layer (name, config, weight or None): the estimate in ms and its parts."""
    rows = []
    for name, cfg, weight in layers:
        e = est.layer(cfg, weight)
        rows.append({"name": name, "layer": cfg.key(), "ms": e.ms, "memory_ms": e.detail.get("memory_ms", 0.0),
                     "macs": cfg.macs(), "parts": e.parts})
    return rows


def estimate_int8_network(est: Estimator, model: Any, out_hw: tuple[int, int]) -> list[dict[str, Any]]:
    """Per kernel of the int8 c-lib a quantised model (srprune quantize) compiles to, in its order: the quantise
    kernel, the bicubic skip (scalar), one int8 conv per layer (sdot on +dotprod targets, NEON smlal without;
    compiler.int8.network.build_kernels, so a depthwise conv is its block-diagonal dense form as the c-lib runs it)."""
    from compiler.int8.isa import choose_isa
    from compiler.int8.network import build_kernels, quantize_primfunc, skip_primfunc
    from srprune.quant.deploy import to_int8_network

    net = to_int8_network(model)
    h, w = out_hw[0] // net.scale, out_hw[1] // net.scale
    shape = (1, int(model.colors), h, w)
    isa = choose_isa(est.target)
    rows = []

    def add(name: str, what: str, e: Any, macs: int) -> None:
        rows.append({"name": name, "layer": what, "ms": e.ms, "memory_ms": e.detail.get("memory_ms", 0.0),
                     "macs": macs, "parts": e.parts})

    add("quantize", "float32 -> uint8 image", est.row_kernel(quantize_primfunc(shape), float(np.prod(shape)),
                                                              "the int8 quantise kernel"), 0)
    if net.skip_weight is not None:
        co = net.skip_weight.shape[0]
        add("skip", f"bicubic skip 5x5 x{co} (scalar)",
            est.row_kernel(skip_primfunc(shape, net.skip_weight.shape), float(co * h * w), "the int8 bicubic skip"),
            co * 25 * h * w)
    for spec, k in zip(model.specs, build_kernels(net, shape, isa)):
        macs = spec["out"] * (spec["in"] // spec["groups"]) * spec["k"] ** 2 * h * w
        flags = [f for f, on in ((" sparse", k.plan.sparse), (" +res", k.spec.residual), (" tail", k.spec.tail)) if on]
        what = f"int8 {isa.name} conv {spec['in']}>{spec['out']} k{spec['k']}g{spec['groups']}{''.join(flags)}"
        add(spec["name"], what, est.int8_kernel(k), macs)
    return rows


def estimate_error(target: TargetSpec, cpu: str, points: list[tuple[list[LayerConfig], float]],
                   weight_for: Any = None) -> dict[str, Any]:
    """The static estimate of each measured network (layers, measured ms) on `cpu`: per network and MAPE.

    `weight_for(cfg)` gives pruned layers their weights (the run's table uses the pruner's masks,
    srprune.search.latency_stage.pruned_weight): a bench record names the network's layers, not its weights.
    """
    from srprune.latency.stats import mape

    est = make_estimator(target, cpu)
    rows = []
    for layers, ms in points:
        total = sum(est.layer(c, weight_for(c) if c.scheme != "dense" and weight_for else None).ms for c in layers)
        rows.append({"estimated_ms": total, "measured_ms": ms, "error_pct": 100.0 * (total - ms) / ms})
    return {"cpu": cpu, "label": est.cpu.label(), "rows": rows,
            "mape_pct": mape([r["estimated_ms"] for r in rows], [r["measured_ms"] for r in rows])}
