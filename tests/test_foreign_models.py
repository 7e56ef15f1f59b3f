"""Your own model as MODEL: networks written here, exported by PyTorch's own exporters to ONNX and .pt2, go through
every command that takes MODEL; each result is checked against the original PyTorch network or ONNX Runtime.

The networks: `Compact`, an SRVGGNet-style compact network (conv + PReLU body, PixelShuffle tail, a nearest-
upsampled skip, as Real-ESRGAN's SRVGGNetCompact); `Kitchen`, every other operator the converter takes (transposed
conv, leaky ReLU, tanh, sigmoid, concat, reflect pad, scalar mul, bilinear upsampling, clamp, a conv weight computed
from two parameters); `Unsupported`,
one with an operator SR networks do not use (abs).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4


class Compact(nn.Module):
    """SRVGGNet-style: conv3x3 + PReLU x (1 + convs), conv to 3*s^2, PixelShuffle, plus the nearest-upsampled input."""

    def __init__(self, scale: int = 2, feat: int = 16, convs: int = 3) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(3, feat, 3, padding=1), nn.PReLU(feat)]
        for _ in range(convs):
            layers += [nn.Conv2d(feat, feat, 3, padding=1), nn.PReLU(feat)]
        layers += [nn.Conv2d(feat, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.body(x) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


class Kitchen(nn.Module):
    """x2 through a transposed conv, with the rest of the converter's operators on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 5, padding=2)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 1)
        self.gain = nn.Parameter(torch.ones(8, 1, 1, 1))  # a weight computed in the graph, as weight norm does
        self.mix = nn.Conv2d(16, 8, 3)  # after a reflect pad
        self.up = nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = F.leaky_relu(self.head(x), 0.1)
        b = F.conv2d(h, self.b.weight * self.gain, self.b.bias)
        h = torch.cat([torch.tanh(self.a(h)), torch.sigmoid(b)], dim=1)
        h = F.relu(self.mix(F.pad(h, (1, 1, 1, 1), mode="reflect"))) * 0.5
        y = self.up(h) + F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return torch.clamp(y, 0.0, 1.0)


class Unsupported(Compact):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.abs(self.body(x))


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Weights of a realistic size (no layer an identity or zero; PReLU slopes differ per channel)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(noise / p[0].numel() ** 0.5 if p.dim() > 1 else noise * 0.2)
    return model.eval()


def _dyn() -> tuple[dict, ...]:
    return ({2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC},)


def _export(net: nn.Module, folder: Path, name: str, dynamo: bool = True) -> dict[str, Path]:
    """The network as the user would have it: torch.onnx.export (dynamo, or the faster legacy TorchScript
    exporter) and torch.export.save, with free height and width."""
    x = torch.rand(1, 3, 24, 32)
    paths = {"onnx": folder / f"{name}.onnx", "pt2": folder / f"{name}.pt2"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(net, (x,), paths["onnx"], dynamo=True, dynamic_shapes=_dyn(), external_data=False,
                              verbose=False)
        else:
            torch.onnx.export(net, (x,), paths["onnx"], dynamo=False, opset_version=17, input_names=["lr"],
                              dynamic_axes={"lr": {2: "h", 3: "w"}})
        torch.export.save(torch.export.export(net, (x,), dynamic_shapes=_dyn()), paths["pt2"])
    return paths


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("byo")
    out = {}
    for name, net in (("compact", _randomise(Compact(), 1)), ("kitchen", _randomise(Kitchen(), 2))):
        out[name] = (net, _export(net, folder, name))
    out["unsupported"] = (net := _randomise(Unsupported(), 3), _export(net, folder, "unsupported", dynamo=False))
    # the TorchScript exporter's graph too, as older tools still write it
    out["compact"][1]["legacy"] = _export(out["compact"][0], folder, "compact-legacy", dynamo=False)["onnx"]
    return out


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name,fmt", [("compact", "onnx"), ("compact", "pt2"), ("compact", "legacy"),
                                      ("kitchen", "onnx"), ("kitchen", "pt2")])
def test_converted_network_equals_the_original(nets, name, fmt):
    from srprune.models import resolve_model

    net, paths = nets[name]
    model, info = resolve_model(str(paths[fmt]), None)
    assert info.scale == 2 and info.name == "graph" and info.source == "file"
    x = torch.rand(1, 3, 13, 21, generator=torch.Generator().manual_seed(5))  # not the traced size
    with torch.no_grad():
        want, got = net(x), model(x)
    assert got.shape == want.shape == (1, 3, 26, 42)
    assert float(want.abs().max()) > 0.1
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == len([m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    with pytest.raises(Exception, match="x2, not x3"):
        resolve_model(str(paths[fmt]), 3)


def test_unsupported_operator_is_one_line_naming_it(nets, run_cli, tmp_path):
    paths = nets["unsupported"][1]
    assert_one_line_error(run_cli("compile", paths["onnx"], "-o", tmp_path / "a"), "ONNX operator Abs")
    assert_one_line_error(run_cli("info", paths["pt2"]), "operator aten.abs")
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a protobuf at all")
    assert_one_line_error(run_cli("info", bad), "junk.onnx")
    assert_one_line_error(run_cli("info", tmp_path / "missing.pt2"), "does not exist")


def test_compile_both_formats_on_our_kernels(nets, run_cli, tmp_path):
    """ONNX -> the TVM library, .pt2 -> the C library; each run here against the original network."""
    import tvm
    from tvm import relax

    from compiler.artifact import load_artifact
    from compiler.clib.runner import CLib

    net, paths = nets["compact"]
    x = np.random.default_rng(3).random((1, 3, 11, 17), dtype=np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    r = run_cli("compile", paths["onnx"], "--size", "34x22", "-o", tmp_path / "tvm")
    assert r.code == 0, r.err
    manifest, lib = load_artifact(tmp_path / "tvm")
    assert manifest["fused_convs"] == 5 and manifest["numerics"]["max_abs_diff"] <= TOL  # every conv on our kernels
    got = relax.VirtualMachine(lib, tvm.cpu())["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    r = run_cli("compile", paths["pt2"], "--size", "34x22", "--format", "c-lib", "-o", tmp_path / "clib")
    assert r.code == 0, r.err
    with CLib(tmp_path / "clib" / "libsrmodel.so") as clib:
        np.testing.assert_allclose(clib.run(x), want, atol=TOL, rtol=0)


@pytest.mark.parametrize("fmt,engines", [("onnx", "torch,onnxruntime"), ("pt2", "tvm,torch")])
def test_bench_eval_upscale(nets, run_cli, tmp_path, fmt, engines):
    """bench (TVM on one file; compile covers the other), eval against the original network's PSNR/SSIM, tiled
    upscale against ONNX Runtime on the file / the original network."""
    from srprune.data import load_dataset
    from srprune.evaluate import score_pairs
    from srprune.imageio import read_image, write_image

    net, paths = nets["compact"]
    r = run_cli("bench", paths[fmt], "--size", "32x24", "--repeat", "1", "--engines", engines)
    assert r.code == 0, r.err
    assert "graph x2" in r.out and all(e in r.out for e in engines.split(","))

    r = run_cli("eval", paths[fmt], "--data", "builtin", "--json", tmp_path / "scores.json")
    assert r.code == 0, r.err
    got = json.loads((tmp_path / "scores.json").read_text())["images"]
    want = score_pairs(net, load_dataset("builtin", 2, split="val"), 2)  # the original network, same protocol
    assert [g["name"] for g in got] == [w.name for w in want]
    for g, w in zip(got, want):
        assert g["psnr"] == pytest.approx(w.psnr, abs=1e-3) and g["ssim"] == pytest.approx(w.ssim, abs=1e-4)

    lr = (np.random.default_rng(4).random((30, 41, 3)) * 255).astype(np.uint8)
    write_image(tmp_path / "lr.png", lr)
    r = run_cli("upscale", paths[fmt], tmp_path / "lr.png", tmp_path / "sr.png", "--tile", "12")
    assert r.code == 0, r.err
    sr = read_image(tmp_path / "sr.png").astype(np.float64)
    x = (lr.astype(np.float32) / 255).transpose(2, 0, 1)[None].copy()
    if fmt == "onnx":
        ref = _ort(paths["onnx"], x)
    else:
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
    ref = ref[0].transpose(1, 2, 0)
    assert sr.shape == (60, 82, 3)
    assert np.abs(sr - np.clip(ref, 0, 1) * 255).max() <= 0.5 + 1e-3  # tiles join without seams: rounding only


def test_prune_an_onnx_model(nets, run_cli, tmp_path):
    """Block pruning of the converted convs; the result is an ordinary model file equal to the original network
    with the same zeros."""
    from srprune.models.modelfile import load_model

    net, paths = nets["compact"]
    r = run_cli("prune", paths["onnx"], "--list")
    assert r.code == 0 and "body_2" in r.out, r.err
    out = tmp_path / "pruned.pt"
    spec = '{"default": {"scheme": "block", "ratio": 0.5, "block": [4, 4]}, "skip": ["layers.body_0", "layers.body_8"]}'
    r = run_cli("prune", paths["onnx"], "--spec", spec, "--steps", "0", "--val-data", "", "-o", out)
    assert r.code == 0, r.err
    pruned, info = load_model(out)
    assert info["name"] == "graph" and info["scale"] == 2
    ref = _randomise(Compact(), 1)
    zeroed = 0
    for ours, theirs in zip((m for m in pruned.modules() if isinstance(m, nn.Conv2d)),
                            (m for m in ref.modules() if isinstance(m, nn.Conv2d))):
        mask = ours.weight != 0
        zeroed += int((~mask).sum())
        with torch.no_grad():
            theirs.weight.mul_(mask)
    assert zeroed > 0
    x = torch.rand(1, 3, 12, 9)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), ref(x), atol=TOL, rtol=0)


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_android_stage(nets, run_cli, tmp_path, fmt):
    if shutil.which("clang") is None or shutil.which("ld.lld") is None:
        pytest.skip("clang/lld unavailable (scripts/install-system-deps.sh)")
    app = tmp_path / "app"
    shutil.copytree(ROOT / "android_app", app, ignore=shutil.ignore_patterns("jniLibs", "staged", "assets", "build"))
    r = run_cli("android", "stage", nets["compact"][1][fmt], "--size", "32x24", "--app", app)
    assert r.code == 0, r.err
    manifest = json.loads((app / "app/src/main/assets/srmodel/manifest.json").read_text())
    assert manifest["meta"]["scale"] == 2 and manifest["meta"]["model"] == "graph"
    assert manifest["target"]["triple"].startswith("aarch64") and manifest["numerics"]["max_abs_diff"] <= TOL
    assert (app / "app/src/main/jniLibs/arm64-v8a/libsrmodel.so").is_file()


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
def test_pixel_shuffle_written_as_reshape_transpose(tmp_path, mode):
    """Exporters before DepthToSpace (and tf2onnx) write a pixel shuffle as Reshape -> Transpose -> Reshape with the
    frame size baked in; a hand-written graph of each ordering converts and equals ONNX Runtime and PyTorch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from srprune.models import resolve_model

    g = np.random.default_rng(6)
    w = (g.standard_normal((12, 3, 3, 3)) / 5).astype(np.float32)
    shape6, perm = ([1, 3, 2, 2, 8, 10], [0, 1, 4, 2, 5, 3]) if mode == "CRD" else ([1, 2, 2, 3, 8, 10],
                                                                                   [0, 3, 4, 1, 5, 2])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "s6"], ["r6"]),
             helper.make_node("Transpose", ["r6"], ["t"], perm=perm),
             helper.make_node("Reshape", ["t", "s4"], ["y"])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(shape6, np.int64), "s6"),
             numpy_helper.from_array(np.array([1, 3, 16, 20], np.int64), "s4")]
    graph = helper.make_graph(nodes, "shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 20])], inits)
    path = tmp_path / f"{mode}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model, info = resolve_model(str(path), None)
    assert info.scale == 2 and [n["op"] for n in model.nodes] == ["conv", "pixel_shuffle"]
    x = np.random.default_rng(7).random((1, 3, 8, 10), dtype=np.float32)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
        conv = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1)
    np.testing.assert_allclose(got, _ort(path, x), atol=TOL, rtol=0)
    if mode == "CRD":
        np.testing.assert_allclose(got, F.pixel_shuffle(conv, 2).numpy(), atol=TOL, rtol=0)
    else:  # DCR's channel order is (block row, block column, colour): PyTorch's after regrouping the channels
        regrouped = conv.reshape(1, 2, 2, 3, 8, 10).permute(0, 3, 1, 2, 4, 5).reshape(1, 12, 8, 10)
        np.testing.assert_allclose(got, F.pixel_shuffle(regrouped, 2).numpy(), atol=TOL, rtol=0)


def test_channel_pruning_of_a_pt2_model(nets, run_cli, tmp_path):
    """Channel pruning removes whole feature maps: equal to the original network with those maps' convs (weights
    and bias) zeroed, found by matching the kept filters to the original ones."""
    from srprune.models.modelfile import load_model

    net, paths = nets["compact"]
    out = tmp_path / "narrow.pt"
    spec = '{"default": {"scheme": "channel", "ratio": 0.5}}'
    r = run_cli("prune", paths["pt2"], "--spec", spec, "--steps", "0", "--val-data", "", "-o", out)
    assert r.code == 0, r.err
    pruned, info = load_model(out)
    assert info["name"] == "channel_pruned" and info["config"]["base"]["name"] == "graph"
    ref = _randomise(Compact(), 1)
    ours = [m for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    theirs = [m for m in ref.modules() if isinstance(m, nn.Conv2d)]
    kept_in = torch.arange(3)
    narrowed = 0
    for a, b in zip(ours, theirs):
        w = b.weight.detach()[:, kept_in]
        kept = [int((w - row).abs().flatten(1).sum(1).argmin()) for row in a.weight.detach()]
        torch.testing.assert_close(a.weight.detach(), w[kept], atol=0, rtol=0)
        narrowed += a.out_channels < b.out_channels
        with torch.no_grad():
            gone = torch.ones(b.out_channels, dtype=torch.bool)
            gone[kept] = False
            b.weight[gone] = 0
            b.bias[gone] = 0
        kept_in = torch.tensor(kept)
    assert narrowed >= 3
    x = torch.rand(1, 3, 10, 13)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), ref(x), atol=TOL, rtol=0)


def test_pt2_probed_inside_its_exported_size_range(tmp_path):
    """A program exported for heights 40-100 only: the scale is read from a probe inside that range."""
    from srprune.models import resolve_model

    net = _randomise(nn.Sequential(nn.Conv2d(3, 27, 3, padding=1), nn.PixelShuffle(3)), 8)
    dyn = ({2: torch.export.Dim("h", min=40, max=100), 3: torch.export.Dim("w", min=24)},)
    path = tmp_path / "ranged.pt2"
    torch.export.save(torch.export.export(net, (torch.rand(1, 3, 48, 48),), dynamic_shapes=dyn), path)
    model, info = resolve_model(str(path), None)
    assert info.scale == 3
    x = torch.rand(1, 3, 7, 5)  # the converted network itself runs at any size
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), atol=TOL, rtol=0)


def test_a_network_that_needs_multiples_of_8_is_probed_at_a_size_it_takes(tmp_path):
    """Three stride-2 convs then a x16 pixel shuffle (x2 overall): 16x20 is not a multiple of 8, 64x64 is."""
    from srprune.models import resolve_model

    net = _randomise(nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(),
                                   nn.Conv2d(8, 3 * 256, 3, 2, 1), nn.PixelShuffle(16)), 9)
    path = tmp_path / "strided.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 3, 32, 32),), path, dynamo=False, opset_version=17,
                          input_names=["lr"], dynamic_axes={"lr": {2: "h", 3: "w"}})
    model, info = resolve_model(str(path), None)
    assert info.scale == 2
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), atol=TOL, rtol=0)
