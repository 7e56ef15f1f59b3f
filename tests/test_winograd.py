"""Winograd conv kernels (compiler.winograd) against float64 PyTorch: the transforms, the kernel at every vector
width (x86 16/8 and NEON's 4, all run on the host), the per-layer choice, whole networks on the built-in validation
images after rounding to uint8, and the arm64 c-lib under qemu-aarch64.

The stated tolerance (compiler.winograd.WINOGRAD_RTOL): max |kernel - float64 reference| / max |reference| below
1e-5 for F(2x2, 3x3) and 5e-5 for F(4x4, 3x3); on the built-in validation images (LR by the protocol's bicubic),
a network whose every 3x3 conv runs as Winograd differs from float64 PyTorch by at most 1 level of 255 on at least
99.9% of the output pixels after rounding to uint8.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm
from torch import nn

from compiler.errors import CompilerError
from compiler.kernels import ConvSpec
from compiler.targets import get_target
from compiler.winograd import (WINOGRAD_RTOL, choose_conv_kernel, choose_winograd_schedule, input_transform_1d,
                               matrices, output_transform_1d, transform_weight, winograd_mode, winograd_primfunc)
from tests.conftest import torch_conv_reference

P1 = (1, 1, 1, 1)


def test_transforms_compute_a_3x3_correlation_in_float64() -> None:
    """A^T [(G g G^T) * (B^T d B)] A is the valid 3x3 correlation of the (m+2)^2 tile d with g, exactly in float64."""
    rng = np.random.default_rng(0)
    for m in (2, 4):
        bt, g, at = matrices(m)
        d, k = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
        got = at @ ((g @ k @ g.T) * (bt @ d @ bt.T)) @ at.T
        want = np.array([[np.sum(d[y:y + 3, x:x + 3] * k) for x in range(m)] for y in range(m)])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_kernel_transforms_equal_the_matrices() -> None:
    """The kernel's 1-D transforms (common subexpressions shared) are B^T d and A^T v."""
    rng = np.random.default_rng(1)
    for m in (2, 4):
        bt, _, at = matrices(m)
        d = list(rng.standard_normal(m + 2))
        np.testing.assert_allclose(input_transform_1d(m, d), bt @ d, rtol=0, atol=1e-12)
        np.testing.assert_allclose(output_transform_1d(m, d), at @ d, rtol=0, atol=1e-12)


def _run(spec: ConvSpec, m: int, vec: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(Winograd kernel output, float64 PyTorch reference) on random data, weights, bias, slopes and residual."""
    rng = np.random.default_rng(seed)
    x = rng.random((spec.n, spec.cin, spec.h, spec.w), dtype=np.float32)
    w = (rng.standard_normal((spec.cout, spec.cin, 3, 3)) * 0.2).astype(np.float32)
    b = rng.standard_normal(spec.cout).astype(np.float32)
    alpha = rng.random(spec.cout, dtype=np.float32) * 0.5
    res = rng.random(spec.residual_shape, dtype=np.float32)
    f64 = [a.astype(np.float64) for a in (x, w, b, alpha, res)]
    ref = torch_conv_reference(spec, f64[0], f64[1], f64[2] if spec.bias else None, f64[3], f64[4]).numpy()
    sched = choose_winograd_schedule(spec, m, vec)
    lib = tvm.tirx.build(winograd_primfunc(spec, sched), target=get_target("host").tvm_target())
    args = [x, transform_weight(w, sched)] + ([b] if spec.bias else []) + ([alpha] if spec.act == "prelu" else []) \
        + ([res] if spec.residual else [])
    out = tvm.runtime.tensor(np.full(spec.out_shape, np.nan, np.float32), tvm.cpu())
    lib(*[tvm.runtime.tensor(a, tvm.cpu()) for a in args], out)
    return out.numpy(), ref


CASES = [
    # ReLU; width a multiple of the tiles, height not of F(4)'s
    ConvSpec(1, 8, 6, 32, 16, 3, 3, P1, act="relu"),
    # PReLU + residual, odd sizes and channels (predicated write-back on both edges)
    ConvSpec(1, 5, 7, 21, 6, 3, 3, P1, act="prelu", residual=True),
    # valid conv, no bias: output smaller than the input
    ConvSpec(1, 3, 8, 20, 12, 3, 3, (0, 0, 0, 0), bias=False),
    # the SR tail: repeated residual (ECBSR's skip) + PixelShuffle(2), tanh, batch 2
    ConvSpec(2, 8, 9, 23, 12, 3, 3, P1, act="tanh", residual=True, residual_repeat=4, shuffle=2),
    # 40 input channels: the GEMM's reduction in two chunks; asymmetric padding; leaky ReLU
    ConvSpec(1, 40, 5, 37, 8, 3, 3, (0, 2, 1, 0), act="leaky_relu", slope=0.1),
]


WIDTHS = [(spec, vec) for spec in CASES for vec in (16, 4)] + [(CASES[1], 8), (CASES[3], 8)]  # AVX-512, NEON, AVX2


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize(("spec", "vec"), WIDTHS,
                         ids=[f"{s.cin}x{s.cout}_{s.h}x{s.w}_{s.act}_s{s.shuffle}_v{v}" for s, v in WIDTHS])
def test_kernel_matches_float64_reference(spec: ConvSpec, vec: int, m: int) -> None:
    got, want = _run(spec, m, vec)
    assert np.isfinite(got).all()
    err = float(np.abs(got - want).max() / np.abs(want).max())
    assert err <= WINOGRAD_RTOL[m], err


def test_rejects_what_it_cannot_compute() -> None:
    with pytest.raises(CompilerError, match="3x3"):
        winograd_primfunc(ConvSpec(1, 4, 8, 8, 4, 5, 5, (2, 2, 2, 2)), choose_winograd_schedule(
            ConvSpec(1, 4, 8, 8, 4, 3, 3, P1), 2, 16))
    with pytest.raises(CompilerError, match="F\\(3x3"):
        choose_winograd_schedule(ConvSpec(1, 4, 8, 8, 4, 3, 3, P1), 3, 16)
    with pytest.raises(CompilerError, match="Winograd mode"):
        with winograd_mode("f6"):
            pass


def test_choice_per_layer() -> None:
    """The cost model: Winograd for wide 3x3 bodies at video size (F(4) on 32 channels), direct for the 3-channel
    head, tiny images, grouped and non-3x3 convs; the modes force or forbid it."""
    body = ConvSpec(1, 32, 360, 640, 32, 3, 3, P1, act="relu")
    for vec, regs in ((16, 32), (8, 16), (4, 32)):
        assert choose_conv_kernel(body, vec, regs) == 4
        assert choose_conv_kernel(ConvSpec(1, 3, 360, 640, 32, 3, 3, P1), vec, regs) == 0
        assert choose_conv_kernel(ConvSpec(1, 8, 6, 13, 8, 3, 3, P1), vec, regs) == 0
    assert choose_conv_kernel(ConvSpec(1, 32, 360, 640, 32, 3, 3, P1, groups=32), 16) == 0
    assert choose_conv_kernel(ConvSpec(1, 32, 360, 640, 32, 1, 1, (0, 0, 0, 0)), 16) == 0
    assert choose_conv_kernel(body, 16, mode="direct") == 0
    assert choose_conv_kernel(ConvSpec(1, 3, 6, 13, 8, 3, 3, P1), 16, mode="f2") == 2
    with winograd_mode("direct"):
        assert choose_conv_kernel(body, 16) == 0


class _SkipSR(nn.Module):
    """conv3x3 3->32 + ReLU, three conv3x3 32->32 (PReLU, SiLU, residual), conv3x3 -> 12 + the input repeated over
    channels (ECBSR's nearest skip) + PixelShuffle(2): an x2 SR network whose output is image-like."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 32, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(32, 32, 3, padding=1) for _ in range(3))
        self.prelu, self.silu = nn.PReLU(32), nn.SiLU()
        self.tail = nn.Conv2d(32, 12, 3, padding=1)
        with torch.no_grad():
            self.tail.weight.mul_(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = torch.relu(self.head(x))
        b = self.prelu(self.body[0](h))
        b = self.silu(self.body[1](b))
        b = self.body[2](b) + h
        return nn.functional.pixel_shuffle(self.tail(b) + x.repeat_interleave(4, dim=1), 2)


def _net() -> nn.Module:
    torch.manual_seed(3)
    return _SkipSR().eval()


def _validation_inputs(crop: int | None = None) -> np.ndarray:
    """The built-in validation images' LR x2 (MATLAB bicubic, uint8) as one Nx3xHxW float32 batch in [0, 1]: each
    image whole, reflect-padded at the bottom and right to the largest one's size (one compile serves them all),
    or its top-left `crop` x `crop`."""
    from srprune.data.builtin import builtin_image, builtin_names
    from srprune.imresize import imresize, to_uint8

    images = []
    for name in builtin_names("val"):
        hr = builtin_image(name)
        hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
        images.append(to_uint8(imresize(hr, scale=0.5)))
    h, w = (crop, crop) if crop else (max(i.shape[0] for i in images), max(i.shape[1] for i in images))
    padded = [np.pad(i[:h, :w], ((0, h - min(h, i.shape[0])), (0, w - min(w, i.shape[1])), (0, 0)), mode="reflect")
              for i in images]
    return np.ascontiguousarray(np.stack(padded).transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def _uint8_agreement(got: np.ndarray, want: np.ndarray) -> float:
    """Fraction of output pixels (channel values) within 1 level of 255 after rounding both to uint8."""
    a = np.clip(np.rint(got.astype(np.float64) * 255), 0, 255)
    b = np.clip(np.rint(want * 255), 0, 255)
    return float(np.mean(np.abs(a - b) <= 1))


def _reference64(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return copy.deepcopy(net).double()(torch.from_numpy(x).double()).numpy()


@pytest.mark.parametrize("mode", ["f2", "f4"])
def test_network_on_validation_images_within_one_uint8_level(mode: str) -> None:
    """Every 3x3 conv of the network as Winograd (the head's too): the stated tolerance on the built-in images."""
    from compiler.build import compile_model
    from compiler.importer import import_module
    from compiler.rewrite import fuse_convs_report

    net = _net()
    x = _validation_inputs()
    with winograd_mode(mode):
        _, decisions = fuse_convs_report(import_module(net, x.shape), get_target("host").vec)
        compiled = compile_model(net, x.shape, "host")
    assert [d["kernel"] for d in decisions] == ["winograd"] * 5 and {d["m"] for d in decisions} == {int(mode[1])}
    got = compiled.run(x)
    want = _reference64(net, x)
    assert np.abs(want).max() > 0.5
    rel = float(np.abs(got - want).max() / np.abs(want).max())
    assert rel <= 4 * WINOGRAD_RTOL[int(mode[1])], rel
    assert _uint8_agreement(got, want) >= 0.999


def test_auto_mode_picks_winograd_for_the_body() -> None:
    from compiler.importer import import_module
    from compiler.rewrite import fuse_convs_report

    _, decisions = fuse_convs_report(import_module(_net(), (1, 3, 64, 96)), 16)
    kinds = [d["kernel"] for d in decisions]
    assert kinds[0] == "dense" and kinds[1:4] == ["winograd"] * 3, decisions  # the 3->32 head stays direct


# ---- the latency table records the chosen kernel -------------------------------------------------------------

def test_latency_table_times_and_records_the_chosen_kernel(tmp_path: Path) -> None:
    """A conv layer is timed with the kernel the rewrite picks (Winograd for a 32-channel body, direct for the
    3-channel head) and the table says which."""
    from compiler.latency.config import LayerConfig
    from compiler.latency.measure import build_layer, measure_into
    from compiler.latency.runners import LocalRunner
    from compiler.latency.table import load_table, open_table

    host = get_target("host", 1)
    body, head = LayerConfig("conv", 32, 32, 32, 64, act="relu"), LayerConfig("conv", 3, 32, 32, 64, act="relu")
    assert choose_conv_kernel(ConvSpec(1, 32, 32, 64, 32, 3, 3, P1, act="relu"), host.vec, host.registers) == 4
    table = open_table(tmp_path / "table.json", "host", 1)
    assert measure_into(table, [body, head], host, LocalRunner(1), repeat=1, progress=False) == 2
    saved = load_table(tmp_path / "table.json")
    assert saved.get(body).kernel == "winograd4" and saved.get(head).kernel == "direct"
    assert saved.get(body).direct_ms > 0 and saved.get(head).direct_ms is None  # the direct twin, timed beside it
    # a 25%-pruned body conv: its sparse kernel cannot beat F(4x4), so the compiler (and the table) keep Winograd
    light = LayerConfig("conv", 32, 32, 32, 64, act="relu", scheme="block", ratio=0.25, block=(4, 8))
    weight = np.random.default_rng(0).standard_normal((32, 32, 3, 3)).astype(np.float32)
    weight.reshape(8, 4, 36, 8)[:, :, :, :2] = 0  # 2 of every 8 columns of each 4x8 block
    assert measure_into(table, [light], host, LocalRunner(1), repeat=1, progress=False, weight_for=lambda c: weight) == 1
    assert table.get(light).kernel == "winograd4" and table.get(light).direct_ms is None
    built = build_layer(body, host)
    assert built.extra["kernel"] == "winograd4" and built.inputs[1].shape[0] == 36  # U: 6 x 6 transformed planes


def test_latency_table_of_an_older_kernel_choice_is_remeasured_not_reused(tmp_path: Path) -> None:
    import json

    from compiler.latency.config import LayerConfig
    from compiler.latency.table import KERNEL_CHOICE, load_table, open_table

    path = tmp_path / "table.json"
    table = open_table(path, "host", 1, machine="m")
    conv, adapter = LayerConfig("conv", 32, 32, 32, 64), LayerConfig("adapter", 8, 12, 32, 64)
    table.add(conv, [1.0], "direct")
    table.add(adapter, [0.1], "graph")
    table.save()
    data = json.loads(path.read_text())
    del data["header"][KERNEL_CHOICE]  # as a table built before Winograd existed
    path.write_text(json.dumps(data))
    with pytest.raises(CompilerError, match="rebuild it with `srprune latency build`"):
        load_table(path)
    again = open_table(path, "host", 1)  # what a build does: conv entries dropped, to be measured again
    assert set(again.entries) == {adapter.key()} and again.header[KERNEL_CHOICE]
    again.save()
    assert len(load_table(path)) == 1


# ---- arm64: the c-lib under qemu-aarch64 ----------------------------------------------------------------------

TOOLS = ("aarch64-linux-gnu-gcc", "qemu-aarch64")


def test_arm64_clib_under_qemu_within_tolerance(tmp_path: Path) -> None:
    """F(4) and F(2) kernels built for linux-arm64 (NEON, 4 floats), and F(4) for android-arm64 (loaded through glibc
    shims), run under qemu-aarch64 on a crop of a built-in validation image: the stated tolerances against float64
    PyTorch."""
    from compiler.clib.export import build_clib
    from compiler.clib.toolchain import GNU_SYSROOT, glibc_shims

    if [t for t in TOOLS if shutil.which(t) is None] or not os.path.exists(f"{GNU_SYSROOT}/lib/libc.so.6"):
        pytest.skip("arm64 tools unavailable (run scripts/install-system-deps.sh)")
    net = _net()
    x = _validation_inputs(crop=24)[:1]
    x.tofile(tmp_path / "in.f32")
    want = _reference64(net, x)
    builds = [("linux-arm64", "f4"), ("linux-arm64", "f2")]
    if shutil.which("clang") and shutil.which("ld.lld"):
        builds.append(("android-arm64", "f4"))
    for target, mode in builds:
        out = tmp_path / f"{target}-{mode}"
        with winograd_mode(mode):
            build_clib(net, x.shape, target, out, name="wino", check=False)
        cmd = ["qemu-aarch64", "-L", GNU_SYSROOT]
        if target == "android-arm64":  # the glibc bench of the linux build loads the Android library
            cmd += ["-E", f"LD_LIBRARY_PATH={glibc_shims(tmp_path / 'shims')}"]
        cmd += [str(tmp_path / "linux-arm64-f4" / "srmodel_bench"), str(out / "libsrmodel.so"), "-n", "1", "-w", "0",
                "-t", "2", "-i", str(tmp_path / "in.f32"), "-o", str(tmp_path / f"{target}-{mode}.f32")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and f"target {target}" in proc.stdout, proc.stdout + proc.stderr
        got = np.fromfile(tmp_path / f"{target}-{mode}.f32", np.float32).reshape(want.shape)
        rel = float(np.abs(got - want).max() / np.abs(want).max())
        assert rel <= 4 * WINOGRAD_RTOL[int(mode[1])], (target, mode, rel)
        assert _uint8_agreement(got, want) >= 0.999
