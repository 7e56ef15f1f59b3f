"""Compile one layer configuration alone with the project's compiler path, and build a table from such layers.

A `conv` layer is exactly the kernel `compiler.rewrite` emits for its chain: the same `ConvSpec`,
the schedule `choose_schedule` picks for the target's SIMD width, built from
`compiler.kernels.conv2d_primfunc`, or the Winograd kernel where `compiler.winograd.choose_conv_kernel` picks one
(the table records which: `Entry.kernel`). `adapter` and `tail` layers are the small torch subgraphs the
networks contain, compiled with `compiler.build.compile_model`, so they lower as in a whole network.
A pruned conv is the sparse kernel `compiler.sparse.choose_kernel` picks for its weight, and that
weight comes from the caller (`weight_for`): a sparse kernel's code depends on where the zeros are,
so the timed weight must carry the structure the pruner produces, and only the pruner's owner (srprune,
which this package must not import) knows it. Timing back-ends are in `compiler.latency.runners`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compiler.errors import CompilerError
from compiler.latency.config import LayerConfig
from compiler.latency.runners import BuiltLayer, Runner, interleaved
from compiler.targets import TargetSpec

# The weight (out, in/groups, k, k) of a pruned layer configuration, zero where the pruner prunes.
WeightFor = Callable[[LayerConfig], np.ndarray]
# How far a supplied weight's zero fraction may be from its configuration's ratio (rounding of pruning units).
RATIO_TOLERANCE = 0.05


# --- layer -> compiled code ------------------------------------------------------------------------


class _Adapter(nn.Module):
    """The channel pad or slice a skip connection needs across a width change (supernet.blocks.skip_add)."""

    def __init__(self, cout: int) -> None:
        super().__init__()
        self.cout = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        cin = x.shape[1]
        if cin > self.cout:
            return x[:, : self.cout]
        return F.pad(x, (0, 0, 0, 0, 0, self.cout - cin))


class _Tail(nn.Module):
    """Tail conv3x3 + fixed bicubic skip (grouped 5x5 on the edge-padded image) + PixelShuffle.

    The image the skip reads is the first 3 trunk channels here (the layer has one input); the
    slice is a constant-size copy the calibrated overhead absorbs.
    """

    def __init__(self, cin: int, scale: int) -> None:
        super().__init__()
        out = 3 * scale * scale
        self.scale = scale
        self.tail = nn.Conv2d(cin, out, 3, padding=1)
        self.up = nn.Conv2d(3, out, 5, groups=3, bias=False)
        del self.up.weight
        self.up.register_buffer("weight", torch.rand(out, 1, 5, 5) / 25)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = h[:, :3]
        y = self.tail(h) + self.up(F.pad(x, (2, 2, 2, 2), mode="replicate"))
        return F.pixel_shuffle(y, self.scale)


def layer_module(cfg: LayerConfig) -> nn.Module:
    """The torch module of a graph-kind layer (adapter, tail), as the networks write it."""
    if cfg.op == "adapter":
        return _Adapter(cfg.cout).eval()
    if cfg.op == "tail":
        if cfg.cin < 3:
            raise CompilerError(f"a tail layer needs at least 3 input channels, got {cfg.cin}")
        return _Tail(cfg.cin, cfg.scale).eval()
    raise CompilerError(f"layer op {cfg.op!r} is not a graph layer")


def _kernel_inputs(cfg: LayerConfig, oc_tile: int, rng: np.random.Generator,
                   compute: str = "float32") -> list[np.ndarray]:
    """Seeded arguments of a direct conv kernel; data, weight and residual in the kernel's `compute` type."""
    from compiler.kernels import pack_weight

    oh, ow = cfg.out_hw
    weight = rng.standard_normal((cfg.cout, cfg.cin // cfg.groups, cfg.k, cfg.k), dtype=np.float32)
    args = [rng.random((1, cfg.cin, cfg.h, cfg.w), dtype=np.float32).astype(compute),
            pack_weight(weight, oc_tile, compute)]
    if cfg.bias:
        args.append(rng.standard_normal(cfg.cout, dtype=np.float32))
    if cfg.act == "prelu":
        args.append(np.full(cfg.cout, 0.25, dtype=np.float32))
    if cfg.residual:
        args.append(rng.random((1, cfg.cout, oh, ow), dtype=np.float32).astype(compute))
    return args


def conv_spec(cfg: LayerConfig, target: TargetSpec | None = None):
    """The `compiler.kernels.ConvSpec` the rewrite builds for this conv layer on `target`.

    On an fp16 target (precision "fp16") the rewrite's kernels multiply-add in float16 and pass float16 tensors
    between them: a body layer's data, residual and output are float16 (the network's first and last layers read or
    write float32 at one end; a table entry is the body's form). Without a target: float32.
    """
    from compiler.kernels import ConvSpec
    from compiler.targets import PRECISIONS

    p = cfg.pad
    dtype = PRECISIONS.get(target.precision, "float32") if target is not None else "float32"
    return ConvSpec(1, cfg.cin, cfg.h, cfg.w, cfg.cout, cfg.k, cfg.k, (p, p, p, p), cfg.groups, cfg.bias,
                    cfg.act, cfg.residual, compute=dtype, data_dtype=dtype, residual_dtype=dtype, out_dtype=dtype)


def build_layer(cfg: LayerConfig, target: TargetSpec, seed: int = 0, weight: np.ndarray | None = None) -> BuiltLayer:
    """Compile `cfg` alone for `target` with the compiler's own code path.

    `weight` is required for a pruned layer: its zeros decide the sparse kernel's code (checked by
    `check_pruned_weight`). Dense layers draw a seeded random weight; their code does not depend on it.
    """
    import tvm

    rng = np.random.default_rng(seed)
    if cfg.scheme != "dense" and cfg.op != "conv":
        raise CompilerError(f"only conv layers can be pruned, got {cfg.key()}")
    if cfg.scheme != "dense":
        return _build_sparse(cfg, target, rng, check_pruned_weight(cfg, weight))
    if cfg.op == "conv":
        from compiler.kernels import choose_schedule, conv2d_primfunc
        from compiler.winograd import choose_conv_kernel, kernel_name

        spec = conv_spec(cfg, target)
        # the rewrite's per-layer choice; Winograd kernels are float32 only (an fp16 build keeps 3x3 convs direct)
        m = choose_conv_kernel(spec, target.vec, target.registers) if spec.compute == "float32" else 0
        if m:
            return _build_winograd(cfg, spec, m, target, rng)
        sched = choose_schedule(spec, target.vec, target.registers)
        func = conv2d_primfunc(spec, sched).with_attr("global_symbol", "layer")
        try:
            exe = tvm.compile(tvm.IRModule({"layer": func}), target=target.tvm_target())
        except Exception as exc:  # noqa: BLE001
            raise CompilerError(f"cannot build layer {cfg.key()}: {str(exc).strip().splitlines()[0]}") from exc
        oh, ow = cfg.out_hw
        return BuiltLayer(exe, "layer", False, _kernel_inputs(cfg, sched.oc_tile, rng, spec.compute),
                          (1, cfg.cout, oh, ow), target, {"kernel": kernel_name(0)})
    from compiler.build import compile_model

    compiled = compile_model(layer_module(cfg), (1, cfg.cin, cfg.h, cfg.w), target, check=False)
    return BuiltLayer(compiled.executable, "main", True, [rng.random((1, cfg.cin, cfg.h, cfg.w), dtype=np.float32)],
                      compiled.output_shape, target, {"kernel": "graph"})


def _build_winograd(cfg: LayerConfig, spec, m: int, target: TargetSpec, rng: np.random.Generator) -> BuiltLayer:
    """The Winograd F(m) kernel the rewrite emits for this dense conv (compiler.winograd), on transformed weights."""
    import tvm

    from compiler.winograd import choose_winograd_schedule, kernel_name, transform_weight, winograd_primfunc

    sched = choose_winograd_schedule(spec, m, target.vec, target.registers)
    func = winograd_primfunc(spec, sched).with_attr("global_symbol", "layer")
    try:
        exe = tvm.compile(tvm.IRModule({"layer": func}), target=target.tvm_target())
    except Exception as exc:  # noqa: BLE001
        raise CompilerError(f"cannot build layer {cfg.key()}: {str(exc).strip().splitlines()[0]}") from exc
    args = _kernel_inputs(cfg, 1, rng)
    args[1] = transform_weight(rng.standard_normal((cfg.cout, cfg.cin, 3, 3), dtype=np.float32), sched)
    oh, ow = cfg.out_hw
    return BuiltLayer(exe, "layer", False, args, (1, cfg.cout, oh, ow), target, {"kernel": kernel_name(m)})


def check_pruned_weight(cfg: LayerConfig, weight: np.ndarray | None) -> np.ndarray:
    """`weight` checked against the pruned layer `cfg`: its shape, and a zero fraction near `cfg.ratio`.

    Why checked: a weight whose structure is not the configuration's would put a wrong time under
    the configuration's key, and nothing downstream could tell.
    """
    if weight is None:
        raise CompilerError(f"pruned layer {cfg.key()} needs its weight with the pruner's zeros "
                            "(pass weight_for to measure_into)")
    w = np.ascontiguousarray(weight, dtype=np.float32)
    shape = (cfg.cout, cfg.cin // cfg.groups, cfg.k, cfg.k)
    if w.shape != shape:
        raise CompilerError(f"weight of shape {w.shape} for pruned layer {cfg.key()}, expected {shape}")
    zeros = 1.0 - np.count_nonzero(w) / w.size
    if abs(zeros - cfg.ratio) > RATIO_TOLERANCE:
        raise CompilerError(f"weight for pruned layer {cfg.key()} has {zeros:.3f} zeros, not its ratio {cfg.ratio}")
    return w


def _build_sparse(cfg: LayerConfig, target: TargetSpec, rng: np.random.Generator, weight: np.ndarray) -> BuiltLayer:
    """The kernel the rewrite picks for a pruned conv: `compiler.sparse.choose_kernel` on `weight`.

    Sparse kernels bake the structure (and bias/slopes) into their code, so the timed code is the one
    the compiler would emit for such a weight; where the compiler's cost model keeps the dense kernel,
    the dense kernel is timed.
    """
    import tvm

    try:
        from compiler import sparse
    except ImportError:
        raise CompilerError(f"no sparse kernels in this compiler; cannot time {cfg.key()}") from None

    dense_cfg = LayerConfig(**{**cfg.to_dict(), "scheme": "dense", "ratio": 0.0, "block": (0, 0)})
    spec = conv_spec(cfg, target)
    plan = sparse.choose_kernel(spec, weight, target.vec, target.registers)
    if plan is None:
        return build_layer(dense_cfg, target)
    bias = rng.standard_normal(cfg.cout).astype(np.float32) if cfg.bias else None
    alpha = np.full(cfg.cout, 0.25, np.float32) if cfg.act == "prelu" else None
    func = sparse.sparse_conv2d_primfunc(spec, plan, weight, bias, alpha).with_attr("global_symbol", "layer")
    try:
        exe = tvm.compile(tvm.IRModule({"layer": func}), target=target.tvm_target())
    except Exception as exc:  # noqa: BLE001
        raise CompilerError(f"cannot build layer {cfg.key()}: {str(exc).strip().splitlines()[0]}") from exc
    oh, ow = cfg.out_hw
    args = [rng.random((1, cfg.cin, cfg.h, cfg.w), dtype=np.float32).astype(spec.data_dtype)]
    if len(func.params) == 3 + int(cfg.residual):  # the packed weights are an argument, not baked in
        args.append(sparse.pack_sparse_weight(weight, plan, spec.compute))
    if cfg.residual:
        args.append(rng.random((1, cfg.cout, oh, ow), dtype=np.float32).astype(spec.residual_dtype))
    return BuiltLayer(exe, "layer", False, args, (1, cfg.cout, oh, ow), target,
                      {"sparse": True, "weight": weight, "bias": bias, "kernel": "sparse"})


def build_network(model: nn.Module, input_shape: tuple[int, int, int, int], target: TargetSpec) -> BuiltLayer:
    """A whole network compiled with `compile_model` (checked against PyTorch on host), ready to time."""
    from compiler.build import compile_model

    return built_network(compile_model(model, input_shape, target))


def built_network(compiled: Any) -> BuiltLayer:
    """A compiled network (compiler.build.CompiledModel) with a seeded random input, ready to time."""
    x = np.random.default_rng(0).random(compiled.input_shape, dtype=np.float32)
    return BuiltLayer(compiled.executable, "main", True, [x], compiled.output_shape, compiled.target)


# --- table builds ----------------------------------------------------------------------------------


def measure_into(table: Any, configs: list[LayerConfig], target: TargetSpec, runner: Runner, *, repeat: int = 5,
                 progress: bool = True, chunk: int = 32, weight_for: WeightFor | None = None) -> int:
    """Measure every configuration of `configs` the table lacks; returns how many were measured now.

    `weight_for(cfg)` gives each pruned configuration's weight (see `build_layer`); dense ones need none.

    Why chunks timed round-robin: on a shared machine the load changes over seconds, so the layers of
    a chunk are compiled first and then timed one run each per round, `repeat` rounds (after one
    warm-up run each): a load burst hits all of them alike instead of a few entries wholesale. The
    table is saved after each chunk, so a killed build keeps every finished chunk and resumes.
    The bar counts layers (compiled and timed) with rate and ETA.
    """
    from tqdm import tqdm

    todo = table.missing(configs)
    done = 0
    bar = tqdm(total=2 * len(todo), desc=f"latency {target.name}", unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    try:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            built = []
            for cfg in part:
                bar.set_postfix_str(f"compile {cfg.key()[:40]}", refresh=False)
                weight = weight_for(cfg) if weight_for is not None and cfg.scheme != "dense" else None
                built.append(build_layer(cfg, target, weight=weight))
                bar.update(1)
            timers = [runner.timer(b) for b in built]  # loads and warms up each layer once
            bar.set_postfix_str(f"time {len(part)} layers x {repeat} rounds", refresh=False)
            samples = interleaved(timers, repeat)
            for cfg, b, ts in zip(part, built, samples):
                table.add(cfg, ts, kernel=b.extra.get("kernel", ""))
            bar.update(len(part))
            done += len(part)
            table.save()
            del built, timers
    finally:
        bar.close()
    return done
