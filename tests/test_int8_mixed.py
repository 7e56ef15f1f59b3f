"""Mixed-precision int8 networks: fp32 layers (compiler.int8.float_layer) inside the int8 c-lib.

Each fp32 layer is the fp32 compiler's kernel (direct, Winograd or sparse, as it would choose) with uint8 codes at
its edges: input dequantised in the window, residual dequantised and output requantised in the write-back. The
oracle is numpy (`reference_network` with `reference_float_conv`: float64 sums, the contract's rounding), which
the kernels must match to float32 rounding: every value within one uint8 step and almost all exact. Covered: every
edge (codes in / out, float32 in / out, a residual in codes or float32, sliced or zero-padded), a depthwise fp32
layer, an int8 layer writing float32 for an fp32 reader, fp32 tails with the nearest and the bicubic skip, each
fp32 kernel kind (forced with `winograd_mode`), and the refusals.
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler.errors import CompilerError
from compiler.int8.float_layer import build_float_kernel
from compiler.int8.isa import choose_isa
from compiler.int8.network import Int8Network, build_int8_clib, build_kernels, reference_network
from compiler.quant_spec import IMAGE_INPUT, FloatConv, QConv, QParams
from compiler.targets import get_target, host_cpu_features
from compiler.winograd import winograd_mode

HAS_VNNI = {"avx512vnni", "avx512bw"} <= host_cpu_features()
needs_vnni = pytest.mark.skipif(not HAS_VNNI, reason="this CPU has no AVX-512 VNNI (the host int8 form)")

A, B, C = QParams(0.02, 10), QParams(0.031, 128), QParams(0.025, 60)
D = QParams(1.0 / 127, 128)  # a tanh's output range
TAIL = 0.05  # the tails' weight gain: images mostly inside [0, 1], not clamped
SHAPE = (1, 3, 11, 37)  # rows and columns that do not fill whole register tiles or Winograd tiles


def _qconv(rng, cin, cout, inp, out, act="relu", residual=None, gain=1.0) -> QConv:
    w = rng.integers(-127, 128, (cout, cin, 3, 3)).astype(np.int8)
    ws = (np.full(cout, 3.0 * gain / (127 * np.sqrt(cin * 9)), np.float32) * rng.uniform(0.5, 1.5, cout)).astype(
        np.float32)
    param = rng.uniform(0.05, 0.5, cout).astype(np.float32) if act == "prelu" else None
    return QConv(w, ws, rng.integers(-4000, 4000, cout).astype(np.int32), inp, out, act, param, 1, residual)


def _fconv(rng, cin, cout, inp, out, act="relu", residual=None, groups=1, prune=0.0, k=3, gain=1.0) -> FloatConv:
    """Random fp32 layer whose outputs spread over a few units (so requantised codes use the uint8 range);
    `prune`: that fraction of its weights set to exact zeros in 4-row blocks (a pruned layer: the sparse kernel)."""
    w = rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32) * np.float32(
        1.5 * gain / np.sqrt(cin / groups * k * k))
    if prune:
        for o in range(0, cout, 4):
            for c in range(cin // groups):
                if rng.random() < prune:
                    w[o:o + 4, c] = 0
    param = rng.uniform(0.05, 0.5, cout).astype(np.float32) if act == "prelu" else None
    return FloatConv(w, rng.uniform(-0.5, 0.5, cout).astype(np.float32), inp, out, act, param, k // 2, residual,
                     groups)


def _mixed(seed: int = 0, prune: float = 0.0) -> Int8Network:
    """Every edge: fp32 head (codes in and out) -> int8 (+ residual in codes) -> int8 writing float32 (only fp32
    reads it) -> fp32 (float32 in and out, + that float32 tensor zero-padded 8 -> 12) -> fp32 depthwise (float32 in,
    codes out) -> fp32 (codes in and out, + a residual in codes sliced 12 -> 8) -> int8 tail (+ nearest skip)."""
    rng = np.random.default_rng(seed)
    layers = [_fconv(rng, 3, 8, IMAGE_INPUT, A),
              _qconv(rng, 8, 8, A, B, "prelu", residual=A),
              _qconv(rng, 8, 8, B, None, "relu"),
              _fconv(rng, 8, 12, None, None, "prelu", prune=prune),
              _fconv(rng, 12, 12, None, C, "relu", groups=12),
              _fconv(rng, 12, 8, C, D, "tanh", residual=C, prune=prune),
              _qconv(rng, 8, 12, D, None, "none", gain=TAIL)]
    return Int8Network(layers, 2, [None, 0, None, 2, None, 4, None])


def _fp32_tail(skip: str, seed: int = 3) -> Int8Network:
    """int8 head -> fp32 (+ the head's codes) -> fp32 (+ a float32 residual) -> fp32 tail with the global skip."""
    rng = np.random.default_rng(seed)
    layers = [_qconv(rng, 3, 8, IMAGE_INPUT, A), _fconv(rng, 8, 8, A, None, "relu", residual=A),
              _fconv(rng, 8, 8, None, None, "relu"), _fconv(rng, 8, 12, None, None, "none", gain=TAIL / 5)]
    if skip == "none":  # the image is the tail's output alone: centre it in [0, 1]
        layers[-1].bias = layers[-1].bias * np.float32(0.1) + np.float32(0.5)
    weight = rng.random((12, 1, 5, 5)).astype(np.float32) / 25 if skip == "bicubic" else None
    return Int8Network(layers, 2, [None, 0, 1, None], skip=skip != "none", skip_weight=weight)


def _check(net: Int8Network, tmp_path, shape=SHAPE) -> dict:
    """Build the host c-lib (its own check runs on the way) and compare it with the reference on a second image."""
    from compiler.clib.runner import CLib

    manifest = build_int8_clib(net, shape, "host", tmp_path / "lib")
    image = np.random.default_rng(11).integers(0, 256, shape).astype(np.uint8)
    with CLib(tmp_path / "lib" / manifest["library"]) as lib:
        got = lib.run(image.astype(np.float32) * np.float32(1.0 / 255.0))
    want = reference_network(net, image)
    assert np.mean((want <= 0) | (want >= 1)) < 0.3  # a real image, mostly not clamped
    err = np.abs(got - want)
    assert err.max() <= 2.0 / 255.0 + 1e-6 and np.mean(err <= 1.0 / 255.0 + 1e-6) >= 0.999
    assert np.mean(err <= 1e-5) >= 0.95, "fp32 layers should match the float64 reference to float32 rounding"
    return manifest


@needs_vnni
@pytest.mark.parametrize("mode", ["direct", "f4"])
def test_mixed_network_equals_reference(tmp_path, mode):
    """Every precision edge, with the fp32 3x3 convs on the direct kernel and on Winograd F(4x4)."""
    net = _mixed()
    with winograd_mode(mode):
        kinds = [getattr(k, "kernel", "int8") for k in build_kernels(net, SHAPE, choose_isa(get_target("host")))]
        manifest = _check(net, tmp_path)
    want = "direct" if mode == "direct" else "winograd4"
    assert kinds == ["direct" if mode == "direct" else "winograd4", "int8", "int8", want, "direct", want, "int8"]
    assert manifest["output"]["shape"] == [1, 3, 22, 74] and manifest["numerics"]["within_one_step"] >= 0.999


@needs_vnni
def test_pruned_fp32_layers_take_the_sparse_kernel(tmp_path):
    net = _mixed(seed=1, prune=0.75)
    with winograd_mode("direct"):
        kinds = [getattr(k, "kernel", "int8") for k in build_kernels(net, SHAPE, choose_isa(get_target("host")))]
        _check(net, tmp_path)
    assert kinds[3] == "sparse" and kinds[5] == "sparse"


@needs_vnni
@pytest.mark.parametrize("skip", ["repeat", "bicubic", "none"])
def test_fp32_tail_writes_the_image(tmp_path, skip):
    """An fp32 tail: PixelShuffle fused, the skip added as its residual (the uint8 image or the float32 bicubic
    tensor), the clamp to [0, 1]; its body reads a residual in codes."""
    net = _fp32_tail(skip)
    kernels = build_kernels(net, SHAPE, choose_isa(get_target("host")))
    assert kernels[-1].spec.shuffle == 2 and kernels[-1].spec.clamp
    assert kernels[-1].residual_from == {"repeat": "image", "bicubic": "skip", "none": ""}[skip]
    _check(net, tmp_path)


@needs_vnni
def test_mixed_refusals():
    rng = np.random.default_rng(0)
    head = _qconv(rng, 3, 8, IMAGE_INPUT, A)
    with pytest.raises(CompilerError, match="input quantisation differs"):  # an int8 layer cannot read float32
        Int8Network([_fconv(rng, 3, 8, IMAGE_INPUT, None), _qconv(rng, 8, 12, A, None, "none")], 2)
    with pytest.raises(CompilerError, match="another quantisation"):  # an int8 layer's residual must be codes
        Int8Network([_fconv(rng, 3, 8, IMAGE_INPUT, A), _fconv(rng, 8, 8, A, None),
                     _fconv(rng, 8, 8, None, A), _qconv(rng, 8, 12, A, None, "none")], 2, [None, None, None, 1])
    with pytest.raises(CompilerError, match="tail"):
        Int8Network([head, _fconv(rng, 8, 12, A, A)], 2)
    tail = _fconv(rng, 8, 12, A, None, residual=A)
    with pytest.raises(CompilerError, match="own residual and the global skip"):
        build_float_kernel(tail, 1, 5, 5, choose_isa(get_target("host")), tail_shuffle=2, skip="image",
                           res_channels=8)


def test_uint8_edges_need_their_quantisation():
    from compiler.kernels import ConvSpec, choose_schedule, conv2d_primfunc

    spec = ConvSpec(1, 8, 5, 5, 8, 3, 3, (1, 1, 1, 1), data_dtype="uint8")
    with pytest.raises(CompilerError, match="scale, zero point"):
        conv2d_primfunc(spec, choose_schedule(spec, 16))



def test_arm64_dotprod_mixed_network_under_qemu(tmp_path):
    """The mixed c-lib for android-arm64-dotprod (what `srprune android stage` ships): sdot for the int8 layers,
    NEON fmla for the fp32 ones, under qemu-aarch64 -cpu max against the numpy reference."""
    import shutil
    import subprocess

    from compiler.clib.toolchain import GNU_SYSROOT, glibc_shims
    from tests.test_int8_kernels import ARM_TOOLS, _mnemonics

    missing = [t for t in ARM_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"arm64 tools unavailable: {missing} (scripts/install-system-deps.sh)")
    net = _mixed(seed=2)
    shape = (1, 3, 9, 21)
    build_int8_clib(net, shape, "linux-arm64", tmp_path / "linux")  # for its srmodel_bench
    manifest = build_int8_clib(net, shape, "android-arm64-dotprod", tmp_path / "android")
    assert manifest["int8_isa"] == "sdot" and len(manifest["fp32_layers"]) == 4
    image = np.random.default_rng(4).integers(0, 256, shape).astype(np.uint8)
    (image.astype(np.float32) * np.float32(1.0 / 255.0)).tofile(tmp_path / "in.f32")
    cmd = ["qemu-aarch64", "-cpu", "max", "-L", GNU_SYSROOT, "-E", f"LD_LIBRARY_PATH={glibc_shims(tmp_path / 'shims')}",
           str(tmp_path / "linux" / "srmodel_bench"), str(tmp_path / "android" / "libsrmodel.so"), "-n", "1", "-w",
           "0", "-t", "2", "-i", str(tmp_path / "in.f32"), "-o", str(tmp_path / "out.f32")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    want = reference_network(net, image)
    got = np.fromfile(tmp_path / "out.f32", np.float32).reshape(want.shape)
    err = np.abs(got - want)
    assert err.max() <= 2.0 / 255.0 + 1e-6 and np.mean(err <= 1.0 / 255.0 + 1e-6) >= 0.999
    ops = _mnemonics(tmp_path / "android" / "libsrmodel.so")
    assert ops.get("sdot", 0) > 0 and ops.get("fmla", 0) > 0
