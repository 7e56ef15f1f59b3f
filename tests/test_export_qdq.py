"""`srprune export` of an int8 model as QDQ ONNX: the graph's form, and ONNX Runtime vs the integer path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from srprune.models import build_model, load_model, save_model
from srprune.quant.qdq import check_close
from tests.conftest import assert_one_line_error

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def qmodel(run_cli, tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "ecbsr.pt"
    save_model(src, build_model("ecbsr", 2, blocks=2, width=8))
    hr = tmp_path / "hr"
    hr.mkdir()
    cv2.imwrite(str(hr / "chelsea.png"), data.chelsea()[:48, :64, ::-1])
    cv2.imwrite(str(hr / "coffee.png"), data.coffee()[:40, :56, ::-1])
    out = tmp_path / "q.pt"
    r = run_cli("quantize", src, "--calib", hr, "-o", out, "--val-data", "")
    assert r.code == 0, r.err
    return out


def test_qdq_export_matches_integer_path(run_cli, qmodel, tmp_path):
    out = tmp_path / "q.onnx"
    r = run_cli("export", qmodel, "-o", out)
    assert r.code == 0, r.err
    assert "wrote" in r.out and "onnxruntime" in r.out
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "DepthToSpace" in ops
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    q, _ = load_model(qmodel)
    n_layers = len(q.specs)
    for n, layer in enumerate(q.layers):
        assert inits[f"l{n}_w"].dtype == np.int8 and np.array_equal(inits[f"l{n}_w"], layer.weight.numpy())
        assert inits[f"l{n}_b"].dtype == np.int32
        assert np.array_equal(inits[f"l{n}_w_scale"], layer.weight_scale.numpy())
    weight_dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("_w")]
    assert len(weight_dq) == n_layers and all(a.i == 0 for n in weight_dq for a in n.attribute if a.name == "axis")
    # ONNX Runtime (CPU, QDQ fused into its int8 kernels) vs the integer path on a real image at a free size
    lr = data.astronaut()[100:160, 200:290].astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": lr})[0]
    want = q(torch.from_numpy(lr)).numpy()
    worst, beyond, ok = check_close(got, want)
    assert got.shape == (1, 3, 120, 180)
    assert ok, (worst, beyond)
    assert beyond <= 1e-3 and worst <= 4 / 255 + 1e-6


def test_pt2_of_int8_model_is_one_line(run_cli, qmodel, tmp_path):
    assert_one_line_error(run_cli("export", qmodel, "-o", tmp_path / "q.pt2"), "int8", "--format onnx")
    assert not (tmp_path / "q.pt2").exists()


def test_qdq_fused_by_onnxruntime_relu_and_genome(run_cli, tmp_path):
    """ReLU networks: ONNX Runtime fuses the QDQ convs into QLinearConv (int8 kernels) and still holds the
    tolerance; the searched network's bicubic skip, grouped conv and residuals sliced / zero-padded included. Both
    weight forms; int8 weights only where this CPU's ONNX Runtime does not saturate them (x86 without VNNI: there
    the export checks the graph unfused and says so), uint8 weights everywhere."""
    from srprune.quant.qdq import UINT8_WEIGHT_ZERO, ort_int8_saturates
    from srprune.quant.quantize import QuantConfig, quantize_model_file
    from supernet.space import Cell, Genome

    saturates = ort_int8_saturates()
    hr = tmp_path / "hr"
    hr.mkdir()
    cv2.imwrite(str(hr / "chelsea.png"), data.chelsea()[:96, :128, ::-1])
    cells = [Cell("res", 24, [16]), Cell("dws", 16, []), Cell("wide", 8, [16, 8]), Cell("ecb", 16, [16])]
    lr = data.coffee()[:72, :96].astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    for name, cfg in (("ecbsr", {"blocks": 2, "width": 16, "act": "relu"}),
                      ("genome", {"genome": Genome(2, 16, "relu", cells).to_dict()})):
        torch.manual_seed(0)
        save_model(tmp_path / f"{name}.pt", build_model(name, 2, **cfg))
        qfile, _ = quantize_model_file(str(tmp_path / f"{name}.pt"), str(hr), tmp_path / f"{name}-q.pt",
                                       QuantConfig(), val_data=None, progress=False)
        q, _ = load_model(qfile)
        want = q(torch.from_numpy(lr)).numpy()
        for weights in ("int8", "uint8"):
            out = tmp_path / f"{name}-{weights}.onnx"
            r = run_cli("export", qfile, "-o", out, "--format", "onnx", "--qdq-weights", weights)
            assert r.code == 0, r.err
            assert f"the integer path (QDQ, {weights} weights)" in r.out
            assert ("graph optimisations off" in r.out) == (saturates and weights == "int8")
            inits = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}
            if weights == "uint8":  # the int8 codes + 128, exactly
                assert inits["l0_w"].dtype == np.uint8 and np.all(inits["l0_w_zero"] == UINT8_WEIGHT_ZERO)
                assert np.array_equal(inits["l0_w"].astype(np.int16) - UINT8_WEIGHT_ZERO, q.layers[0].weight.numpy())
            opts = ort.SessionOptions()
            opts.optimized_model_filepath = str(tmp_path / f"{name}-{weights}-opt.onnx")
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
            fused = {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}
            assert "QLinearConv" in fused, fused
            if weights == "int8" and saturates:
                continue
            worst, beyond, ok = check_close(sess.run(None, {"input": lr})[0], want)
            assert ok, (name, weights, worst, beyond)


def test_qdq_weights_of_a_float_model_is_one_line(run_cli, tmp_path):
    r = run_cli("export", "espcn", "--scale", "2", "-o", tmp_path / "f.onnx", "--qdq-weights", "uint8")
    assert_one_line_error(r, "--qdq-weights", "int8 models")
    assert not (tmp_path / "f.onnx").exists()
