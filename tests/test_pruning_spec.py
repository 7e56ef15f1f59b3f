"""The pruning spec: file formats, defaults, and one-line errors naming the layer or field."""

from __future__ import annotations

import json

import pytest
import torch

from srprune.errors import InputError
from srprune.models.registry import build_model
from srprune.pruning.pruner import Pruner
from srprune.pruning.spec import LayerSpec, load_spec, parse_spec


def _ecbsr():
    torch.manual_seed(0)
    return build_model("ecbsr", 2, blocks=2, width=16, deployed=True).eval()


def _error(spec, model=None) -> str:
    with pytest.raises(InputError) as exc:
        Pruner(model if model is not None else _ecbsr(), spec)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_bare_layer_spec_is_the_default():
    spec = parse_spec({"scheme": "block", "ratio": 0.5, "block": [4, 8]})
    assert spec.default == LayerSpec("block", 0.5, block=(4, 8)) and spec.layers == {}


def test_spec_files_inline_and_round_trip(tmp_path):
    raw = {"default": {"scheme": "pattern", "ratio": 0.75},
           "layers": {"body.1.conv": {"scheme": "block", "ratio": 0.5, "block": [2, 4]}}, "skip": ["body.0.conv"]}
    (tmp_path / "s.json").write_text(json.dumps(raw))
    (tmp_path / "s.yaml").write_text("default: {scheme: pattern, ratio: 0.75}\n"
                                     "layers:\n  body.1.conv: {scheme: block, ratio: 0.5, block: [2, 4]}\n"
                                     "skip: [body.0.conv]\n")
    specs = [load_spec(tmp_path / "s.json"), load_spec(str(tmp_path / "s.yaml")), load_spec(json.dumps(raw))]
    assert specs[0] == specs[1] == specs[2]
    assert specs[0].default.entries == 3  # ceil(9 * 0.25)
    assert parse_spec(specs[0].to_dict()) == specs[0]
    pruner = Pruner(_ecbsr(), specs[0])
    assert "body.0.conv" not in pruner.layers
    assert pruner.layers["body.1.conv"].scheme == "block"
    assert pruner.layers["body.2.conv"].scheme == "pattern"


@pytest.mark.parametrize("spec,fragment", [
    ({"scheme": "block", "ratio": 1.0}, "ratio must be a number in [0, 1)"),
    ({"scheme": "block", "ratio": -0.1}, "ratio must be a number in [0, 1)"),
    ({"scheme": "block", "ratio": "0.5"}, "ratio"),
    ({"scheme": "magic", "ratio": 0.5}, "scheme must be one of"),
    ({"scheme": "channel", "ratio": 0.5, "block": [4, 4]}, "no field 'block'"),
    ({"scheme": "block", "ratio": 0.5, "block": [0, 4]}, "block size"),
    ({"scheme": "pattern", "ratio": 0.5, "entries": 3}, "entries"),
    ({"layers": {"body.1.conv": {"scheme": "unstructured", "ratio": 1.5}}}, "layer 'body.1.conv'"),
    ({"default": None}, "prunes nothing"),
    ({"defaults": {}}, "no key 'defaults'"),
])
def test_bad_fields_are_one_line_errors(spec, fragment):
    assert fragment in _error(spec)


def test_missing_layer_is_named():
    msg = _error({"layers": {"body.9.conv": {"scheme": "block", "ratio": 0.5}}})
    assert "'body.9.conv'" in msg and "body.0.conv" in msg  # names the culprit and lists the real layers
    assert "'head'" in _error({"default": {"scheme": "block", "ratio": 0.5}, "skip": ["head"]})


def test_block_that_does_not_divide_the_layer():
    msg = _error({"layers": {"body.1.conv": {"scheme": "block", "ratio": 0.5, "block": [5, 8]}}})
    assert "'body.1.conv'" in msg and "5x8" in msg and "16x144" in msg
    # A default block skips layers it does not tile (the 16x27 head) but prunes the others.
    pruner = Pruner(_ecbsr(), {"scheme": "block", "ratio": 0.5, "block": [4, 8]})
    assert "body.0.conv" not in pruner.layers and "body.1.conv" in pruner.layers
    assert "prunes no layer" in _error({"scheme": "block", "ratio": 0.5, "block": [7, 7]})


def test_explicit_layers_must_fit_their_scheme():
    assert "cannot be removed" in _error({"layers": {"body.3.conv": {"scheme": "channel", "ratio": 0.5}}})
    torch.manual_seed(0)
    espcn = build_model("espcn", 2).eval()
    assert "3x3" in _error({"layers": {"body.0": {"scheme": "pattern", "ratio": 0.7}}}, espcn)
    # Default channel pruning leaves the pinned tail alone; default pattern skips the 5x5 head.
    assert set(Pruner(_ecbsr(), {"scheme": "channel", "ratio": 0.5}).layers) == {"body.0.conv", "body.1.conv",
                                                                                  "body.2.conv"}
    assert set(Pruner(espcn, {"scheme": "pattern", "ratio": 0.7}).layers) == {"body.2", "body.4"}


def test_coupled_layers_must_agree():
    from tests.test_pruning_channels import RESNET  # registers the residual test network

    model = build_model(RESNET, 2)
    msg = _error({"default": {"scheme": "channel", "ratio": 0.5},
                  "layers": {"blocks.0.conv2": {"scheme": "channel", "ratio": 0.25}}}, model)
    assert "same channel ratio" in msg
    msg = _error({"default": {"scheme": "channel", "ratio": 0.5}, "skip": ["blocks.1.conv2"]}, model)
    assert "coupled" in msg and "'blocks.1.conv2'" in msg


def test_bad_spec_text(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_spec(tmp_path / "none.json")
    with pytest.raises(InputError, match="neither"):
        load_spec("block-50")
    with pytest.raises(InputError, match="not valid JSON or YAML"):
        load_spec("{scheme: [block")
