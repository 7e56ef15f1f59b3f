"""`srprune export MODEL --format onnx|pt2 -o FILE`: the deployed model, standalone, for other runtimes.

Each file is run where a user would run it (ONNX Runtime; torch.export.load in a fresh process state) at a size
it was not traced with, against the PyTorch model within 1e-4; the ONNX graph is inspected for the deployed form
(ECBSR re-parameterised to plain convs, a channel-pruned model's convs compacted).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import assert_one_line_error

TOL = 1e-4


def _ort(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _deployed(spec: str, scale: int | None):
    from srprune.models import deploy, resolve_model

    net, _ = resolve_model(spec, scale)
    return deploy(net).eval()


def test_onnx_and_pt2_equal_pytorch_at_any_size(run_cli, tmp_path):
    import onnx

    onnx_path, pt2_path = tmp_path / "ecbsr.onnx", tmp_path / "ecbsr.pt2"
    r = run_cli("export", "ecbsr", "--scale", "2", "-o", onnx_path)
    assert r.code == 0 and "max |diff|" in r.out, r.err
    r = run_cli("export", "ecbsr", "--scale", "2", "--format", "pt2", "-o", pt2_path)
    assert r.code == 0, r.err
    net = _deployed("ecbsr", 2)
    graph = onnx.load(str(onnx_path)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 6  # re-parameterised
    program = torch.export.load(str(pt2_path)).module()
    for shape in ((1, 3, 7, 11), (2, 3, 40, 33)):
        x = np.random.default_rng(sum(shape)).random(shape, dtype=np.float32)
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
            got_pt2 = program(torch.from_numpy(x)).numpy()
        assert want.shape == (shape[0], 3, shape[2] * 2, shape[3] * 2) and np.abs(want).max() > 1e-2
        np.testing.assert_allclose(_ort(onnx_path, x), want, atol=TOL, rtol=0)
        np.testing.assert_allclose(got_pt2, want, atol=TOL, rtol=0)


def test_channel_pruned_model_exports_compacted(run_cli, tmp_path):
    """A model file from `srprune prune` (channel scheme): the exported convs are the narrower ones, and the
    export goes back in as MODEL (srprune.models.foreign) equal to the model file."""
    import onnx

    from srprune.models import resolve_model

    pruned = tmp_path / "pruned.pt"
    spec = json.dumps({"default": {"scheme": "channel", "ratio": 0.5}})
    r = run_cli("prune", "espcn", "--scale", "3", "--spec", spec, "--steps", "0", "--val-data", "", "-o", pruned)
    assert r.code == 0, r.err
    out = tmp_path / "pruned.onnx"
    r = run_cli("export", pruned, "-o", out)
    assert r.code == 0, r.err
    net = _deployed(str(pruned), None)
    ours = sorted(tuple(m.weight.shape) for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    dense = sorted(tuple(m.weight.shape) for m in _deployed("espcn", 3).modules() if isinstance(m, torch.nn.Conv2d))
    assert ours != dense
    inits = {i.name: tuple(i.dims) for i in onnx.load(str(out)).graph.initializer}
    weights = sorted(inits[n.input[1]] for n in onnx.load(str(out)).graph.node if n.op_type == "Conv")
    assert weights == ours
    x = np.random.default_rng(0).random((1, 3, 9, 14), dtype=np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_ort(out, x), want, atol=TOL, rtol=0)
    back, info = resolve_model(str(out), None)
    assert info.scale == 3
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.from_numpy(x)).numpy(), want, atol=TOL, rtol=0)


def test_export_outputs_and_errors(run_cli, tmp_path, model_x2):
    from srprune.models import build_model
    from srprune.models.modelfile import save_model

    out = tmp_path / "m.pt2"
    assert run_cli("export", model_x2, "-o", out).code == 0
    first = out.stat().st_mtime_ns
    assert_one_line_error(run_cli("export", model_x2, "-o", out), "already exists", "--force")
    assert out.stat().st_mtime_ns == first
    assert run_cli("export", model_x2, "-o", out, "--force").code == 0
    assert_one_line_error(run_cli("export", model_x2, "-o", tmp_path / "m.onnx", "--format", "pt2"),
                          "suffix says onnx")
    assert_one_line_error(run_cli("export", model_x2, "-o", tmp_path / "m.bin"), "--format onnx|pt2")
    assert_one_line_error(run_cli("export", model_x2, "-o", out / "x.onnx"), "is a file")
    assert_one_line_error(run_cli("export", model_x2, "-o", tmp_path, "--format", "onnx"), "is a directory")
    quant = tmp_path / "q.pt"
    save_model(quant, build_model("espcn", 2), meta={"quant": {"bits": 8}})
    assert_one_line_error(run_cli("export", quant, "-o", tmp_path / "q.onnx"), "quantised", "not supported yet")
    assert not (tmp_path / "q.onnx").exists()
    left = {p.name for p in tmp_path.iterdir()} - {model_x2.name}
    assert left == {"m.pt2", "q.pt"}  # no temporary file left by the refused or replaced exports


def test_searched_network_with_every_block_type_exports(run_cli, tmp_path):
    """A searched network (a genome model file holding conv, res, wide, ecb, dws and a skip cell): ECB cells
    re-parameterised in the file, which equals the deployed model in ONNX Runtime."""
    import onnx

    from srprune.models import build_model
    from srprune.models.modelfile import save_model
    from supernet.space import Cell, Genome

    cells = [Cell("conv", 8, []), Cell("res", 12, [8]), Cell("wide", 8, [16, 8]), Cell("ecb", 8, [16]),
             Cell("skip", 0, []), Cell("dws", 8, [])]
    torch.manual_seed(0)
    model = build_model("genome", 2, genome=Genome(2, 8, "relu", cells).to_dict())
    path = tmp_path / "searched.pt"
    save_model(path, model)
    out = tmp_path / "searched.onnx"
    r = run_cli("export", path, "-o", out)
    assert r.code == 0, r.err
    net = _deployed(str(path), None)
    convs = [n for n in onnx.load(str(out)).graph.node if n.op_type == "Conv"]
    assert len(convs) == sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    assert len(convs) < sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())  # ECB branches folded
    x = np.random.default_rng(2).random((1, 3, 17, 23), dtype=np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_ort(out, x), want, atol=TOL, rtol=0)
