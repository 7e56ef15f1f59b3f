"""`srprune supernet train/sample/extract` end to end on a tiny space, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
import torch

import srprune.cli.supernet_cmd  # noqa: F401  (registers the `supernet` group)
from conftest import assert_one_line_error
from supernet.complexity import genome_macs, genome_params
from supernet.space import Genome, SearchSpace
from supernet.standalone import GenomeNet
from supernet.train import load_checkpoint, supernet_from_checkpoint

CONFIG = """
supernet:
  space: {num_cells: 2, widths: [4, 8], blocks: [conv, res, ecb, dws, skip], activation: prelu, scales: [2]}
  train: {steps: 3, batch_size: 2, patch_size: 12, val_every: 3, checkpoint_every: 2}
"""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the tests (3 steps on the builtin images)."""
    from srprune.cli import main

    root = tmp_path_factory.mktemp("sn")
    cfg = root / "config.yaml"
    cfg.write_text(CONFIG)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(["supernet", "train", "-c", str(cfg), "-o", str(root / "run")])
    except SystemExit as e:
        assert e.code in (0, None)
    finally:
        torch.set_num_threads(old)
    return cfg, root / "run" / "supernet" / "checkpoint.pt"


def test_train_writes_checkpoint_and_summary(trained):
    cfg, ckpt = trained
    state = load_checkpoint(ckpt)
    assert state["step"] == 3 and state["world_size"] == 1
    summary = json.loads((ckpt.parent / "summary.json").read_text())
    assert summary["steps"] == 3
    assert 10 < summary["val"]["val_largest"] < 60 and 10 < summary["val"]["val_smallest"] < 60
    assert (ckpt.parent / "train.log").read_text().count("val PSNR") >= 1


def test_train_refuses_to_overwrite_without_resume(run_cli, trained):
    cfg, ckpt = trained
    res = run_cli("supernet", "train", "-c", cfg, "-o", ckpt.parent.parent)
    assert_one_line_error(res, "exists", "--resume")


def test_sample_lists_genomes_with_counts(run_cli, trained):
    cfg, ckpt = trained
    res = run_cli("supernet", "sample", "-c", cfg, "-n", "4", "--seed", "3")
    assert res.code == 0, res.err
    lines = [json.loads(x) for x in res.out.strip().splitlines()]
    assert len(lines) == 4
    space = SearchSpace.from_dict({"num_cells": 2, "widths": [4, 8], "blocks": ["conv", "res", "ecb", "dws", "skip"],
                                   "activation": "prelu", "scales": [2]})
    for row in lines:
        g = Genome.from_dict(row["genome"]).validate(space)
        assert row["params"] == sum(p.numel() for p in GenomeNet(g).deploy().parameters())
        assert row["gmacs_720p"] == round(genome_macs(g) / 1e9, 4)
    big = json.loads(run_cli("supernet", "sample", "--checkpoint", ckpt, "--kind", "largest").out)
    assert big["genome"]["head"] == 8 and big["params"] == genome_params(big["genome"])


def test_extract_writes_a_standalone_model_file(run_cli, trained, tmp_path):
    cfg, ckpt = trained
    net = supernet_from_checkpoint(ckpt).eval()
    genome = {"scale": 2, "head": 4, "activation": "prelu",
              "cells": [{"block": "ecb", "width": 8, "layers": [8]}, {"block": "res", "width": 4, "layers": [8]}]}
    out = tmp_path / "model.pt"
    res = run_cli("supernet", "extract", json.dumps(genome), "--checkpoint", ckpt, "-o", out)
    assert res.code == 0, res.err
    payload = torch.load(out, weights_only=True)  # plain data + tensors: no supernet object inside
    assert payload["arch"]["name"] == "genome" and payload["arch"]["config"]["genome"] == genome
    model = GenomeNet(payload["arch"]["config"]["genome"])
    model.load_state_dict(payload["state_dict"])
    x = torch.rand(1, 3, 20, 17)
    with torch.no_grad():
        assert (model(x) - net(x, genome)).abs().max() <= 1e-5
        assert (model.deploy()(x) - model(x)).abs().max() <= 1e-4
    assert payload["meta"]["check"]["max_abs_diff_supernet"] <= 1e-5
    gfile = tmp_path / "g.json"
    gfile.write_text(json.dumps({"genome": genome}))
    assert_one_line_error(run_cli("supernet", "extract", gfile, "--checkpoint", ckpt, "-o", out), "exists")


@pytest.mark.parametrize("mutate, fragment", [
    (lambda g: g["cells"][0].update(width=16), "genome.cells[0].width: width 16 is larger than the maximum 8"),
    (lambda g: g["cells"][0].update(block="attention"), "genome.cells[0].block"),
    (lambda g: g.update(scale=3), "genome.scale"),
    (lambda g: g["cells"].append({"block": "skip", "width": 0, "layers": []}), "genome.cells"),
])
def test_extract_bad_genome_is_one_line(run_cli, trained, tmp_path, mutate, fragment):
    cfg, ckpt = trained
    genome = {"scale": 2, "head": 4, "activation": "prelu",
              "cells": [{"block": "conv", "width": 8, "layers": []}, {"block": "skip", "width": 0, "layers": []}]}
    mutate(genome)
    res = run_cli("supernet", "extract", json.dumps(genome), "--checkpoint", ckpt, "-o", tmp_path / "m.pt")
    assert_one_line_error(res, fragment)


def test_bad_config_is_one_line(run_cli, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("supernet:\n  space: {blocks: [conv, mamba]}\n")
    assert_one_line_error(run_cli("supernet", "sample", "-c", cfg), "blocks", "mamba")
    cfg.write_text("supernet:\n  train: {stepz: 3}\n")
    assert_one_line_error(run_cli("supernet", "train", "-c", cfg, "-o", tmp_path / "r"), "stepz")
    cfg.write_text("supernet:\n  space: {scales: [2]}\n")
    assert_one_line_error(run_cli("supernet", "sample", "-c", cfg, "--scale", "4"), "scale 4")


def test_extracted_model_loads_evaluates_and_compiles_without_the_supernet(run_cli, trained, tmp_path):
    """The `genome` arch is registered, so every other command takes an extracted file like a reference model."""
    from srprune.models import deploy, load_model

    cfg, ckpt = trained
    genome = {"scale": 2, "head": 8, "activation": "prelu",
              "cells": [{"block": "ecb", "width": 8, "layers": [16]}, {"block": "dws", "width": 8, "layers": []}]}
    out = tmp_path / "model.pt"
    assert run_cli("supernet", "extract", json.dumps(genome), "--checkpoint", ckpt, "-o", out).code == 0
    model = load_model(out)[0].eval()
    net = supernet_from_checkpoint(ckpt).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (model(x) - net(x, genome)).abs().max() <= 1e-5
        assert (deploy(model)(x) - model(x)).abs().max() <= 1e-4
    res = run_cli("eval", out, "--data", "builtin")
    assert res.code == 0, res.err
    res = run_cli("compile", out, "--target", "host", "--size", "64x48", "-o", tmp_path / "art")
    assert res.code == 0, res.err
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["output"]["shape"] == [1, 3, 48, 64]


def test_proxy_scores_sampled_genomes_like_the_standalone_networks(run_cli, trained, tmp_path):
    """`supernet proxy` = PSNR-Y of each extracted network on the builtin val images (srprune's metric)."""
    from srprune.data import load_dataset
    from srprune.evaluate import to_image, to_tensor
    from srprune.metrics import psnr
    from supernet.standalone import extract

    cfg, ckpt = trained
    sampled = run_cli("supernet", "sample", "--checkpoint", ckpt, "-n", "3", "--seed", "4")
    assert sampled.code == 0, sampled.err
    lines = sampled.out.strip().splitlines()
    bare = json.loads(lines[0])["genome"]  # a bare genome line is accepted too
    gfile = tmp_path / "genomes.jsonl"
    gfile.write_text("\n".join(lines + ["", json.dumps(bare)]) + "\n")
    out = tmp_path / "scores.jsonl"
    res = run_cli("supernet", "proxy", gfile, "--checkpoint", ckpt, "-o", out)
    assert res.code == 0, res.err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["genome"] for r in rows] == [json.loads(x)["genome"] for x in lines] + [bare]
    net = supernet_from_checkpoint(ckpt).eval()
    pairs = load_dataset("builtin", 2, split="val")
    for row in rows:
        model = extract(net, row["genome"])[0].eval()
        with torch.no_grad():
            ref = sum(psnr(to_image(model(to_tensor(p.lr))), p.hr, crop_border=2) for p in pairs) / len(pairs)
        assert abs(row["proxy_psnr"] - ref) <= 1e-3, (row, ref)
        assert 20.0 < row["proxy_psnr"] < 40.0
        assert row["params"] == genome_params(row["genome"])
    assert rows[0]["proxy_psnr"] == rows[-1]["proxy_psnr"]
    assert_one_line_error(run_cli("supernet", "proxy", gfile, "--checkpoint", ckpt, "-o", out), "exists", "--force")


@pytest.mark.parametrize("text, fragment", [
    ('{"scale": 2, "head": 4, "activation": "prelu", "cells": []}\nnot json\n', "line 2: not JSON"),
    ('[1, 2]\n', "line 1: expected a JSON object"),
    ('{"genome": {"scale": 2, "head": 16, "activation": "prelu", "cells": ['
     '{"block": "conv", "width": 8, "layers": []}, {"block": "skip", "width": 0, "layers": []}]}}\n',
     "line 1: genome.head: width 16 is larger than the maximum 8"),
    ('\n\n', "no genomes"),
])
def test_proxy_bad_input_is_one_line(run_cli, trained, tmp_path, text, fragment):
    cfg, ckpt = trained
    gfile = tmp_path / "g.jsonl"
    gfile.write_text(text)
    assert_one_line_error(run_cli("supernet", "proxy", gfile, "--checkpoint", ckpt), fragment)


@pytest.mark.parametrize("train, fragment", [
    ("{steps: ten}", "supernet.train.steps must be an integer in [1, 1e+09], got 'ten'"),
    ("{sort_every: -1}", "supernet.train.sort_every must be an integer in [0, "),
    ("{sampling: greedy}", "supernet.train.sampling must be one of fixed, fair, got 'greedy'"),
    ("{lr: fast}", "supernet.train.lr must be a number"),
])
def test_bad_train_values_are_one_line(run_cli, tmp_path, train, fragment):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"supernet:\n  train: {train}\n")
    assert_one_line_error(run_cli("supernet", "train", "-c", cfg, "-o", tmp_path / "r"), fragment)


def test_train_refuses_a_scale_the_space_lacks_before_loading_data(run_cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("supernet:\n  space: {scales: [2]}\n  data: /no/such/folder\n")
    assert_one_line_error(run_cli("supernet", "train", "-c", cfg, "-o", tmp_path / "r", "--scale", "3"), "scale 3")


def test_demo_config_is_valid():
    """configs/supernet-demo.yaml parses, builds its space and holds only known, well-typed settings."""
    from pathlib import Path

    from srprune.cli.supernet_cmd import TRAIN_KEYS, read_config

    cfg = read_config(Path(__file__).resolve().parents[1] / "configs" / "supernet-demo.yaml")
    space = SearchSpace.from_dict(cfg["space"])
    assert space.scales == (2,) and space.max_width == 64 and "skip" in space.blocks
    assert set(cfg["train"]) == set(TRAIN_KEYS) and cfg["data"] == "builtin" and cfg["run_dir"]


def _damaged(state: dict, how: str) -> dict:
    """A copy of a checkpoint's state damaged one way."""
    state = dict(state)
    if how in ("space", "step", "model"):
        del state[how]
    elif how == "weights":
        state["model"] = {k: (v[:1] if v.dim() else v) for k, v in state["model"].items()}
    elif how == "extra":
        state["model"] = {**state["model"], "stranger.weight": torch.zeros(3)}
    elif how == "bad-space":
        state["space"] = {**state["space"], "widths": "many"}
    elif how == "step-type":
        state["step"] = "three"
    elif how == "moments":
        opt = json.loads(json.dumps({"param_groups": state["optimizer"]["param_groups"]}))
        moments = {i: {k: (v[:1] if isinstance(v, torch.Tensor) and v.dim() else v) for k, v in st.items()}
                   for i, st in state["optimizer"]["state"].items()}
        state["optimizer"] = {**opt, "state": moments}
    return state


@pytest.mark.parametrize("how, fragment", [
    ("space", "'space' must be of type dict, is missing"),
    ("step", "'step' must be of type int, is missing"),
    ("model", "'model' must be of type dict, is missing"),
    ("step-type", "'step' must be of type int, is a str"),
    ("bad-space", "its space is invalid"),
    ("weights", "supernet weights do not match its space"),
    ("extra", "1 unexpected"),
])
def test_damaged_checkpoints_are_one_line_in_every_command(run_cli, trained, tmp_path, how, fragment):
    """sample, extract, proxy and train --resume all validate a checkpoint on load, as model files are."""
    cfg, ckpt = trained
    bad = tmp_path / "run" / "supernet" / "checkpoint.pt"
    bad.parent.mkdir(parents=True)
    torch.save(_damaged(load_checkpoint(ckpt), how), bad)
    genome = json.dumps(SearchSpace.from_dict(json.loads(json.dumps(load_checkpoint(ckpt)["space"]))).largest(2)
                        .to_dict())
    gfile = tmp_path / "g.jsonl"
    gfile.write_text(genome + "\n")
    structural = how in ("space", "step", "model", "step-type", "bad-space")
    commands = [("supernet", "extract", genome, "--checkpoint", bad, "-o", tmp_path / "x.pt"),
                ("supernet", "proxy", gfile, "--checkpoint", bad),
                ("supernet", "train", "-c", cfg, "-o", tmp_path / "run", "--resume")]
    if structural:
        commands.append(("supernet", "sample", "--checkpoint", bad))
    for args in commands:
        assert_one_line_error(run_cli(*args), fragment, alone=True)
    assert not (tmp_path / "x.pt").exists()


def test_wrongly_shaped_optimizer_moments_are_refused_on_resume(run_cli, trained, tmp_path):
    cfg, ckpt = trained
    bad = tmp_path / "run" / "supernet" / "checkpoint.pt"
    bad.parent.mkdir(parents=True)
    torch.save(_damaged(load_checkpoint(ckpt), "moments"), bad)
    assert_one_line_error(run_cli("supernet", "train", "-c", cfg, "-o", tmp_path / "run", "--resume"),
                          "optimizer exp_avg has shape", alone=True)
