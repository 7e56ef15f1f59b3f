"""The CLI end to end: eval/upscale/info work, and every bad input is one line with exit code 2."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from srprune.imresize import imresize, mod_crop, to_uint8
from srprune.metrics import psnr
from srprune.models import build_model
from tests.conftest import assert_one_line_error, srprune_subprocess


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    cv2.imwrite(str(folder / "chelsea.png"), data.chelsea()[:96, :120, ::-1])
    cv2.imwrite(str(folder / "coffee.png"), data.coffee()[:80, :100, ::-1])
    return folder


def test_eval_bicubic_json_matches_protocol(run_cli, hr_folder, tmp_path):
    out = tmp_path / "scores.json"
    r = run_cli("eval", "bicubic", "--scale", "2", "--data", hr_folder, "--json", out)
    assert r.code == 0, r.err
    doc = json.loads(out.read_text())
    names = sorted(s["name"] for s in doc["images"])
    assert len(names) == 2 and "chelsea" in names[0]
    hr = mod_crop(data.chelsea()[:96, :120], 2)
    sr = to_uint8(imresize(to_uint8(imresize(hr, 0.5)), 2))
    chelsea = next(s for s in doc["images"] if "chelsea" in s["name"])
    assert chelsea["psnr"] == pytest.approx(psnr(sr, hr, 2), abs=1e-3)
    assert "mean" in r.out and "PSNR-Y" in r.out
    # The same output again without --force is refused and the file is kept.
    before = out.read_bytes()
    assert_one_line_error(run_cli("eval", "bicubic", "--scale", "2", "--data", hr_folder, "--json", out), "exists")
    assert out.read_bytes() == before


def test_upscale_and_info(run_cli, model_x2, tmp_path):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), data.astronaut()[:40, :30, ::-1])
    dst = tmp_path / "out.png"
    r = run_cli("upscale", model_x2, src, dst)
    assert r.code == 0, r.err
    assert cv2.imread(str(dst)).shape == (80, 60, 3)
    r = run_cli("info", "fsrcnn", "--scale", "2")
    assert r.code == 0 and "MACs" in r.out and "params" in r.out


def test_grayscale_and_rgba_are_converted_with_a_note(run_cli, model_x2, tmp_path):
    gray, rgba = tmp_path / "gray.png", tmp_path / "rgba.png"
    cv2.imwrite(str(gray), data.camera()[:32, :32])
    cv2.imwrite(str(rgba), np.dstack([data.coffee()[:32, :32, ::-1], np.full((32, 32), 200, np.uint8)]))
    for src in (gray, rgba):
        r = run_cli("upscale", model_x2, src, tmp_path / f"{src.stem}_x2.png")
        assert r.code == 0, r.err
        assert "note:" in r.err and src.name in r.err
        assert cv2.imread(str(tmp_path / f"{src.stem}_x2.png")).shape == (64, 64, 3)


def test_bad_inputs_get_one_line_errors(run_cli, model_x2, hr_folder, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    out = tmp_path / "o.png"
    assert_one_line_error(run_cli("upscale", model_x2, tmp_path / "missing.png", out), "missing.png")
    assert_one_line_error(run_cli("upscale", model_x2, text, out), "notes.png", "not a readable image")
    assert_one_line_error(run_cli("eval", "bicubic", "--scale", "2", "--data", tmp_path / "nowhere"), "nowhere")
    assert_one_line_error(run_cli("info", "no-such-net", "--scale", "2"), "no-such-net")
    assert_one_line_error(run_cli("info", "fsrcnn"), "scale")
    # A model used at the wrong scale.
    assert_one_line_error(run_cli("eval", model_x2, "--scale", "3", "--data", hr_folder), "x2")
    # A corrupt file and a foreign checkpoint (a bare state_dict).
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(model_x2.read_bytes()[:500])
    assert_one_line_error(run_cli("info", corrupt), "corrupt.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save(build_model("espcn", 2).state_dict(), foreign)
    assert_one_line_error(run_cli("info", foreign), "foreign.pt")
    # An output that exists is not overwritten without --force.
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), data.astronaut()[:20, :20, ::-1])
    out.write_bytes(b"precious")
    assert_one_line_error(run_cli("upscale", model_x2, src, out), "exists")
    assert out.read_bytes() == b"precious"
    assert run_cli("upscale", model_x2, src, out, "--force").code == 0


def test_images_smaller_than_the_patch_are_refused(run_cli, tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    cv2.imwrite(str(tiny / "small.png"), data.coffee()[:20, :20, ::-1])
    r = run_cli("train", "espcn", "--scale", "2", "--data", tiny, "--steps", "1", "--patch-size", "16",
                "-o", tmp_path / "run")
    assert_one_line_error(r, "small", "smaller than")


def test_real_process_prints_no_traceback(tmp_path):
    r = srprune_subprocess("eval", "bicubic", "--scale", "2", "--data", tmp_path / "absent")
    assert_one_line_error(r, "absent")
    r = srprune_subprocess("train", "espcn", "--scale", "7", "-o", tmp_path / "x")
    assert r.returncode == 2 and "Traceback" not in r.stderr
