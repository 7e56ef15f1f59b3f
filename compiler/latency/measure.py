"""Compile one layer configuration alone with the project's compiler path, and build a table from such layers.

A `conv` layer is exactly the kernel `compiler.rewrite` emits for its chain: the same `ConvSpec`,
the schedule `choose_schedule` picks for the target's SIMD width, built from
`compiler.kernels.conv2d_primfunc`, or the Winograd kernel where `compiler.winograd.choose_conv_kernel` picks one
(the table records which: `Entry.kernel`; a Winograd layer's direct kernel is timed beside it, `Entry.direct_ms`,
the reference its pruned forms' speed factors are taken against). `adapter` and `tail` layers are the small torch subgraphs the
networks contain, compiled with `compiler.build.compile_model`, so they lower as in a whole network.
A pruned conv is the sparse kernel `compiler.sparse.choose_kernel` picks for its weight (only where it beats
the dense kernel the rewrite would use, Winograd included), and that
weight comes from the caller (`weight_for`): a sparse kernel's code depends on where the zeros are,
so the timed weight must carry the structure the pruner produces, and only the pruner's owner (srprune,
which this package must not import) knows it. Timing back-ends are in `compiler.latency.runners`.

Other precisions (`LayerConfig.precision`) are the code the builds of that precision emit:
- int8: the compiler.int8 kernel `build_int8_clib` emits for such a layer (`int8_qconv` makes the layer: seeded
  random weights quantised per output channel, or the pruner's weight quantised so its zeros stay exact), on the
  dot form `choose_isa` picks for the target, dense or sparse as `make_plan` decides ("auto"); timed on uint8
  inputs. The int8 network has no adapter kernel (a residual of another width is sliced or zero-padded in its
  consumer's write-back), so int8 adapters are not built (the predictor counts them as 0 ms); the int8 tail is
  what the network runs at its ends: the input quantise kernel, the bicubic skip kernel and the tail conv with
  the skip, PixelShuffle and clamp fused, as one Relax function.
- fp16 (targets whose precision is fp16): the direct or sparse kernel with the fp16 build's element types
  (`conv_spec`); tails and adapters compile through `compile_model` like fp32 ones, whose lowering follows the
  target's precision. They run on arm64 only, so they are timed over RPC.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compiler.errors import CompilerError
from compiler.latency.config import PRECISIONS, LayerConfig, layer_precision
from compiler.latency.runners import BuiltLayer, Runner, interleaved
from compiler.latency.table import median
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


# Element type of a float layer's tensors between kernels (compiler.targets.PRECISIONS).
_DTYPES = {"fp32": "float32", "fp16": "float16"}


def conv_spec(cfg: LayerConfig, target: TargetSpec | None = None):
    """The `compiler.kernels.ConvSpec` the rewrite builds for this conv layer (on `target`: `layer_precision`).

    fp16: a layer between two of the fp16 build's kernels (compiler.rewrite.half_ends): weights, input window and
    multiply-adds in float16, its input, residual and output tensors float16 (the epilogue stays float32); the
    network's first and last layers read or write float32 at one end, a table entry is the body's form.
    """
    from compiler.kernels import ConvSpec

    p = cfg.pad
    precision = layer_precision(cfg, target)
    if precision not in _DTYPES:
        raise CompilerError(f"layer {cfg.key()} is not a float layer")
    t = _DTYPES[precision]
    return ConvSpec(1, cfg.cin, cfg.h, cfg.w, cfg.cout, cfg.k, cfg.k, (p, p, p, p), cfg.groups, cfg.bias,
                    cfg.act, cfg.residual, compute=t, data_dtype=t, residual_dtype=t, out_dtype=t)


def check_precision(target: TargetSpec, precision: str) -> None:
    """Refuse (one line) a precision whose kernels `target` cannot run: fp16 needs an fp16 target (fullfp16),
    int8 a dot form (compiler.int8.isa.choose_isa: AVX-512 VNNI or AVX2 on x86; sdot or NEON on aarch64)."""
    if precision == "fp32":
        return
    if precision == "fp16":
        if target.precision != "fp16":
            raise CompilerError(f"target {target.name} has no fp16 kernels (precision {target.precision}); "
                                "fp16 layers are built for android-arm64-fp16")
        return
    if precision == "int8":
        from compiler.int8.isa import choose_isa

        try:
            choose_isa(target)
        except CompilerError as exc:
            raise CompilerError(f"precision int8: {exc}") from None
        return
    raise CompilerError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")


def build_layer(cfg: LayerConfig, target: TargetSpec, seed: int = 0, weight: np.ndarray | None = None) -> BuiltLayer:
    """Compile `cfg` alone for `target` with the compiler's own code path.

    `weight` is required for a pruned layer: its zeros decide the sparse kernel's code (checked by
    `check_pruned_weight`). Dense layers draw a seeded random weight; their code does not depend on it.
    `cfg.precision` picks the build whose code is timed (module docstring); one `target` cannot run is refused.
    """
    rng = np.random.default_rng(seed)
    check_precision(target, cfg.precision)
    if cfg.scheme != "dense" and cfg.op != "conv":
        raise CompilerError(f"only conv layers can be pruned, got {cfg.key()}")
    if cfg.precision == "int8":
        return _build_int8(cfg, target, rng, check_pruned_weight(cfg, weight) if cfg.scheme != "dense" else None)
    if cfg.scheme != "dense":
        return _build_sparse(cfg, target, rng, check_pruned_weight(cfg, weight))
    if cfg.op == "conv":
        from compiler.kernels import choose_schedule, conv2d_primfunc
        from compiler.winograd import choose_conv_kernel, kernel_name

        spec = conv_spec(cfg, target)
        m = choose_conv_kernel(spec, target.vec, target.registers)  # the rewrite's per-layer choice
        if m:
            return _build_winograd(cfg, spec, m, target, rng)
        sched = choose_schedule(spec, target.vec, target.registers)
        func = conv2d_primfunc(spec, sched).with_attr("global_symbol", "layer")
        exe = _compile_kernel(cfg, func, target)
        oh, ow = cfg.out_hw
        return BuiltLayer(exe, "layer", False, _kernel_inputs(cfg, sched.oc_tile, rng, spec.compute),
                          (1, cfg.cout, oh, ow), target, {"kernel": kernel_name(0)}, spec.out_dtype)
    from compiler.build import compile_model

    compiled = compile_model(layer_module(cfg), (1, cfg.cin, cfg.h, cfg.w), target, check=False)
    return BuiltLayer(compiled.executable, "main", True, [rng.random((1, cfg.cin, cfg.h, cfg.w), dtype=np.float32)],
                      compiled.output_shape, target, {"kernel": "graph"})


def _compile_kernel(cfg: LayerConfig, func: Any, target: TargetSpec) -> Any:
    """One kernel PrimFunc (global symbol "layer") compiled alone for `target`; a failure is one line."""
    import tvm

    try:
        return tvm.compile(tvm.IRModule({"layer": func}), target=target.tvm_target())
    except Exception as exc:  # noqa: BLE001
        raise CompilerError(f"cannot build layer {cfg.key()}: {str(exc).strip().splitlines()[0]}") from exc


def _build_winograd(cfg: LayerConfig, spec, m: int, target: TargetSpec, rng: np.random.Generator) -> BuiltLayer:
    """The Winograd F(m) kernel the rewrite emits for this dense conv (compiler.winograd), on transformed weights."""
    from compiler.winograd import choose_winograd_schedule, kernel_name, transform_weight, winograd_primfunc

    sched = choose_winograd_schedule(spec, m, target.vec, target.registers)
    func = winograd_primfunc(spec, sched).with_attr("global_symbol", "layer")
    exe = _compile_kernel(cfg, func, target)
    args = _kernel_inputs(cfg, 1, rng)
    args[1] = transform_weight(rng.standard_normal((cfg.cout, cfg.cin, 3, 3), dtype=np.float32), sched)
    oh, ow = cfg.out_hw
    return BuiltLayer(exe, "layer", False, args, (1, cfg.cout, oh, ow), target, {"kernel": kernel_name(m)})


# --- int8 layers -------------------------------------------------------------------------------------

# Quantisation of the timed int8 layers' tensors. The code depends on them only through constants (the padding's
# zero point, the folded bias, the requantisation), not its shape or speed; the output scale keeps random layers'
# outputs mostly inside the uint8 range, so the reference test sees real values, not saturation.
_INT8_INPUT = (0.02, 3)
_INT8_OUTPUT = (0.5, 128)
_INT8_RESIDUAL = (0.05, 120)
_SKIP_TAPS = 5  # the GenomeNet's bicubic skip: a depthwise 5x5 on the image (compiler.int8.network.skip_primfunc)


def int8_qconv(cfg: LayerConfig, seed: int = 0, weight: np.ndarray | None = None) -> Any:
    """The `compiler.quant_spec.QConv` an int8 build runs for conv or tail layer `cfg`: `weight` (float OIHW, the
    pruner's zeros) or a seeded N(0,1) weight, quantised per output channel (`quantize_weight`, so zeros stay
    exact int8 zeros), a grouped conv as its dense block-diagonal equivalent (as srprune.quant hands it over), a
    seeded int32 bias, PReLU slopes 0.25; the tail (op "tail") writes float32 (output None)."""
    from compiler.quant_spec import QConv, QParams, block_diagonal, quantize_weight

    rng = np.random.default_rng(seed)
    shape = (cfg.cout, cfg.cin // cfg.groups, cfg.k, cfg.k)
    w = rng.standard_normal(shape, dtype=np.float32) if weight is None else np.asarray(weight, np.float32)
    q, scale = quantize_weight(w)
    if cfg.groups > 1:
        q = block_diagonal(q, cfg.groups)
    bias = rng.integers(-2000, 2000, cfg.cout).astype(np.int32) if cfg.bias else np.zeros(cfg.cout, np.int32)
    tail = cfg.op == "tail"
    act_param = np.full(cfg.cout, 0.25, np.float32) if cfg.act == "prelu" else None
    return QConv(q, scale, bias, QParams(*_INT8_INPUT), None if tail else QParams(*_INT8_OUTPUT), cfg.act,
                 act_param, padding=cfg.pad, residual=QParams(*_INT8_RESIDUAL) if cfg.residual else None,
                 name=cfg.key())


def _build_int8(cfg: LayerConfig, target: TargetSpec, rng: np.random.Generator,
                weight: np.ndarray | None) -> BuiltLayer:
    """The int8 network's code for `cfg` (module docstring): its conv kernel, or its ends for the tail.

    `extra` keeps the QConv (and the skip weight) so the timed inputs can be checked against the integer
    reference; `kernel` names the dot form and whether the sparse plan ran ("int8-vnni", "int8-vnni-sparse", ...).
    """
    from compiler.int8.isa import choose_isa, kernel_target
    from compiler.int8.kernel import build_kernel

    if cfg.op == "adapter":
        raise CompilerError(f"{cfg.key()}: an int8 network has no adapter kernel (its consumer's write-back slices "
                            "or zero-pads the residual); the predictor counts it as 0 ms")
    isa = choose_isa(target)
    ktarget = kernel_target(target, isa)
    layer = int8_qconv(cfg, int(rng.integers(2**31)), weight)
    oh, ow = cfg.out_hw
    x = rng.integers(0, 256, (1, cfg.cin, cfg.h, cfg.w)).astype(np.uint8)
    if cfg.op == "tail":
        kernel = build_kernel(layer, 1, cfg.h, cfg.w, isa, tail_shuffle=cfg.scale, clamp=True, fskip=True)
        return _int8_tail(cfg, kernel, ktarget, rng, x, layer)
    kernel = build_kernel(layer, 1, cfg.h, cfg.w, isa)
    exe = _compile_kernel(cfg, kernel.func.with_attr("global_symbol", "layer"), ktarget)
    args = [x, *kernel.consts]
    if cfg.residual:
        args.append(rng.integers(0, 256, (1, cfg.cout, oh, ow)).astype(np.uint8))
    name = f"int8-{isa.name}" + ("-sparse" if kernel.plan.sparse else "")
    return BuiltLayer(exe, "layer", False, args, kernel.spec.out_shape, target,
                      {"kernel": name, "qconv": layer, "kept_columns": kernel.plan.kept_columns()}, "uint8")


def _int8_tail(cfg: LayerConfig, kernel: Any, target: TargetSpec, rng: np.random.Generator, trunk: np.ndarray,
               layer: Any) -> BuiltLayer:
    """The int8 network's ends as one Relax function: quantise the float32 image, the bicubic skip kernel on it,
    the tail kernel (skip, PixelShuffle and clamp fused); inputs: image, trunk codes, then the constants."""
    import tvm
    from tvm import relax

    from compiler.int8.network import quantize_primfunc, skip_lut, skip_primfunc
    from compiler.pipeline import phase_passes, tvm_errors

    s2 = cfg.scale * cfg.scale
    image_shape = (1, 3, cfg.h, cfg.w)
    if cfg.cout != 3 * s2:
        raise CompilerError(f"{cfg.key()}: an int8 tail writes a 3-channel image ({3 * s2} channels)")
    skip_w = (rng.random((3 * s2, 1, _SKIP_TAPS, _SKIP_TAPS)) / _SKIP_TAPS**2).astype(np.float32)
    inputs = [rng.random(image_shape, dtype=np.float32), trunk, *kernel.consts, skip_w, skip_lut()]
    params = [relax.Var(f"a{i}", relax.TensorType(a.shape, str(a.dtype))) for i, a in enumerate(inputs)]
    image, codes, *consts = params
    consts, sw, lut = consts[:-2], consts[-2], consts[-1]
    bb = relax.BlockBuilder()
    with bb.function("main", params):  # no dataflow block: nothing for TVM to fuse, the kernels run as they are
        funcs = {"srm_int8_quantize": quantize_primfunc(image_shape),
                 "srm_int8_skip": skip_primfunc(image_shape, skip_w.shape), "srm_int8_tail": kernel.func}
        gv = {n: bb.add_func(f.with_attr("global_symbol", n), n) for n, f in funcs.items()}
        q = bb.emit(relax.call_tir(gv["srm_int8_quantize"], [image], relax.TensorType(image_shape, "uint8")))
        skip = bb.emit(relax.call_tir(gv["srm_int8_skip"], [q, sw, lut],
                                      relax.TensorType((1, 3 * s2, cfg.h, cfg.w), "float32")))
        out = bb.emit(relax.call_tir(gv["srm_int8_tail"], [codes, *consts, skip],
                                     relax.TensorType(kernel.spec.out_shape, "float32")))
        bb.emit_func_output(out)
    mod, tgt = bb.get(), target.tvm_target()
    with tgt, tvm.transform.PassContext(opt_level=3), tvm_errors(f"cannot build layer {cfg.key()}"):
        for _, step in phase_passes(tgt):  # the one pipeline every build runs after its rewrite
            mod = step(mod)
        exe = relax.build(mod, target=tgt, relax_pipeline=None)
    name = f"int8-{kernel.isa.name}" + ("-sparse" if kernel.plan.sparse else "")
    return BuiltLayer(exe, "main", True, inputs, kernel.spec.out_shape, target,
                      {"kernel": name, "qconv": layer, "skip_weight": skip_w})


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
    try:
        from compiler import sparse
    except ImportError:
        raise CompilerError(f"no sparse kernels in this compiler; cannot time {cfg.key()}") from None

    dense_cfg = LayerConfig(**{**cfg.to_dict(), "scheme": "dense", "ratio": 0.0, "block": (0, 0)})
    spec = conv_spec(cfg, target)
    from compiler.winograd import dense_relative_cost

    plan = sparse.choose_kernel(spec, weight, target.vec, target.registers,
                                dense_relative=dense_relative_cost(spec, target.vec, target.registers))
    if plan is None:
        return build_layer(dense_cfg, target)  # keeps the precision: an fp16 layer's dense twin is fp16
    bias = rng.standard_normal(cfg.cout).astype(np.float32) if cfg.bias else None
    alpha = np.full(cfg.cout, 0.25, np.float32) if cfg.act == "prelu" else None
    func = sparse.sparse_conv2d_primfunc(spec, plan, weight, bias, alpha).with_attr("global_symbol", "layer")
    exe = _compile_kernel(cfg, func, target)
    oh, ow = cfg.out_hw
    args = [rng.random((1, cfg.cin, cfg.h, cfg.w), dtype=np.float32).astype(spec.data_dtype)]
    if len(func.params) == 3 + int(cfg.residual):  # the packed weights are an argument, not baked in
        args.append(sparse.pack_sparse_weight(weight, plan, spec.compute))
    if cfg.residual:
        args.append(rng.random((1, cfg.cout, oh, ow), dtype=np.float32).astype(spec.residual_dtype))
    return BuiltLayer(exe, "layer", False, args, (1, cfg.cout, oh, ow), target,
                      {"sparse": True, "weight": weight, "bias": bias, "kernel": "sparse"}, spec.out_dtype)


def direct_twin(cfg: LayerConfig, built: BuiltLayer, target: TargetSpec) -> BuiltLayer | None:
    """The direct kernel of a dense conv that `built` runs as Winograd (its `Entry.direct_ms`), else None (a pruned
    conv whose sparse kernel lost to Winograd is not a direct twin: its dense twin's entry carries one)."""
    from compiler.winograd import winograd_mode

    if cfg.scheme != "dense" or not built.extra.get("kernel", "").startswith("winograd"):
        return None
    with winograd_mode("direct"):
        return build_layer(cfg, target)


def build_one(cfg: LayerConfig, target: TargetSpec, weight: np.ndarray | None = None,
              twin: bool = True) -> tuple[BuiltLayer, BuiltLayer | None]:
    """The layer as the table times it (`build_layer`), and its direct twin where it runs as Winograd and `twin`
    (a module-level function: the table's BuildPool workers run it)."""
    built = build_layer(cfg, target, weight=weight)
    return built, (direct_twin(cfg, built, target) if twin else None)


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
                 progress: bool = True, chunk: int = 32, weight_for: WeightFor | None = None,
                 keep: dict[str, BuiltLayer | None] | None = None) -> int:
    """Measure every configuration of `configs` the table lacks; returns how many were measured now.

    `weight_for(cfg)` gives each pruned configuration's weight (see `build_layer`); dense ones need none.
    `keep`: the dense layers built now whose keys it holds get their build stored there, for a caller that times
    them again later (the calibration, beside its networks) without compiling them twice.

    Why chunks timed round-robin: on a shared machine the load changes over seconds, so the layers of
    a chunk are compiled first and then timed one run each per round, `repeat` rounds (after one
    warm-up run each): a load burst hits all of them alike instead of a few entries wholesale. The
    table is saved after each chunk, so a killed build keeps every finished chunk and resumes.
    The bar counts layers (compiled and timed) with rate and ETA. On the host a chunk is compiled by one worker
    process per core (compiler.latency.parallel), idle while the chunk is timed.
    """
    from tqdm import tqdm

    from compiler.latency.parallel import BuildPool, workers_for

    todo = table.missing(configs)
    done = 0
    bar = tqdm(total=2 * len(todo), desc=f"latency {target.name}", unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    try:
        with BuildPool(target, workers_for(runner, len(todo))) as pool:
            for start in range(0, len(todo), chunk):
                part = todo[start:start + chunk]
                calls = [(build_one, (cfg, target, weight_for(cfg) if weight_for is not None and cfg.scheme != "dense"
                                      else None)) for cfg in part]
                bar.set_postfix_str(f"compile {len(part)} layers", refresh=False)
                built: list[Any] = [None] * len(part)
                twins: list[Any] = [None] * len(part)
                for i, (layer, twin) in pool.map(calls):
                    built[i], twins[i] = layer, twin
                    if keep is not None and part[i].scheme == "dense" and part[i].key() in keep:
                        keep[part[i].key()] = layer
                    bar.update(1)
                timers = [runner.timer(b) for b in built + [t for t in twins if t is not None]]  # loads, warms up
                bar.set_postfix_str(f"time {len(timers)} kernels x {repeat} rounds", refresh=False)
                samples = interleaved(timers, repeat)
                twin_samples = iter(samples[len(built):])
                for cfg, b, twin, ts in zip(part, built, twins, samples):
                    direct = median(next(twin_samples)) if twin is not None else None
                    table.add(cfg, ts, kernel=b.extra.get("kernel", ""), direct_ms=direct)
                bar.update(len(part))
                done += len(part)
                table.save()
                del built, twins, timers
    finally:
        bar.close()
    return done
