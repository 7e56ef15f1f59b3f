"""`srprune quantize`, and eval / upscale / info of the quantised model file; one-line errors for bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from srprune.evaluate import to_tensor
from srprune.models import build_model, load_model, save_model
from tests.conftest import assert_one_line_error


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "ecbsr.pt"
    save_model(path, build_model("ecbsr", 2, blocks=1, width=8))
    return path


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    cv2.imwrite(str(folder / "chelsea.png"), data.chelsea()[:48, :64, ::-1])
    cv2.imwrite(str(folder / "coffee.png"), data.coffee()[:40, :56, ::-1])
    return folder


def test_quantize_then_eval_upscale_info(run_cli, model_file, hr_folder, tmp_path):
    out = tmp_path / "q.pt"
    r = run_cli("quantize", model_file, "--calib", hr_folder, "-o", out, "--method", "percentile",
                "--val-data", hr_folder, "--qat-steps", "2", "--data", hr_folder, "--batch-size", "2",
                "--patch-size", "8")
    assert r.code == 0, r.err
    assert "wrote" in r.out and "fp32" in r.out and "2 QAT steps" in r.out
    q, info = load_model(out)
    meta = info["meta"]
    assert meta["quantization"]["method"] == "percentile" and meta["quantization"]["calib_count"] == 2
    r = run_cli("info", out)
    assert r.code == 0, r.err
    assert "int8" in r.out and "float32 (tail" in r.out and "body.0.conv" in r.out and "bytes" in r.out
    json_path = tmp_path / "s.json"
    r = run_cli("eval", out, "--data", hr_folder, "--json", json_path)
    assert r.code == 0, r.err
    import json

    assert abs(json.loads(json_path.read_text())["mean"]["psnr"] - meta["val"]["val_psnr"]) < 1e-9
    lr = data.chelsea()[:20, :30]
    cv2.imwrite(str(tmp_path / "lr.png"), lr[:, :, ::-1])
    r = run_cli("upscale", out, tmp_path / "lr.png", tmp_path / "sr.png", "--tile", "8")
    assert r.code == 0, r.err
    sr = cv2.imread(str(tmp_path / "sr.png"))[:, :, ::-1]
    want = q.run_codes(to_tensor(lr).mul(255).round())[0].permute(1, 2, 0).numpy()  # untiled, integer path
    assert np.array_equal(sr, want)


def test_bad_input_is_one_line(run_cli, model_file, hr_folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    (junk / "fake.png").write_bytes(b"not a png at all")
    out = tmp_path / "q.pt"
    cases = [(("--calib", empty), ("no image files",)),
             (("--calib", junk), ("fake.png",)),
             (("--calib", hr_folder, "--method", "median"), ("unknown calibration method 'median'",)),
             (("--calib", hr_folder, "--precision", "int4"), ("unknown precision 'int4'",)),
             (("--calib", tmp_path / "missing"), ("no such file",))]
    for args, fragments in cases:
        r = run_cli("quantize", model_file, "-o", out, "--val-data", "", *args)
        assert_one_line_error(r, *fragments)
        assert not out.exists()
    r = run_cli("quantize", "fsrcnn", "--scale", "2", "--calib", hr_folder, "-o", out, "--val-data", "")
    assert_one_line_error(r, "fsrcnn", "deconv")
    out.write_bytes(b"mine")
    r = run_cli("quantize", model_file, "--calib", hr_folder, "-o", out)
    assert_one_line_error(r, "exists")


def test_compiling_an_int8_model_to_tvm_is_refused_in_one_line(run_cli, model_file, hr_folder, tmp_path):
    """The int8 kernels build a c-lib (tests/test_quant_deploy.py); the Relax VM format has no int8 path."""
    out = tmp_path / "q.pt"
    assert run_cli("quantize", model_file, "--calib", hr_folder, "-o", out, "--val-data", "").code == 0
    r = run_cli("compile", out, "--target", "host", "-o", tmp_path / "c")
    assert_one_line_error(r, "int8 model", "--format c-lib")
    assert not (tmp_path / "c").exists()
