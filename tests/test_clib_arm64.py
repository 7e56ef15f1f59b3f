"""The c-lib for arm64: linux-arm64 run under qemu-aarch64, android-arm64 checked as a phone's loader would.

One network with every supernet block type (PReLU this time), saved as a model file, is built for
linux-arm64 (Debian's cross gcc, `build_clib`) and for android-arm64 by `srprune compile --format c-lib`
(clang + lld against generated stub bionic libraries, no NDK; checked on a host build first). Both run under
qemu-aarch64 through srmodel_bench (the Android library via shim libc.so/libm.so/libdl.so that forward
to aarch64 glibc) and must equal PyTorch; so must a network with one conv per fused activation (tanh, sigmoid,
SiLU, hardswish, GELU in both forms, leaky ReLU), built for both targets. Missing tools are installed with
scripts/install-system-deps.sh when possible, else the tests are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.build import reference_output
from compiler.clib.export import build_clib
from compiler.clib.toolchain import GNU_SYSROOT, PAGE_16K, classify, glibc_shims, inspect_elf
from compiler.errors import CompilerError

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4
SHAPE = (1, 3, 9, 13)
TOOLS = ("aarch64-linux-gnu-gcc", "qemu-aarch64", "clang", "ld.lld", "readelf")


def _missing() -> list[str]:
    gone = [t for t in TOOLS if shutil.which(t) is None]
    return gone + ([f"{GNU_SYSROOT}/lib/libc.so.6"] if not os.path.exists(f"{GNU_SYSROOT}/lib/libc.so.6") else [])


@pytest.fixture(scope="module")
def tools():
    if _missing():
        subprocess.run(["bash", str(ROOT / "scripts/install-system-deps.sh")], capture_output=True, timeout=600)
    if _missing():
        pytest.skip(f"arm64 tools unavailable: {', '.join(_missing())} (run scripts/install-system-deps.sh)")


def _net():
    """A training-form GenomeNet (registry model `genome`, so it can be saved as a model file), random weights."""
    from srprune.models import build_model
    from supernet.space import Cell, Genome

    cells = [Cell("dws", 8, []), Cell("wide", 12, [16, 8]), Cell("res", 8, [12]), Cell("ecb", 8, [16]),
             Cell("conv", 12, [])]
    net = build_model("genome", 3, genome=Genome(3, 8, "prelu", cells).to_dict())
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5 if p.dim() > 1 else 10))
    return net.eval()


@pytest.fixture(scope="module")
def built(tools, tmp_path_factory):
    from srprune.cli import main
    from srprune.models import deploy
    from srprune.models.modelfile import save_model

    root = tmp_path_factory.mktemp("arm64")
    net = _net()
    save_model(root / "genome.pt", net)
    model = deploy(net).eval()
    build_clib(model, SHAPE, "linux-arm64", root / "linux-arm64", name="genome", check=False)
    # Android through the CLI: output 39x27 at x3 -> input 13x9; checked on a host build before writing.
    try:
        main(["compile", str(root / "genome.pt"), "--target", "android-arm64", "--size", "39x27", "--format",
              "c-lib", "-o", str(root / "android-arm64")])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    x = np.random.default_rng(21).random(SHAPE, dtype=np.float32)
    x.tofile(root / "in.f32")
    return root, model, x


def _qemu_bench(root: Path, lib: Path, out: Path, env_libs: Path | None = None, exe: Path | None = None) -> str:
    """srmodel_bench under qemu-aarch64; an Android `exe` is started by glibc's loader named explicitly."""
    cmd = ["qemu-aarch64", "-L", GNU_SYSROOT]
    if exe is not None:
        cmd += [f"{GNU_SYSROOT}/lib/ld-linux-aarch64.so.1", "--library-path", str(env_libs), str(exe)]
    else:
        if env_libs is not None:
            cmd += ["-E", f"LD_LIBRARY_PATH={env_libs}"]
        cmd += [str(root / "linux-arm64" / "srmodel_bench")]
    cmd += [str(lib), "-n", "2", "-w", "1", "-t", "2", "-i", str(root / "in.f32"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_linux_arm64_under_qemu_equals_pytorch(built):
    root, model, x = built
    lib = root / "linux-arm64" / "libsrmodel.so"
    info = inspect_elf(lib)
    assert info["machine"] == "AArch64" and set(info["needed"]) <= {"libc.so.6", "libm.so.6"}
    stdout = _qemu_bench(root, lib, root / "out_linux.f32")
    assert "target linux-arm64" in stdout and "median_ms=" in stdout
    want = reference_output(model, x)
    got = np.fromfile(root / "out_linux.f32", np.float32).reshape(want.shape)
    assert want.shape == (1, 3, 27, 39) and np.abs(want).max() > 1e-2
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def test_android_library_is_what_a_phone_loads(built):
    root, _, _ = built
    manifest = json.loads((root / "android-arm64" / "manifest.json").read_text())
    assert manifest["numerics"]["max_abs_diff"] <= TOL and "host" in manifest["numerics"]["checked_on"]
    assert manifest["target"]["threads"] == 4 and manifest["meta"]["model"] == "genome"
    info = inspect_elf(root / "android-arm64" / "libsrmodel.so")
    assert info["machine"] == "AArch64"
    assert info["needed"] and set(info["needed"]) <= {"libc.so", "libm.so", "libdl.so", "liblog.so"}
    assert not info["textrel"]
    assert info["loads"] and all(seg["align"] == PAGE_16K for seg in info["loads"])
    assert all((seg["vaddr"] - seg["offset"]) % PAGE_16K == 0 for seg in info["loads"])
    exe = inspect_elf(root / "android-arm64" / "srmodel_bench")
    assert exe["interpreter"] == "/system/bin/linker64" and "libdl.so" in exe["needed"]
    symbols = subprocess.run(["readelf", "-W", "--dyn-syms", str(root / "android-arm64" / "libsrmodel.so")],
                             capture_output=True, text=True).stdout
    assert "srmodel_run_rgb8" in symbols and "__tvm_ffi_" not in symbols


def test_android_library_runs_under_qemu_through_glibc_shims(built):
    root, model, x = built
    shims = glibc_shims(root / "shims")
    assert inspect_elf(shims / "libc.so")["needed"] == ["libc.so.6"]  # the shim forwards, it is not empty
    want = reference_output(model, x)
    android = root / "android-arm64"
    # loaded by the glibc bench, and by the Android bench itself (our _start, no NDK crt files)
    for exe, out in ((None, "out_android.f32"), (android / "srmodel_bench", "out_android_exe.f32")):
        stdout = _qemu_bench(root, android / "libsrmodel.so", root / out, shims, exe)
        assert "target android-arm64" in stdout and "threads=2" in stdout
        got = np.fromfile(root / out, np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def _activation_net() -> torch.nn.Module:
    """One conv per fused activation of compiler.epilogue beyond ReLU/PReLU, then a PixelShuffle tail."""
    from torch import nn

    acts = [nn.Tanh(), nn.Sigmoid(), nn.SiLU(), nn.Hardswish(), nn.GELU(), nn.GELU(approximate="tanh"),
            nn.LeakyReLU(0.1)]
    layers: list[nn.Module] = []
    for i, act in enumerate(acts):
        layers += [nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1), act]
    torch.manual_seed(5)
    net = nn.Sequential(*layers, nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2)).eval()
    with torch.no_grad():  # pre-activations of a few units: both tails of every function matter
        for m in net:
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(3.0)
    return net


@pytest.mark.parametrize("target", ["linux-arm64", "android-arm64"])
def test_fused_activations_under_qemu_equal_pytorch(built, target):
    """The vectorised activation approximations on NEON: no libm import, same output as PyTorch."""
    root, _, x = built
    net = _activation_net()
    build_clib(net, SHAPE, target, root / f"acts-{target}", name="acts", check=False)
    lib = root / f"acts-{target}" / "libsrmodel.so"
    symbols = subprocess.run(["readelf", "-W", "--dyn-syms", str(lib)], capture_output=True, text=True).stdout
    assert not {"expf", "tanhf", "erff"} & {line.split()[-1].split("@")[0] for line in symbols.splitlines() if line.strip()}
    shims = glibc_shims(root / "shims") if target == "android-arm64" else None
    stdout = _qemu_bench(root, lib, root / f"acts-{target}.f32", shims)
    assert f"target {target}" in stdout
    want = reference_output(net, x)
    got = np.fromfile(root / f"acts-{target}.f32", np.float32).reshape(want.shape)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def test_android_refuses_symbols_bionic_lacks(tools):
    with pytest.raises(CompilerError, match="__isoc99_sscanf"):
        classify({"memcpy", "__isoc99_sscanf"}, android=True)
