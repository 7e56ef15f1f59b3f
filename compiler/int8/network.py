"""A chain of QConv layers compiled whole: float32 image in -> uint8 -> int8 convs -> float32 tail -> image out.

Mixed precision: a layer may instead be a `FloatConv` (a layer the search kept in fp32), built by
compiler.int8.float_layer as the fp32 kernel with uint8 codes at its edges (dequantised where read, requantised in the
write-back), so the chain needs no conversion pass at a precision boundary. A tensor is uint8 codes exactly when an
int8 layer reads it (the image always is); an int8 layer whose output only fp32 layers read writes float32.

The entry for srprune/quant's output: `Int8Network(layers, scale)` (the tail is the layer whose `output` is None,
last) -> `build_int8_clib(net, shape, target, out_dir)`, a c-lib with the ABI of every other c-lib (srmodel.h:
float32 NCHW in [0, 1] / uint8 RGB in and out), for the host and for android-arm64(-dotprod) / linux-arm64 through
the same cross toolchain (compiler/clib). Why the c-lib and not the Relax VM: the int8 layers are our own kernels
end to end (nothing for Relax to lower), and the c-lib's plan is exactly a list of kernel calls over an arena.

Steps: one kernel quantises the float32 input to the uint8 image (round(255 x), exact for inputs k / 255 as
run_rgb8 makes them), each layer is one int8 kernel (compiler.int8.kernel) with its residual (the uint8 output of
an earlier layer, or the image) and the tail writes the float32 image with PixelShuffle, the nearest-neighbour
global skip and the clamp fused. `reference_network` is the same computation in numpy (compiler.quant_spec's
reference_conv per layer), the test oracle.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tvm import tirx

from compiler.artifact import check_out_dir, staged_folder, write_manifest
from compiler.clib.plan import ALIGN, REGION_ARENA, REGION_CONST, REGION_INPUT, REGION_OUTPUT, Plan, Step, TensorDesc
from compiler.errors import CompilerError
from compiler.int8.isa import Int8Isa, choose_isa, kernel_target
from compiler.int8.float_layer import FloatKernel, build_float_kernel
from compiler.int8.kernel import Int8Kernel, build_kernel
from compiler.kernels import row_tasks
from compiler.quant_spec import IMAGE_INPUT, FloatConv, QConv, reference_conv, reference_float_conv
from compiler.targets import TargetSpec, get_target

IMAGE = -1  # residual_from value: the quantised input image
# A mixed network's check (fp32 layers sum in float32, the reference in float64: a requantised code can differ by
# one where a value sits on a rounding boundary, and later layers carry that on): nearly every value within one uint8
# step of the reference, none further than a few.
MIXED_WITHIN_ONE = 0.999
MIXED_MAX_DIFF = 4.0 / 255.0 + 1e-6


@dataclass
class Int8Network:
    """Layers in order; `residual_from[i]` is the index of the earlier layer whose uint8 output layer i adds (IMAGE:
    the input image; None: no residual), sliced to the layer's width or zero-padded (padding adds real zero).
    `skip`: the tail adds the nearest-neighbour upsampled input image, or, with `skip_weight` (C s^2, 1, k, k), that
    depthwise float32 conv of the image x = q / 255 with replicated borders, before the shuffle (a bicubic skip)."""

    layers: list[QConv | FloatConv]
    scale: int
    residual_from: list[int | None] = field(default_factory=list)
    skip: bool = True
    skip_weight: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.layers:
            raise CompilerError("an int8 network needs at least one layer")
        self.residual_from = list(self.residual_from) or [None] * len(self.layers)
        if len(self.residual_from) != len(self.layers):
            raise CompilerError("residual_from needs one entry per layer")
        if self.layers[0].input != IMAGE_INPUT:
            raise CompilerError("the first layer's input must be the image (scale 1/255, zero point 0)")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, (QConv, FloatConv)):
                raise CompilerError(f"layer {i}: a {type(layer).__name__}, not a QConv or FloatConv")
            if i == len(self.layers) - 1 and layer.output is not None:
                raise CompilerError(f"layer {i}: the last layer (the tail) writes float32 (output None)")
            if i and layer.input != self.layers[i - 1].output:
                raise CompilerError(f"layer {i}: its input quantisation differs from layer {i - 1}'s output")
            if i and in_channels(layer) != self.layers[i - 1].weight.shape[0]:
                raise CompilerError(f"layer {i}: {in_channels(layer)} input channels after "
                                    f"{self.layers[i - 1].weight.shape[0]}")
            src = self.residual_from[i]
            if src is None and layer.residual is not None:
                raise CompilerError(f"layer {i}: residual_from and the layer's residual quantisation disagree")
            if src is not None:
                if not (src == IMAGE or 0 <= src < i):
                    raise CompilerError(f"layer {i}: residual_from {src} is not an earlier layer")
                params = IMAGE_INPUT if src == IMAGE else self.layers[src].output
                if params != layer.residual or (isinstance(layer, QConv) and params is None):
                    raise CompilerError(f"layer {i}: its residual (from {src}) has another quantisation")
        s2 = self.scale * self.scale
        if self.layers[-1].weight.shape[0] % s2:
            raise CompilerError(f"the tail's {self.layers[-1].weight.shape[0]} channels are not a multiple of {s2}")
        if self.skip and self.layers[-1].weight.shape[0] // s2 != in_channels(self.layers[0]):
            raise CompilerError("the global skip needs as many output image channels as input channels")
        if self.skip_weight is not None:
            k = self.skip_weight.shape[-1]
            want = (self.layers[-1].weight.shape[0], 1, k, k)
            if not self.skip or tuple(self.skip_weight.shape) != want or k % 2 == 0:
                raise CompilerError(f"skip_weight must be an odd depthwise kernel {want} of a network with a skip")
            self.skip_weight = np.asarray(self.skip_weight, np.float32)

    def residual_channels(self, i: int) -> int:
        """Channels of layer i's residual input (0: none)."""
        src = self.residual_from[i]
        if src is None:
            return 0
        return in_channels(self.layers[0]) if src == IMAGE else self.layers[src].weight.shape[0]

    def mixed(self) -> bool:
        """Whether some layer is fp32 (its output is then checked to a tolerance, not bit for bit)."""
        return any(isinstance(layer, FloatConv) for layer in self.layers)


def in_channels(layer: QConv | FloatConv) -> int:
    """Input channels of a layer (a grouped FloatConv's weight holds in / groups)."""
    return layer.weight.shape[1] * getattr(layer, "groups", 1)


def quantize_image(x: np.ndarray) -> np.ndarray:
    """float32 image in [0, 1] -> uint8 round_half_even(255 x) (the kernel's arithmetic)."""
    return np.clip(np.rint((np.asarray(x, np.float32) * np.float32(255.0)).astype(np.float32)), 0, 255).astype(np.uint8)


def reference_network(net: Int8Network, image: np.ndarray) -> np.ndarray:
    """The network in numpy: uint8 NCHW image -> float32 NCHW image in [0, 1] (before the final uint8 rounding)."""
    outs: dict[int, np.ndarray] = {IMAGE: image}
    q = image
    for i, layer in enumerate(net.layers):
        src = net.residual_from[i]
        residual = None if src is None else _adapt(outs[src], layer)
        q = reference_conv(q, layer, residual) if isinstance(layer, QConv) else reference_float_conv(q, layer, residual)
        outs[i] = q
    if net.skip_weight is not None:
        q = (q + reference_skip(image, net.skip_weight)).astype(np.float32)
    n, c, h, w = q.shape
    s = net.scale
    y = q.reshape(n, c // (s * s), s, s, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (s * s), h * s, w * s)
    if net.skip and net.skip_weight is None:
        skip = image.astype(np.float32) * np.float32(1.0 / 255.0)
        y = (y + skip.repeat(s, axis=2).repeat(s, axis=3)).astype(np.float32)
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def _adapt(r: np.ndarray, layer: QConv | FloatConv) -> np.ndarray:
    """A residual sliced to the layer's width, or padded with channels holding real zero (its zero point in codes)."""
    c, want = r.shape[1], layer.weight.shape[0]
    if c >= want:
        return r[:, :want]
    zero = 0 if layer.residual is None else layer.residual.zero_point
    pad = np.full((r.shape[0], want - c, *r.shape[2:]), zero, r.dtype)
    return np.concatenate([r, pad], axis=1)


def reference_skip(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The depthwise skip in numpy float32: x = float32(q) / 255, replicated borders, taps summed in row order."""
    n, c, h, w = image.shape
    co, _, k, _ = weight.shape
    r = k // 2
    x = np.pad(image.astype(np.float32) / np.float32(255.0), ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
    x = x.repeat(co // c, axis=1)
    acc = np.zeros((n, co, h, w), np.float32)
    for ky in range(k):
        for kx in range(k):
            acc = (acc + x[:, :, ky:ky + h, kx:kx + w] * weight[:, 0, ky, kx].reshape(1, -1, 1, 1)).astype(np.float32)
    return acc


def skip_lut() -> np.ndarray:
    """float32(q) / 255 for every code q: the skip kernel loads these instead of dividing per tap (same values)."""
    return (np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(np.float32)


def skip_primfunc(image_shape: tuple[int, int, int, int], weight_shape: tuple[int, ...],
                  vec: int = 16) -> tirx.PrimFunc:
    """uint8 image -> the float32 depthwise skip (n, C s^2, h, w), as reference_skip: x = float32(q) / 255 read from
    `skip_lut`, taps summed in row order (LLVM may contract a multiply-add: a few 1e-6 from numpy, as before).

    Bands of rows of each input channel in parallel (compiler.kernels.row_tasks); each task keeps the k
    edge-replicated input rows its output row reads, converted to float32, in a ring, and converts one new row per
    output row (the clamps happen there, not per tap); then every output channel of that input channel is `vec`
    lanes at a time over the ring. Why: the per-tap scalar form cost more than the whole int8 body of a searched
    network at 720p (a 5x5 skip over 12 channels is ~69 M multiply-adds), and converting the k rows afresh for each
    output row did each scalar table lookup k times. The bands are those of compiler.kernels.emit_row_bands; its
    ring is not shared because it zero-pads every channel of a conv's input, while this one replicates the edges
    of one channel through the lookup table.
    """
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T  # noqa: N812

    n, c, h, w = image_shape
    co, _, k, _ = weight_shape
    r = k // 2
    per = co // c
    pw = w + 2 * r
    bands = row_tasks(h)
    band = -(-h // bands)
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            T.func_attr({"tir.noalias": True})
            img = T.arg("image", T.buffer(image_shape, "uint8"))
            wt = T.arg("weight", T.buffer(weight_shape, "float32"))
            lut = T.arg("lut", T.buffer((256,), "float32"))
            out = T.arg("out", T.buffer((n, co, h, w), "float32"))
            with T.parallel(0, n * c * bands) as task:
                b, ci, y0 = task // (c * bands), (task // bands) % c, (task % bands) * band
                ring = T.sblock_alloc_buffer((k, pw), "float32")

                def convert(row) -> None:  # input row `row` (-r .. h - 1 + r), edges replicated, into its slot
                    yy = tirx.min(tirx.max(row, 0), h - 1)
                    slot = tirx.floormod(row, k)
                    with T.serial(0, pw) as xx:
                        xs = tirx.min(tirx.max(xx - r, 0), w - 1)
                        q = tirx.Cast("int32", tirx.BufferLoad(img, [b, ci, yy, xs]))
                        T.buffer_store(ring, tirx.BufferLoad(lut, [q]), [slot, xx])

                with T.serial(0, k - 1) as j:  # the rows above the band's first output row
                    convert(y0 - r + j)
                with T.serial(0, tirx.min(band, h - y0)) as dy:
                    y = y0 + dy
                    convert(y + r)
                    slots = [T.Bind(tirx.floormod(y - r + ky, k)) for ky in range(k)]
                    with T.serial(0, per) as oo:
                        o = ci * per + oo

                        def dot(x, lanes: int):
                            acc = tirx.Broadcast(tirx.const(0.0, "float32"), lanes) if lanes > 1 else \
                                tirx.const(0.0, "float32")
                            for ky in range(k):
                                for kx in range(k):
                                    tap = tirx.BufferLoad(wt, [o, 0, ky, kx])
                                    idx = tirx.Ramp(x + kx, 1, lanes) if lanes > 1 else x + kx
                                    acc = acc + tirx.BufferLoad(ring, [slots[ky], idx]) * (
                                        tirx.Broadcast(tap, lanes) if lanes > 1 else tap)
                            return acc

                        if w // vec:
                            with T.serial(0, w // vec) as xv:
                                T.buffer_store(out, dot(xv * vec, vec), [b, o, y, tirx.Ramp(xv * vec, 1, vec)])
                        if w % vec:
                            with T.serial(w // vec * vec, w) as x:
                                T.buffer_store(out, dot(x, 1), [b, o, y, x])
    return ib.get().with_attr("tir.is_scheduled", True)


def quantize_primfunc(shape: tuple[int, int, int, int]) -> tirx.PrimFunc:
    """float32 NCHW in [0, 1] -> the uint8 image (rows in parallel)."""
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T  # noqa: N812

    n, c, h, w = shape
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            T.func_attr({"tir.noalias": True})
            x = T.arg("x", T.buffer(shape, "float32"))
            q = T.arg("q", T.buffer(shape, "uint8"))
            with T.parallel(0, n * c * h) as r:
                with T.serial(0, w) as col:
                    idx = [r // (c * h), (r // h) % c, r % h, col]
                    v = tirx.nearbyint(tirx.BufferLoad(x, idx) * tirx.const(255.0, "float32"))
                    v = tirx.min(tirx.max(v, tirx.const(0.0, "float32")), tirx.const(255.0, "float32"))
                    T.buffer_store(q, tirx.Cast("uint8", v), idx)
    return ib.get().with_attr("tir.is_scheduled", True)


def build_kernels(net: Int8Network, input_shape: tuple[int, int, int, int], isa: Int8Isa,
                  sparse: str = "auto") -> list[Int8Kernel | FloatKernel]:
    """One kernel per layer, int8 or fp32 (module docstring); the tail with the shuffle, skip and clamp fused.
    `sparse` is the int8 kernels' mode (compiler.int8.kernel.SPARSE_MODES); fp32 layers choose as the compiler does."""
    n, c, h, w = input_shape
    if c != in_channels(net.layers[0]):
        raise CompilerError(f"the input has {c} channels, the first layer takes {in_channels(net.layers[0])}")
    kernels: list[Int8Kernel | FloatKernel] = []
    for i, layer in enumerate(net.layers):
        tail = i == len(net.layers) - 1
        if isinstance(layer, FloatConv):
            skip = "none" if not (tail and net.skip) else "image" if net.skip_weight is None else "tensor"
            k = build_float_kernel(layer, n, h, w, isa, tail_shuffle=net.scale if tail else 1, skip=skip, clamp=tail,
                                   res_channels=net.residual_channels(i))
        else:
            k = build_kernel(layer, n, h, w, isa, sparse=sparse, tail_shuffle=net.scale if tail else 1,
                             skip=net.skip and tail and net.skip_weight is None, clamp=tail,
                             res_channels=net.residual_channels(i), fskip=tail and net.skip_weight is not None)
        if k.spec.out_hw != (h, w):
            raise CompilerError(f"layer {i}: the network keeps the frame size; padding {layer.padding} changes it")
        kernels.append(k)
    return kernels


class _Arena:
    """First-fit reuse of freed blocks: a layer's output lives from its kernel to its last reader."""

    def __init__(self) -> None:
        self.size, self.free = 0, []  # free: [(offset, size)]

    def take(self, nbytes: int) -> int:
        nbytes = -(-nbytes // ALIGN) * ALIGN
        for k, (off, size) in enumerate(self.free):
            if size >= nbytes:
                self.free[k] = (off + nbytes, size - nbytes)
                return off
        off, self.size = self.size, self.size + nbytes
        return off

    def give(self, off: int, nbytes: int) -> None:
        self.free.append((off, -(-nbytes // ALIGN) * ALIGN))


def int8_plan(net: Int8Network, input_shape: tuple[int, int, int, int], isa: Int8Isa, sparse: str = "auto") -> Plan:
    """The c-lib's static plan: the quantise kernel, then one kernel per layer over an arena of uint8 tensors."""
    kernels = build_kernels(net, input_shape, isa, sparse)
    n, c, h, w = input_shape
    tensors: list[TensorDesc] = [TensorDesc(REGION_INPUT, 0, tuple(input_shape), "float32")]
    blob = bytearray()

    def const(arr: np.ndarray) -> int:
        blob.extend(b"\0" * (-len(blob) % ALIGN))
        tensors.append(TensorDesc(REGION_CONST, len(blob), tuple(arr.shape), str(arr.dtype)))
        blob.extend(np.ascontiguousarray(arr).tobytes())
        return len(tensors) - 1

    last_use = {IMAGE: len(net.layers) - 1 if net.skip else 0}
    for i, src in enumerate(net.residual_from):
        last_use[i] = max(last_use.get(i, i), i + 1)
        if src is not None:
            last_use[src] = max(last_use.get(src, 0), i)
    arena = _Arena()
    feat: dict[int, int] = {}  # producer -> tensor index
    nbytes = n * c * h * w
    feat[IMAGE] = len(tensors)
    tensors.append(TensorDesc(REGION_ARENA, arena.take(nbytes), (n, c, h, w), "uint8"))
    funcs = {"srm_int8_quantize": quantize_primfunc(tuple(input_shape))}
    steps = [Step("srm_int8_quantize", (0, feat[IMAGE]))]
    skip_tensor = None
    if net.skip_weight is not None:  # computed first: the image's arena block is then free after the last reader
        weight, lut = const(net.skip_weight), const(skip_lut())
        skip_tensor = len(tensors)
        shape = (n, net.skip_weight.shape[0], h, w)
        tensors.append(TensorDesc(REGION_ARENA, arena.take(4 * int(np.prod(shape))), shape, "float32"))
        funcs["srm_int8_skip"] = skip_primfunc((n, c, h, w), net.skip_weight.shape, isa.vec)
        steps.append(Step("srm_int8_skip", (feat[IMAGE], weight, lut, skip_tensor)))
    for i, k in enumerate(kernels):
        args = [feat[i - 1] if i else feat[IMAGE]] + [const(a) for a in k.consts]
        sources = {"residual": net.residual_from[i], "image": IMAGE}
        for arg in k.arg_names[1 + len(k.consts):-1]:  # the residual, the image (nearest skip), the skip tensor
            args.append(skip_tensor if arg == "skip" else feat[sources[arg]])
        if i == len(kernels) - 1:
            tensors.append(TensorDesc(REGION_OUTPUT, 0, k.out_shape, "float32"))
        else:
            size = int(np.prod(k.out_shape)) * np.dtype(k.out_dtype).itemsize
            tensors.append(TensorDesc(REGION_ARENA, arena.take(size), k.out_shape, k.out_dtype))
        feat[i] = len(tensors) - 1
        name = f"srm_int8_conv{i}"
        funcs[name] = k.func
        steps.append(Step(name, tuple(args + [feat[i]])))
        for src, last in last_use.items():  # free what no later kernel reads
            if last == i and src in feat and tensors[feat[src]].region == REGION_ARENA:
                arena.give(tensors[feat[src]].offset, tensors[feat[src]].nbytes)
    tir = tvm.IRModule({name: f.with_attr("global_symbol", name) for name, f in funcs.items()})
    out_shape = kernels[-1].out_shape
    return Plan(tuple(input_shape), out_shape, tensors, steps, arena.size, bytes(blob), 0, feat[len(kernels) - 1],
                False, tir, len(kernels))


def build_int8_clib(net: Int8Network, input_shape: tuple[int, int, int, int], target: str | TargetSpec,
                    out_dir: str | os.PathLike, *, force: bool = False, check: bool = True, sparse: str = "auto",
                    name: str = "int8 model", seed: int = 0, meta: dict | None = None) -> dict:
    """Compile an int8 network into a c-lib folder (as compiler.clib.build_clib); returns the manifest.

    The dot form comes from the target's features (compiler.int8.isa.choose_isa). `check`: the library's output
    on a random image must equal `reference_network` within 1/255 (one uint8 step) everywhere (mixed networks: see
    verify_int8_clib). A cross target's library cannot run here, so the same network is built for the host and
    checked (`host_check_int8`: the plan, quantisation and fused edges; the integer contract is exact on every
    dot form); its arm64 kernels themselves are checked under qemu by the tests.
    """
    from compiler.clib.export import BENCH, HEADER, LIB_NAME, clib_manifest, link_clib
    from compiler.clib.toolchain import CSRC

    spec = target if isinstance(target, TargetSpec) else get_target(target)
    isa = choose_isa(spec)
    out = Path(out_dir)
    check_out_dir(out, force)
    plan = int8_plan(net, input_shape, isa, sparse)
    shape = "x".join(map(str, plan.input_shape))
    describe = f"{name} x{net.scale} int8 ({isa.name}), target {spec.name}, input {shape}"
    numerics = None
    with staged_folder(out, force) as tmp:
        with tempfile.TemporaryDirectory() as work_dir:
            built = link_clib(plan, kernel_target(spec, isa), Path(work_dir), describe)
            if check and not spec.cross:
                numerics = verify_int8_clib(built.library, net, seed=seed)
            elif check:
                numerics = host_check_int8(net, input_shape, sparse, seed=seed)
            shutil.copy2(built.library, tmp / LIB_NAME)
            if built.bench:
                shutil.copy2(built.bench, tmp / BENCH)
        shutil.copy2(CSRC / HEADER, tmp / HEADER)
        # The precision is the kernels' (int8) and the required features are those of the form built (the NEON
        # form needs nothing beyond ARMv8-A), whatever the target would ask of fp32 code.
        kernels_spec = dataclasses.replace(kernel_target(spec, isa), precision="int8")
        fp32 = [layer.name or f"layer {i}" for i, layer in enumerate(net.layers) if isinstance(layer, FloatConv)]
        manifest = clib_manifest(tmp, kernels_spec, plan, built, numerics, meta, int8_isa=isa.name, fp32_layers=fp32)
        write_manifest(tmp, manifest)
    return manifest


def host_check_int8(net: Int8Network, input_shape: tuple[int, int, int, int], sparse: str = "auto", *,
                    seed: int = 0) -> dict:
    """Numerics of a cross target's int8 network checked here: the same network built for this host's dot form."""
    from compiler.clib.export import link_clib

    host = get_target("host")
    isa = choose_isa(host)
    plan = int8_plan(net, input_shape, isa, sparse)
    with tempfile.TemporaryDirectory() as work:
        built = link_clib(plan, kernel_target(host, isa), Path(work), "host check", bench=False)
        result = verify_int8_clib(built.library, net, seed=seed)
    return {**result, "checked_on": f"host c-lib build of the same network ({isa.name})"}


def verify_int8_clib(library: str | os.PathLike, net: Int8Network, *, seed: int = 0) -> dict:
    """Run the host library on a random image and compare with reference_network (<= 1/255 + 1e-6 everywhere)."""
    from compiler.clib.runner import CLib

    with CLib(library) as lib:
        image = np.random.default_rng(seed).integers(0, 256, lib.input_shape).astype(np.uint8)
        got = lib.run(image.astype(np.float32) * np.float32(1.0 / 255.0))
    want = reference_network(net, image)
    err = np.abs(got - want)
    diff, within = float(err.max()), float(np.mean(err <= 1.0 / 255.0 + 1e-6))
    if not net.mixed() and not diff <= 1.0 / 255.0 + 1e-6:
        raise CompilerError(f"int8 c-lib output differs from the integer reference by {diff:.3g}; refusing it")
    if net.mixed() and not (diff <= MIXED_MAX_DIFF and within >= MIXED_WITHIN_ONE):
        raise CompilerError(f"mixed-precision c-lib output differs from the reference by up to {diff:.3g} "
                            f"({100 * (1 - within):.3f}% of values more than one uint8 step); refusing it")
    return {"max_abs_diff": diff, "exact_fraction": float(np.mean(err <= 1e-6)), "within_one_step": within,
            "seed": seed}
