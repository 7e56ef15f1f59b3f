"""The int8 kernels (compiler/int8) against the numpy integer reference of docs/quantization.md.

Per layer on x86: the VNNI form (when this CPU has it) and the AVX2 form (a Haswell target: no VNNI, runs on any
AVX2 CPU) equal compiler.quant_spec.reference_conv on random layers: channel counts that are and are not multiples
of 4, 1x1 / 3x3 / 5x5, rows that do and do not fill whole register tiles, every fused activation kind (ReLU,
PReLU, none, tanh, leaky ReLU), a residual, the float32 tail, dense and block-sparse. uint8 outputs must be
bit-exact except where the stated tolerance applies (tanh: a vector approximation within a few float32 ULPs may move
a value sitting on a rounding boundary by 1 LSB: at most 0.1% of outputs, never more than 1); float32 tails within
1e-6 (the same float operations, possibly contracted into FMAs). Whole networks: the host c-lib, and the arm64
c-libs under qemu-aarch64 -cpu max (android-arm64-dotprod: sdot; linux-arm64: the NEON fallback) against
`reference_network`; the disassembly shows vpdpbusd / sdot in the dot builds and neither in the fallbacks.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tvm

from compiler.errors import CompilerError
from compiler.int8.isa import INSTRUCTION, Int8Isa, choose_isa, kernel_target
from compiler.int8.kernel import build_kernel, make_plan, spec_for
from compiler.int8.network import (IMAGE, Int8Network, build_int8_clib, reference_network, reference_skip,
                                   skip_lut, skip_primfunc)
from compiler.quant_spec import IMAGE_INPUT, QConv, QParams, reference_conv
from compiler.targets import TargetSpec, get_target, host_cpu_features

HASWELL = TargetSpec("x86-avx2", {"kind": "llvm", "mcpu": "haswell", "mtriple": "x86_64-linux-gnu"}, 8, 16, 2,
                     "x86_64-linux-gnu", cross=False)
HAS_VNNI = {"avx512vnni", "avx512bw"} <= host_cpu_features()
X86 = [pytest.param("host", marks=pytest.mark.skipif(not HAS_VNNI, reason="this CPU has no AVX-512 VNNI")), "avx2"]


def _target(name: str) -> TargetSpec:
    return HASWELL if name == "avx2" else get_target(name)


def _layer(rng, cin: int, cout: int, inp: QParams, out: QParams | None, act: str = "relu", k: int = 3,
           residual: QParams | None = None, zero_blocks: float = 0.0) -> QConv:
    """Random int8 layer whose outputs spread over the uint8 range; `zero_blocks`: that fraction of
    (4 output x 4 input channels at one tap) blocks set to zero (block pruning as the int8 kernels skip it)."""
    w = rng.integers(-127, 128, (cout, cin, k, k)).astype(np.int8)
    if zero_blocks:
        for o in range(0, cout, 4):
            for i in range(0, cin, 4):
                for t in range(k * k):
                    if rng.random() < zero_blocks:
                        w[o:o + 4, i:i + 4, t // k, t % k] = 0
    ws = np.full(cout, 3.0 / (127 * np.sqrt(cin * k * k)), np.float32) * rng.uniform(0.5, 1.5, cout).astype(np.float32)
    param = {"prelu": rng.uniform(0.05, 0.5, cout).astype(np.float32), "leaky_relu": np.float32(0.1)}.get(act)
    return QConv(w, ws, rng.integers(-4000, 4000, cout).astype(np.int32), inp, out, act, param, padding=k // 2,
                 residual=residual)


A, B, C = QParams(0.02, 10), QParams(0.031, 128), QParams(0.025, 60)
# (cin, cout, act, kernel size, residual, output, zero_blocks, input width)
CASES = {
    "head-3to8-relu-5x5": (3, 8, "relu", 5, None, A, 0.0, 21),
    "12to12-prelu-residual": (12, 12, "prelu", 3, B, A, 0.0, 32),
    "20to16-tanh-sparse": (20, 16, "tanh", 3, None, C, 0.5, 21),
    "16to20-none-residual-sparse": (16, 20, "none", 3, C, B, 0.5, 37),
    "5to12-leaky-1x1": (5, 12, "leaky_relu", 1, None, A, 0.0, 21),
    "tail-12to12-float32": (12, 12, "none", 3, None, None, 0.0, 21),
}


def _run_kernel(kernel, target: TargetSpec, x: np.ndarray, r: np.ndarray | None, out_shape, out_dtype) -> np.ndarray:
    with tvm.transform.PassContext(opt_level=3):
        lib = tvm.tirx.build(kernel.func, target=kernel_target(target, kernel.isa).tvm_target())
    out = tvm.runtime.tensor(np.zeros(out_shape, out_dtype))
    args = [tvm.runtime.tensor(x)] + [tvm.runtime.tensor(c) for c in kernel.consts]
    lib(*args, *([tvm.runtime.tensor(r)] if r is not None else []), out)
    return out.numpy()


def _compare(got: np.ndarray, want: np.ndarray, act: str) -> None:
    if want.dtype == np.float32:
        np.testing.assert_allclose(got, want, atol=1e-6 * max(1.0, float(np.abs(want).max())), rtol=0)
        return
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert len(np.unique(want)) > 20  # outputs spread over the range, not saturated
    if act == "tanh":
        assert diff.max() <= 1 and np.mean(diff > 0) <= 0.001, (diff.max(), np.mean(diff > 0))
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("target", X86)
@pytest.mark.parametrize("case", list(CASES))
def test_x86_kernel_equals_integer_reference(target, case):
    cin, cout, act, k, res, out, zero_blocks, w = CASES[case]
    rng = np.random.default_rng(sum(map(ord, case)))
    layer = _layer(rng, cin, cout, A if cin > 3 else IMAGE_INPUT, out, act, k, res, zero_blocks)
    spec = _target(target)
    isa = choose_isa(spec)
    assert isa.name == ("vnni" if target == "host" else "avx2")
    kernel = build_kernel(layer, 1, 6, w, isa)
    assert kernel.plan.sparse == (zero_blocks > 0)
    x = rng.integers(0, 256, (1, cin, 6, w)).astype(np.uint8)
    r = rng.integers(0, 256, (1, cout, 6, w)).astype(np.uint8) if res is not None else None
    want = reference_conv(x, layer, r)
    got = _run_kernel(kernel, spec, x, r, want.shape, want.dtype)
    _compare(got, want, act)


def test_both_tile_orders_are_the_same_integer_conv():
    """Both orders of the dense tiles (compiler.kernels.tile_loops) equal the integer reference."""
    rng = np.random.default_rng(5)
    layer = _layer(rng, 12, 12, A, B, "prelu", residual=C)
    spec = get_target("host") if HAS_VNNI else HASWELL
    x = rng.integers(0, 256, (1, 12, 6, 32)).astype(np.uint8)
    r = rng.integers(0, 256, (1, 12, 6, 32)).astype(np.uint8)
    want = reference_conv(x, layer, r)
    for inner in (False, True):
        kernel = build_kernel(layer, 1, 6, 32, choose_isa(spec), channels_inner=inner)
        np.testing.assert_array_equal(_run_kernel(kernel, spec, x, r, want.shape, want.dtype), want)


def test_batch_of_two_images():
    rng = np.random.default_rng(3)
    layer = _layer(rng, 8, 8, A, B, "prelu", residual=C)
    spec = get_target("host") if HAS_VNNI else HASWELL
    kernel = build_kernel(layer, 2, 5, 19, choose_isa(spec))
    x = rng.integers(0, 256, (2, 8, 5, 19)).astype(np.uint8)
    r = rng.integers(0, 256, (2, 8, 5, 19)).astype(np.uint8)
    want = reference_conv(x, layer, r)
    np.testing.assert_array_equal(_run_kernel(kernel, spec, x, r, want.shape, want.dtype), want)


def test_sparse_plan_keeps_exactly_the_nonzero_blocks():
    """A tile's columns are the (4-channel group, tap) blocks with a nonzero weight: counted here independently."""
    rng = np.random.default_rng(7)
    layer = _layer(rng, 32, 32, A, B, zero_blocks=0.5)
    isa = Int8Isa("vnni", 16, 32, 0)
    plan = make_plan(spec_for(layer, 1, 8, 64), layer.weight, isa)
    assert plan.sparse and plan.oc_tile == 4
    blocks = layer.weight.reshape(8, 4, 8, 4, 3, 3)  # (oc tile, 4 oc, group, 4 ic, ky, kx)
    nonzero = (blocks != 0).any(axis=(1, 3))
    assert plan.kept_columns() == int(nonzero.sum())
    assert 0.4 < plan.kept_columns() / (8 * 72) < 0.6
    dense = make_plan(spec_for(layer, 1, 8, 64), layer.weight, isa, sparse="dense")
    assert not dense.sparse and dense.kept_columns() == 8 * 72
    big = _layer(rng, 128, 128, A, B, zero_blocks=0.5)  # 32 tiles x ~576 kept columns x 16: too much code
    assert not make_plan(spec_for(big, 1, 8, 64), big.weight, isa).sparse
    with pytest.raises(CompilerError, match="unroll"):
        make_plan(spec_for(big, 1, 8, 64), big.weight, isa, sparse="sparse")


def test_the_dot_form_follows_the_targets_features():
    assert choose_isa(HASWELL).name == "avx2"
    if HAS_VNNI:
        assert choose_isa(get_target("host")).name == "vnni"
    assert choose_isa(get_target("android-arm64-dotprod")).name == "sdot"
    for name in ("android-arm64", "linux-arm64"):  # cortex-a76 implies dotprod in LLVM; the target promises NEON only
        isa = choose_isa(get_target(name))
        assert isa.name == "neon" and "-dotprod" in kernel_target(get_target(name), isa).tvm["mattr"]
    generic = TargetSpec("x86-64", {"kind": "llvm", "mcpu": "x86-64", "mtriple": "x86_64-linux-gnu"}, 4, 16, 1,
                         "x86_64-linux-gnu", cross=False)
    with pytest.raises(CompilerError, match="neither AVX-512 VNNI nor AVX2"):
        choose_isa(generic)


def _mnemonics(path: Path) -> dict[str, int]:
    text = subprocess.run(["llvm-objdump-19", "-d", "--no-show-raw-insn", str(path)], capture_output=True,
                          text=True, check=True).stdout
    counts: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].strip().endswith(":"):
            op = parts[1].split()[0] if parts[1].split() else ""
            counts[op] = counts.get(op, 0) + 1
    return counts


needs_objdump = pytest.mark.skipif(shutil.which("llvm-objdump-19") is None, reason="llvm-objdump-19 missing")


@needs_objdump
@pytest.mark.parametrize("target", X86)
def test_x86_disassembly_shows_the_dot_instruction(target, tmp_path):
    rng = np.random.default_rng(1)
    layer = _layer(rng, 16, 16, A, B)
    spec = _target(target)
    isa = choose_isa(spec)
    kernel = build_kernel(layer, 1, 6, 32, isa)
    with tvm.transform.PassContext(opt_level=3):
        tvm.tirx.build(kernel.func, target=spec.tvm_target()).write_to_file(str(tmp_path / "k.o"))
    ops = _mnemonics(tmp_path / "k.o")
    if isa.name == "vnni":
        assert ops.get("vpdpbusd", 0) >= 16 * 9 // 4  # at least one per (4-channel group, tap, tile vector)
    else:
        assert "vpdpbusd" not in ops and ops.get("vpmaddwd", 0) >= 4 * 9 and "vpmaddubsw" not in ops


# ---- whole networks: host c-lib, arm64 c-libs under qemu ---------------------------------------------------------

SHAPE = (1, 3, 9, 13)


def _network(seed: int = 0) -> Int8Network:
    rng = np.random.default_rng(seed)
    layers = [_layer(rng, 3, 8, IMAGE_INPUT, A), _layer(rng, 8, 8, A, B, "prelu", residual=A),
              _layer(rng, 8, 10, B, C, "tanh", zero_blocks=0.5), _layer(rng, 10, 12, C, None, "none")]
    return Int8Network(layers, 2, [None, 0, None, None])


def test_host_clib_equals_reference_network(tmp_path):
    from compiler.clib.runner import CLib

    net = _network()
    manifest = build_int8_clib(net, SHAPE, "host", tmp_path / "lib")  # checked against the reference on the way
    assert manifest["precision"] == "int8" and manifest["output"]["shape"] == [1, 3, 18, 26]
    assert manifest["numerics"]["max_abs_diff"] <= 1e-6
    image = np.random.default_rng(5).integers(0, 256, (9, 13, 3)).astype(np.uint8)
    want = reference_network(net, image.transpose(2, 0, 1)[None])
    assert 0.02 < float(want.std())  # a real image, not a clamped constant
    with CLib(tmp_path / "lib" / "libsrmodel.so") as lib:
        rgb = lib.run_rgb8(image)
    expect = np.rint(want[0].transpose(1, 2, 0) * 255.0)
    assert np.abs(rgb.astype(np.int32) - expect).max() <= 1 and np.mean(rgb == expect) >= 0.999


@pytest.mark.parametrize("shape,weight_shape,vec", [((1, 3, 7, 37), (12, 1, 5, 5), 16), ((2, 3, 5, 3), (12, 1, 3, 3), 16),
                                                    ((1, 1, 9, 10), (4, 1, 5, 5), 4), ((2, 3, 21, 19), (12, 1, 5, 5), 8),
                                                    ((1, 2, 50, 9), (8, 1, 3, 3), 8)])
def test_bicubic_skip_kernel_equals_reference(shape, weight_shape, vec):
    """The vectorised depthwise skip (vector body, scalar row tail, rows narrower than a vector, edges replicated;
    one band of rows or several, the last one short: 21 rows in 2 bands, 50 in 6) against numpy's reference_skip,
    within float32 contraction."""
    import tvm

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape).astype(np.uint8)
    w = rng.random(weight_shape).astype(np.float32)
    lib = tvm.tirx.build(skip_primfunc(shape, weight_shape, vec), target=get_target("host").tvm_target())
    args = [tvm.runtime.tensor(a) for a in (img, w, skip_lut(), np.zeros((shape[0], weight_shape[0], *shape[2:]),
                                                                           np.float32))]
    lib(*args)
    np.testing.assert_allclose(args[-1].numpy(), reference_skip(img, w), rtol=0, atol=1e-5)


def test_network_refuses_mismatched_quantisation():
    net = _network()
    with pytest.raises(CompilerError, match="input quantisation differs"):
        Int8Network([net.layers[0], net.layers[2], net.layers[3]], 2)
    with pytest.raises(CompilerError, match="residual"):
        Int8Network(net.layers, 2, [None, None, None, None])
    with pytest.raises(CompilerError, match="not an earlier layer"):
        Int8Network(net.layers, 2, [None, 3, None, None])
    with pytest.raises(CompilerError, match="another quantisation"):  # the image's (1/255, 0), the layer adds A's
        Int8Network(net.layers, 2, [None, IMAGE, None, None])
    with pytest.raises(CompilerError, match="skip_weight"):
        Int8Network(net.layers, 2, [None, 0, None, None], skip_weight=np.zeros((12, 1, 4, 4), np.float32))


ARM_TOOLS = ("aarch64-linux-gnu-gcc", "qemu-aarch64", "clang", "ld.lld", "llvm-objdump-19")


@pytest.fixture(scope="module")
def arm_libs(tmp_path_factory):
    from compiler.clib.toolchain import GNU_SYSROOT

    missing = [t for t in ARM_TOOLS if shutil.which(t) is None]
    if missing or not Path(f"{GNU_SYSROOT}/lib/libc.so.6").exists():
        pytest.skip(f"arm64 tools unavailable: {missing or GNU_SYSROOT} (scripts/install-system-deps.sh)")
    root = tmp_path_factory.mktemp("int8-arm64")
    net = _network(1)
    manifests = {t: build_int8_clib(net, SHAPE, t, root / t) for t in ("linux-arm64", "android-arm64-dotprod")}
    image = np.random.default_rng(9).integers(0, 256, SHAPE).astype(np.uint8)
    (image.astype(np.float32) * np.float32(1.0 / 255.0)).tofile(root / "in.f32")
    return root, net, image, manifests


@pytest.mark.parametrize("target,isa", [("linux-arm64", "neon"), ("android-arm64-dotprod", "sdot")])
def test_arm64_network_under_qemu_equals_reference(arm_libs, target, isa):
    from compiler.clib.toolchain import GNU_SYSROOT, glibc_shims

    root, net, image, manifests = arm_libs
    assert manifests[target]["int8_isa"] == isa
    cmd = ["qemu-aarch64", "-cpu", "max", "-L", GNU_SYSROOT]
    if target.startswith("android"):  # the Android library through glibc shims, as tests/test_clib_arm64.py
        cmd += ["-E", f"LD_LIBRARY_PATH={glibc_shims(root / 'shims')}"]
    cmd += [str(root / "linux-arm64" / "srmodel_bench"), str(root / target / "libsrmodel.so"), "-n", "1", "-w", "0",
            "-t", "2", "-i", str(root / "in.f32"), "-o", str(root / f"{target}.f32")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    want = reference_network(net, image)
    got = np.fromfile(root / f"{target}.f32", np.float32).reshape(want.shape)
    assert float(want.std()) > 0.02
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    ops = _mnemonics(root / target / "libsrmodel.so")
    assert ops.get(INSTRUCTION[isa], 0) > 0
    if isa == "neon":
        assert "sdot" not in ops and "udot" not in ops
