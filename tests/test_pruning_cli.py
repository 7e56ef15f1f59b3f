"""`srprune prune`: lists layers, writes an ordinary model file that info/eval accept, one-line errors."""

from __future__ import annotations

import json

import cv2
import pytest
import torch
from skimage import data

import srprune.cli.prune_cmd  # noqa: F401  (registers `prune` even before cli/commands.py imports it)
from srprune.models.modelfile import load_model, save_model
from srprune.models.registry import build_model
from srprune.pruning.schemes import block_structure
from tests.conftest import assert_one_line_error


@pytest.fixture
def dense(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "ecbsr.pt"
    save_model(path, build_model("ecbsr", 2, blocks=1, width=8))
    return path


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    cv2.imwrite(str(folder / "chelsea.png"), data.chelsea()[:64, :80, ::-1])
    return folder


def test_list_names_the_deployed_layers(run_cli, dense):
    r = run_cli("prune", dense, "--list")
    assert r.code == 0, r.err
    assert "body.0.conv" in r.out and "body.2.conv" in r.out and "pinned" in r.out


def test_prune_writes_a_model_file_eval_and_info_accept(run_cli, dense, hr_folder, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"default": {"scheme": "block", "ratio": 0.5, "block": [4, 4]},
                                "layers": {"body.0.conv": {"scheme": "channel", "ratio": 0.5}}}))
    out = tmp_path / "pruned.pt"
    r = run_cli("prune", dense, "--spec", spec, "-o", out, "--steps", "3", "--batch-size", "2",
                "--patch-size", "12", "--data", hr_folder, "--val-data", hr_folder)
    assert r.code == 0, r.err
    assert "wrote" in r.out and "val PSNR-Y" in r.out
    model, info = load_model(out)
    assert info["name"] == "channel_pruned" and info["meta"]["pruning"]["spec"]["layers"]
    assert model.body[0].conv.out_channels == 4
    w = model.body[1].conv.weight.detach()  # 8 x (4*9) after the head lost half its channels
    assert tuple(w.shape) == (8, 4, 3, 3)
    assert [len(k) for k in block_structure(w, (4, 4))] == [18, 18]
    assert set(info["meta"]["pruning"]["layers"]) == {"body.0.conv", "body.1.conv", "body.2.conv"}
    for cmd in (("info", out), ("eval", out, "--data", hr_folder)):
        r = run_cli(*cmd)
        assert r.code == 0, r.err
    # Without --force the file is not overwritten.
    assert_one_line_error(run_cli("prune", dense, "--spec", spec, "-o", out, "--steps", "0"), "exists")


def test_masked_only_spec_keeps_the_architecture(run_cli, dense, tmp_path):
    out = tmp_path / "u.pt"
    r = run_cli("prune", dense, "--spec", '{"scheme": "unstructured", "ratio": 0.5}', "-o", out, "--steps", "0",
                "--val-data", "")
    assert r.code == 0, r.err
    model, info = load_model(out)
    assert info["name"] == "ecbsr" and info["config"]["deployed"] is True
    assert info["meta"]["pruning"]["layers"]["body.1.conv"]["sparsity"] == 0.5


@pytest.mark.parametrize("spec,fragment", [
    ('{"layers": {"nope": {"scheme": "block", "ratio": 0.5}}}', "'nope'"),
    ('{"scheme": "block", "ratio": 1.2}', "ratio"),
    ('{"layers": {"body.1.conv": {"scheme": "block", "ratio": 0.5, "block": [3, 8]}}}', "does not divide"),
])
def test_spec_errors_are_one_line(run_cli, dense, tmp_path, spec, fragment):
    r = run_cli("prune", dense, "--spec", spec, "-o", tmp_path / "x.pt", "--steps", "0")
    assert_one_line_error(r, fragment)
    assert not (tmp_path / "x.pt").exists()
