"""An int8 model (srprune quantize) through `srprune compile --format c-lib`, `bench` and `android stage`.

The compiled library's image is held to what `srprune eval` runs (the quantised model's integer path,
QuantizedSR.run_codes): equal, or 1 LSB apart on at most 0.1% of pixels (the global skip's x / 255 is a division
in PyTorch and a multiplication by 1/255 in the kernels). The wiring map (srprune.quant.deploy.to_int8_network) is
checked against the compiler's numpy oracle (compiler.int8.network.reference_network) on a hand-built model with a
grouped conv and residuals, and one with a bicubic skip and residuals across width changes, then built into a
host c-lib; what the int8 c-lib cannot express (a layer off the chain) is refused in one line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from compiler.int8.isa import choose_isa
from compiler.int8.network import reference_network
from compiler.targets import get_target
from srprune.errors import InputError
from srprune.models import build_model, load_model, save_model
from srprune.quant.deploy import float_counterpart, to_int8_network
from tests.conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
LR = data.chelsea()[100:124, 200:232].copy()  # 24 x 32 RGB: the frame compiled below is 64x48 at x2
SIZE = "64x48"


def _codes(q, lr: np.ndarray) -> np.ndarray:
    """`srprune eval`'s integer path: uint8 RGB HxWx3 -> the quantised model's uint8 SR image."""
    return q.run_codes(torch.from_numpy(lr).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()


def _close(got: np.ndarray, want: np.ndarray) -> None:
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= 1 and np.mean(diff > 0) <= 0.001, (diff.max(), np.mean(diff > 0))
    assert len(np.unique(want)) > 50  # a real image, not a clamped constant


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hr")
    cv2.imwrite(str(folder / "chelsea.png"), data.chelsea()[:48, :64, ::-1])
    cv2.imwrite(str(folder / "coffee.png"), data.coffee()[:40, :56, ::-1])
    return folder


@pytest.fixture(scope="module")
def qmodels(tmp_path_factory, hr_folder) -> dict[str, Path]:
    """PTQ of a small ECBSR (PReLU, nearest skip), ESPCN (tanh, no skip) and searched genome network, through the
    library's file I/O."""
    from srprune.quant.quantize import QuantConfig, quantize_model_file

    from supernet.space import Cell, Genome

    root = tmp_path_factory.mktemp("q")
    out = {}
    # a searched network: bicubic skip, residual cells that widen (16 -> 24: zero-padded) and narrow (-> 8: sliced),
    # a depthwise cell (grouped conv), an ECB cell (re-parameterised)
    cells = [Cell("res", 24, [16]), Cell("dws", 16, []), Cell("wide", 8, [16, 8]), Cell("ecb", 16, [16])]
    genome = Genome(2, 16, "prelu", cells).to_dict()
    for name, cfg in (("ecbsr", {"blocks": 2, "width": 8}), ("espcn", {"f1": 8, "f2": 8}),
                      ("genome", {"genome": genome})):
        torch.manual_seed(0)
        save_model(root / f"{name}.pt", build_model(name, 2, **cfg))
        out[f"{name}-fp32"] = root / f"{name}.pt"
        out[name], _ = quantize_model_file(str(root / f"{name}.pt"), str(hr_folder), root / f"{name}-q.pt",
                                           QuantConfig(), val_data=None, progress=False)
    return out


@pytest.mark.parametrize("name", ["ecbsr", "espcn", "genome"])
def test_host_clib_equals_the_integer_path(run_cli, qmodels, tmp_path, name):
    out = tmp_path / "c"
    r = run_cli("compile", qmodels[name], "--format", "c-lib", "--target", "host", "--size", SIZE, "-o", out)
    assert r.code == 0, r.err
    isa = choose_isa(get_target("host")).name
    assert f"int8 ({isa})" in r.out and "integer reference" in r.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["int8_isa"] == isa
    assert manifest["meta"]["scale"] == 2 and manifest["meta"]["model"] == "quantized"
    assert manifest["input"]["shape"] == [1, 3, 24, 32] and manifest["output"]["shape"] == [1, 3, 48, 64]
    from compiler.clib.runner import CLib

    q, _ = load_model(qmodels[name])
    with CLib(out / "libsrmodel.so") as lib:
        got = lib.run_rgb8(LR)
    _close(got, _codes(q, LR))
    r = run_cli("compile", qmodels[name], "--size", SIZE, "-o", tmp_path / "tvm")  # default format: tvm
    assert_one_line_error(r, "int8 model", "--format c-lib")
    assert not (tmp_path / "tvm").exists()


def _quantized(specs: list[dict], skip: str = "repeat", seed: int = 0):
    """A hand-built int8 model with random weights whose tensors spread over the uint8 range."""
    rng = np.random.default_rng(seed)
    layers = [{"name": f"l{n}", "precision": "int8", "act": "relu", "k": 3, "groups": 1, "src": n, "residual": None,
               "tail": n == len(specs) - 1, **s} for n, s in enumerate(specs)]
    q = build_model("quantized", 2, base={"name": "ecbsr", "config": {}}, layers=layers, skip=skip)
    with torch.no_grad():
        for layer, spec in zip(q.layers, q.specs):
            fan = spec["in"] // spec["groups"] * spec["k"] ** 2
            layer.weight.copy_(torch.from_numpy(rng.integers(-127, 128, tuple(layer.weight.shape)).astype(np.int8)))
            layer.weight_scale.copy_(torch.from_numpy(rng.uniform(1.5, 4.5, spec["out"]).astype(np.float32)
                                                      / np.float32(127 * np.sqrt(fan))))
            layer.bias.copy_(torch.from_numpy(rng.integers(-4000, 4000, spec["out"]).astype(np.int32)))
            if spec["act"] == "prelu":
                layer.act_param.copy_(torch.from_numpy(rng.uniform(0.05, 0.5, spec["out"]).astype(np.float32)))
        if skip == "bicubic":  # a positive blur per output channel (weights sum to 1), as a bicubic kernel is
            w = rng.uniform(0.0, 1.0, tuple(q.skip_weight.shape)).astype(np.float32)
            q.skip_weight.copy_(torch.from_numpy(w / w.sum(axis=(2, 3), keepdims=True)))
        for t in range(1, len(q.specs)):
            q.tensor_scale[t] = float(np.float32(rng.uniform(0.015, 0.03)))
            q.tensor_zero[t] = int(rng.integers(10, 129))
    return q.eval()


# (layers, global skip): a grouped conv with equal-width residuals; a bicubic skip with residuals sliced (8 -> 4)
# and zero-padded (4 -> 8, and the 3-channel image -> 8)
STRUCTURES = {
    "grouped-residuals": ([{"in": 3, "out": 8}, {"in": 8, "out": 8, "act": "prelu", "groups": 2, "residual": 1},
                           {"in": 8, "out": 8, "act": "none", "k": 1, "residual": 1},
                           {"in": 8, "out": 12, "act": "none"}], "repeat"),
    "bicubic-sliced-padded": ([{"in": 3, "out": 8, "act": "none"}, {"in": 8, "out": 4, "residual": 1},
                               {"in": 4, "out": 8, "act": "prelu", "residual": 2},
                               {"in": 8, "out": 8, "residual": 0}, {"in": 8, "out": 12, "act": "none"}], "bicubic"),
}


@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_wiring_equals_the_numpy_oracle_and_the_host_clib(structure, tmp_path):
    """to_int8_network's map, held to the compiler's numpy oracle; then the host c-lib built from it."""
    from compiler.clib.runner import CLib
    from compiler.int8.network import build_int8_clib

    specs, skip = STRUCTURES[structure]
    q = _quantized(specs, skip)
    net = to_int8_network(q)
    assert net.residual_from == [None if s.get("residual") is None else s["residual"] - 1 for s in specs]
    want = _codes(q, LR)
    ref = reference_network(net, LR.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
    _close(np.rint(ref * np.float32(255.0)), want)
    build_int8_clib(net, (1, 3, *LR.shape[:2]), "host", tmp_path / "lib")  # checked against the oracle on the way
    with CLib(tmp_path / "lib" / "libsrmodel.so") as lib:
        _close(lib.run_rgb8(LR), want)


def test_a_layer_off_the_chain_is_named(run_cli, tmp_path):
    q = _quantized([{"in": 3, "out": 8}, {"in": 8, "out": 8}, {"in": 8, "out": 12, "src": 1}])
    with pytest.raises(InputError, match="reads tensor 1.*chain"):
        to_int8_network(q)
    path = tmp_path / "q.pt"
    save_model(path, q)
    r = run_cli("compile", path, "--format", "c-lib", "--size", SIZE, "-o", tmp_path / "c")
    assert_one_line_error(r, "layer l2 reads tensor 1", "chain")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("name", ["ecbsr", "genome"])
def test_float_counterpart_is_the_dequantised_network(qmodels, name):
    """The fp32 engines of `srprune bench` run this: w = s_w w_q, b = s_x s_w b_q, the PReLU slopes; so it is the
    source float model up to weight rounding (an untrained net's activation rounding is coarser: not compared)."""
    from srprune.models import deploy

    q, _ = load_model(qmodels[name])
    src, _ = load_model(qmodels[f"{name}-fp32"])
    f = float_counterpart(q)
    for n, (layer, spec) in enumerate(zip(q.layers, q.specs)):
        conv = f.get_submodule(spec["name"])
        s_w = layer.weight_scale.numpy().astype(np.float64)
        w = layer.weight.numpy().astype(np.float64) * s_w.reshape(-1, 1, 1, 1)
        b = layer.bias.numpy().astype(np.float64) * q.qparams(spec["src"]).scale * s_w
        np.testing.assert_array_equal(conv.weight.detach().numpy(), w.astype(np.float32))
        np.testing.assert_array_equal(conv.bias.detach().numpy(), b.astype(np.float32))
        if spec["act"] == "prelu":
            act = f.get_submodule(spec["name"].rsplit(".", 1)[0]).act
            np.testing.assert_array_equal(act.weight.detach().numpy(), layer.act_param.numpy())
    x = torch.from_numpy(LR).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        diff = (f(x) - deploy(src).eval()(x)).abs()
    assert 0 < float(diff.mean()) < 1.0 / 255.0


def test_bench_times_the_int8_clib_beside_the_float_engines(run_cli, qmodels):
    r = run_cli("bench", qmodels["ecbsr"], "--size", SIZE, "--repeat", "1", "--engines", "tvm,torch")
    assert r.code == 0, r.err
    rows = {line.split()[0] for line in r.out.splitlines()[2:] if line.strip()}
    assert {"tvm", "torch", "int8"} <= rows, r.out
    int8 = next(line for line in r.out.splitlines() if line.startswith("int8 c-lib")).split()
    median, lo, hi = map(float, int8[2:5])
    assert 0 < lo <= median <= hi
    assert "float counterpart" in r.out and f"int8 c-lib ({choose_isa(get_target('host')).name})" in r.out


# ---- arm64: under qemu-aarch64 -cpu max (sdot and the NEON fallback), and the Android app's staging -------------

ARM_TOOLS = ("aarch64-linux-gnu-gcc", "qemu-aarch64", "clang", "ld.lld")


def _arm_tools() -> None:
    from compiler.clib.toolchain import GNU_SYSROOT

    missing = [t for t in ARM_TOOLS if shutil.which(t) is None]
    if missing or not Path(f"{GNU_SYSROOT}/lib/libc.so.6").exists():
        pytest.skip(f"arm64 tools unavailable: {missing or GNU_SYSROOT} (scripts/install-system-deps.sh)")


@pytest.mark.parametrize("name", ["ecbsr", "genome"])
def test_arm64_clibs_under_qemu_equal_the_integer_path(run_cli, qmodels, tmp_path, name):
    from compiler.clib.toolchain import GNU_SYSROOT, glibc_shims

    _arm_tools()
    q, _ = load_model(qmodels[name])
    (LR.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(1.0 / 255.0)).tofile(tmp_path / "in.f32")
    want = _codes(q, LR)
    for target, isa in (("linux-arm64", "neon"), ("android-arm64-dotprod", "sdot")):
        r = run_cli("compile", qmodels[name], "--format", "c-lib", "--target", target, "--size", SIZE,
                    "-o", tmp_path / target)
        assert r.code == 0, r.err
        assert json.loads((tmp_path / target / "manifest.json").read_text())["int8_isa"] == isa
        cmd = ["qemu-aarch64", "-cpu", "max", "-L", GNU_SYSROOT]
        if target.startswith("android"):
            cmd += ["-E", f"LD_LIBRARY_PATH={glibc_shims(tmp_path / 'shims')}"]
        cmd += [str(tmp_path / "linux-arm64" / "srmodel_bench"), str(tmp_path / target / "libsrmodel.so"), "-n", "1",
                "-w", "0", "-t", "2", "-i", str(tmp_path / "in.f32"), "-o", str(tmp_path / f"{target}.f32")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = np.fromfile(tmp_path / f"{target}.f32", np.float32).reshape(1, 3, 48, 64)[0].transpose(1, 2, 0)
        _close(np.rint(np.clip(got, 0, 1) * np.float32(255.0)), want)


def test_android_stage_of_an_int8_model_stages_the_int8_clib(run_cli, qmodels, tmp_path):
    from compiler.artifact import sha256
    from srprune import android

    _arm_tools()
    app = tmp_path / "app"
    shutil.copytree(ROOT / "android_app", app, ignore=shutil.ignore_patterns("jniLibs", "staged", "assets", "build"))
    r = run_cli("android", "stage", qmodels["ecbsr"], "--app", app, "--size", SIZE)
    assert r.code == 0, r.err
    staged = json.loads((app / android.ASSETS / "manifest.json").read_text())
    assert staged["precision"] == "int8" and staged["int8_isa"] == "neon"  # android-arm64 promises NEON only
    assert staged["target"]["triple"] == android.TRIPLE
    assert sha256(app / android.JNI_LIB) == staged["checksums"]["libsrmodel.so"]
