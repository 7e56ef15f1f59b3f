"""Our conv kernels (compiler.kernels) against torch.nn.functional.conv2d, for every vector width.

The template is one TE compute + schedule with the SIMD width as a parameter; x86 (16/8) and the
NEON width (4) are all built and run here on the host CPU, so the arm64 code path's loop structure
is checked numerically even though no arm64 machine is available.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tvm

from compiler.errors import CompilerError
from compiler.kernels import (ConvSpec, Schedule, channel_tiles_inner, choose_schedule, conv2d_primfunc,
                              default_channels_inner, host_tile_shape, pack_weight, ring_width)
from compiler.targets import cpu_vendor, get_target
from tests.conftest import torch_conv_reference

TOL = 1e-4


def _run_kernel(spec: ConvSpec, vec: int, seed: int = 0, shape: str | None = None,
                channels_inner: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(kernel output, PyTorch reference) for random data/weights/bias/alpha/residual."""
    rng = np.random.default_rng(seed)
    x = rng.random((spec.n, spec.cin, spec.h, spec.w), dtype=np.float32)
    w = (rng.standard_normal((spec.cout, spec.cin // spec.groups, spec.kh, spec.kw)) * 0.2).astype(np.float32)
    b = rng.standard_normal(spec.cout).astype(np.float32)
    alpha = rng.random(spec.cout, dtype=np.float32) * 0.5
    res = rng.random(spec.residual_shape, dtype=np.float32)
    ref = torch_conv_reference(spec, x, w, b if spec.bias else None, alpha, res)

    sched = choose_schedule(spec, vec, shape=shape)
    func = conv2d_primfunc(spec, sched, channels_inner=channels_inner)
    lib = tvm.tirx.build(func, target=get_target("host").tvm_target())
    dev = tvm.cpu()
    args = [x, pack_weight(w, sched.oc_tile)]
    if spec.bias:
        args.append(b)
    if spec.act == "prelu":
        args.append(alpha)
    if spec.residual:
        args.append(res)
    out = tvm.runtime.tensor(np.full(spec.out_shape, np.nan, np.float32), dev)
    lib(*[tvm.runtime.tensor(a, dev) for a in args], out)
    return out.numpy(), ref.numpy()


CASES = [
    # conv3x3 with ReLU, width a multiple of the tile
    ConvSpec(1, 8, 6, 32, 16, 3, 3, (1, 1, 1, 1), act="relu"),
    # conv3x3 + PReLU + residual, width not a multiple of any tile (predicated write-back)
    ConvSpec(1, 5, 7, 21, 6, 3, 3, (1, 1, 1, 1), act="prelu", residual=True),
    # conv1x1 without bias, odd channel counts
    ConvSpec(1, 7, 5, 19, 3, 1, 1, (0, 0, 0, 0), bias=False),
    # depthwise 3x3
    ConvSpec(1, 8, 6, 40, 8, 3, 3, (1, 1, 1, 1), groups=8, act="relu"),
    # grouped conv (2 groups), 5x5 taps, asymmetric padding, batch 2
    ConvSpec(2, 4, 6, 17, 6, 5, 5, (2, 1, 2, 3), groups=2),
    # valid (unpadded) conv3x3: output smaller than input
    ConvSpec(1, 3, 8, 20, 12, 3, 3, (0, 0, 0, 0)),
    # ECBSR's x2 tail: the input repeated over 4 sub-pixels as residual, PixelShuffle(2) fused, odd width
    ConvSpec(1, 16, 5, 21, 12, 3, 3, (1, 1, 1, 1), residual=True, residual_repeat=4, shuffle=2),
    # x3 tail with an activation and no residual
    ConvSpec(1, 8, 4, 32, 27, 3, 3, (1, 1, 1, 1), act="relu", shuffle=3),
    # x4 tail with a full residual (the genome networks' bicubic skip), batch 2
    ConvSpec(2, 6, 3, 19, 48, 3, 3, (1, 1, 1, 1), residual=True, shuffle=4),
    # rows wide enough for the 4-vector tile at every width (an overhanging last tile), a head and a tail
    ConvSpec(1, 3, 3, 70, 32, 3, 3, (1, 1, 1, 1), act="relu"),
    ConvSpec(1, 8, 3, 70, 12, 3, 3, (1, 1, 1, 1), residual=True, residual_repeat=4, shuffle=2),
    # the fused activations of compiler.epilogue: overhanging tiles (lane-by-lane epilogue), residual, shuffle
    ConvSpec(1, 5, 7, 21, 6, 3, 3, (1, 1, 1, 1), act="tanh", residual=True),
    ConvSpec(1, 8, 4, 19, 8, 3, 3, (1, 1, 1, 1), act="sigmoid"),
    ConvSpec(1, 8, 4, 19, 8, 3, 3, (1, 1, 1, 1), act="leaky_relu", slope=0.1),
    ConvSpec(1, 8, 4, 19, 8, 1, 1, (0, 0, 0, 0), act="silu"),
    ConvSpec(1, 8, 4, 21, 8, 3, 3, (1, 1, 1, 1), groups=8, act="hardswish"),
    ConvSpec(1, 8, 4, 21, 12, 3, 3, (1, 1, 1, 1), act="gelu", shuffle=2),
    ConvSpec(1, 8, 4, 21, 8, 3, 3, (1, 1, 1, 1), act="gelu_tanh", residual=True),
]


@pytest.mark.parametrize(("vec", "shape"), [(16, "pixels"), (16, "channels"), (8, None), (4, None)])
@pytest.mark.parametrize("spec", CASES, ids=lambda s: f"{s.cin}x{s.cout}k{s.kh}g{s.groups}{s.act}{'r' if s.residual else ''}s{s.shuffle}")
def test_kernel_matches_torch(spec: ConvSpec, vec: int, shape: str | None) -> None:
    got, want = _run_kernel(spec, vec, shape=shape)
    assert got.shape == want.shape
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


@pytest.mark.parametrize("spec", [CASES[0], CASES[1], CASES[6]], ids=["relu", "prelu-residual", "ecb-tail"])
def test_both_tile_orders_compute_the_same_conv(spec: ConvSpec) -> None:
    """Both orders of a row's register tiles (compiler.kernels.tile_loops; the rule picks by window size) match."""
    for inner in (False, True):
        got, want = _run_kernel(spec, 8, channels_inner=inner)
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def test_channel_tiles_go_inner_on_large_windows() -> None:
    """The rule on the measured layers (channel_tiles_inner's docstring): windows of 3 and 8 fp32 channels outer,
    16 and more inner."""
    for cin, inner in ((3, False), (8, False), (16, True), (32, True), (64, True)):
        spec = ConvSpec(1, cin, 360, 640, 32, 3, 3, (1, 1, 1, 1))
        assert default_channels_inner(spec, Schedule(8, 2, 4)) == inner
        assert channel_tiles_inner(cin * 3 * ring_width(spec, 16) * 4) == inner  # the window's bytes, by hand


def test_schedule_respects_register_budget_and_divides_channels() -> None:
    spec = ConvSpec(1, 32, 8, 640, 32, 3, 3, (1, 1, 1, 1))
    s16 = choose_schedule(spec, 16, registers=32, shape="pixels")
    assert s16 == Schedule(vec=16, nvec=4, oc_tile=4)  # 16 accumulators of 32 zmm registers, 4 x 4
    s8 = choose_schedule(spec, 8, registers=16)
    assert s8 == Schedule(vec=8, nvec=2, oc_tile=4)  # AVX2: 8 of 16 ymm registers
    tail = ConvSpec(1, 32, 8, 640, 10, 3, 3, (1, 1, 1, 1))
    assert choose_schedule(tail, 16, shape="pixels").oc_tile == 2  # largest divisor of 10 within 4 channels
    narrow = ConvSpec(1, 32, 8, 40, 32, 3, 3, (1, 1, 1, 1))
    assert choose_schedule(narrow, 16, shape="pixels") == Schedule(vec=16, nvec=2, oc_tile=8)  # 40 pixels: 2 vectors
    assert choose_schedule(spec, 4) == Schedule(vec=4, nvec=4, oc_tile=4)  # NEON keeps 4 x 4 on every host


def test_channels_tile_shape() -> None:
    """The "channels" shape: 2 vectors and up to 24 of 32 registers as accumulators (12 channels x 2)."""
    body = ConvSpec(1, 32, 8, 640, 32, 3, 3, (1, 1, 1, 1))
    assert choose_schedule(body, 16, shape="channels") == Schedule(vec=16, nvec=2, oc_tile=8)
    wide = ConvSpec(1, 64, 8, 640, 64, 3, 3, (1, 1, 1, 1))
    assert choose_schedule(wide, 16, shape="channels") == Schedule(vec=16, nvec=2, oc_tile=8)
    tail = ConvSpec(1, 32, 8, 640, 12, 3, 3, (1, 1, 1, 1), shuffle=2)
    assert choose_schedule(tail, 16, shape="channels") == Schedule(vec=16, nvec=2, oc_tile=12)
    x4 = ConvSpec(1, 16, 8, 640, 48, 3, 3, (1, 1, 1, 1), shuffle=4)
    assert choose_schedule(x4, 16, shape="channels").oc_tile == 12
    narrow = ConvSpec(1, 8, 8, 16, 24, 3, 3, (1, 1, 1, 1))  # one vector per row: 24 channels x 1
    assert choose_schedule(narrow, 16, shape="channels") == Schedule(vec=16, nvec=1, oc_tile=24)
    with pytest.raises(CompilerError, match="tile shape"):
        choose_schedule(body, 16, shape="square")


def test_host_tile_shape_follows_the_cpu_vendor() -> None:
    """Only 16-float vectors (the AVX-512 host) on an Intel core get "channels"; the vendor read independently."""
    vendor = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("vendor_id")), "")
    assert cpu_vendor() == vendor
    assert host_tile_shape(16) == ("channels" if vendor == "GenuineIntel" else "pixels")
    assert host_tile_shape(8) == host_tile_shape(4) == "pixels"


def test_pack_weight_layout() -> None:
    w = np.arange(4 * 3 * 2 * 2, dtype=np.float32).reshape(4, 3, 2, 2)
    p = pack_weight(w, 2)
    assert p.shape == (2, 3, 2, 2, 2)
    # packed[o_outer, i, y, x, o_inner] == w[o_outer * 2 + o_inner, i, y, x]
    for o in range(4):
        np.testing.assert_array_equal(p[o // 2, :, :, :, o % 2], w[o])
    with pytest.raises(CompilerError, match="multiple of the tile"):
        pack_weight(w, 3)


def test_bad_kernel_specs_raise() -> None:
    with pytest.raises(CompilerError, match="unknown activation"):
        conv2d_primfunc(ConvSpec(1, 4, 4, 4, 4, 3, 3, (1, 1, 1, 1), act="softplus"), Schedule(4, 1, 4))
    with pytest.raises(CompilerError, match="groups"):
        conv2d_primfunc(ConvSpec(1, 5, 4, 4, 4, 3, 3, (1, 1, 1, 1), groups=2), Schedule(4, 1, 1))
    with pytest.raises(CompilerError, match="PixelShuffle"):  # 6 channels are not a multiple of 2^2
        conv2d_primfunc(ConvSpec(1, 4, 4, 4, 6, 3, 3, (1, 1, 1, 1), shuffle=2), Schedule(4, 1, 2))
    with pytest.raises(CompilerError, match="PixelShuffle"):  # a tile of 3 splits a row's 2 sub-pixels
        conv2d_primfunc(ConvSpec(1, 4, 4, 4, 12, 3, 3, (1, 1, 1, 1), shuffle=2), Schedule(4, 1, 3))
    with pytest.raises(CompilerError, match="residual_repeat"):
        conv2d_primfunc(ConvSpec(1, 4, 4, 4, 8, 3, 3, (1, 1, 1, 1), residual_repeat=4), Schedule(4, 1, 4))


def test_schedule_keeps_shuffle_rows_in_one_tile() -> None:
    # 27 channels of a x3 tail: the tile must hold whole rows of 3 sub-pixels (3, 9, ...), not 1
    tail = ConvSpec(1, 16, 8, 640, 27, 3, 3, (1, 1, 1, 1), shuffle=3)
    assert choose_schedule(tail, 16).oc_tile % 3 == 0
    assert choose_schedule(ConvSpec(1, 16, 8, 640, 48, 3, 3, (1, 1, 1, 1), shuffle=4), 16, shape="pixels").oc_tile == 4
