"""The model file: round trips, safe loading, and one clear InputError per kind of bad file."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from srprune.errors import InputError
from srprune.models import build_model, deploy, load_model, save_model
from srprune.models.modelfile import FORMAT, VERSION


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _bump(model: nn.Module) -> nn.Module:
    """Move all weights off their init so a load that silently kept the init would be caught."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("name,scale,config", [
    ("fsrcnn", 3, {"d": 16, "s": 6, "m": 2}),
    ("espcn", 4, {"act": "relu"}),
    ("ecbsr", 2, {"blocks": 2, "width": 8}),
    ("bicubic", 2, {}),
])
def test_round_trip_gives_identical_output(tmp_path, name, scale, config):
    model = _bump(build_model(name, scale, **config)).eval()
    path = tmp_path / f"{name}.pt"
    meta = {"epochs": 3, "psnr": {"set5": 31.25}, "notes": ["a", "b"], "best": None}
    assert save_model(path, model, meta=meta) == path
    loaded, info = load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    assert info["name"] == name and info["scale"] == scale and info["meta"] == meta
    assert info["config"] == model.arch["config"] and info["version"] == VERSION
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.pt"]  # no temp file left


def test_deployed_ecbsr_round_trip(tmp_path):
    plain = deploy(_bump(build_model("ecbsr", 3, blocks=1, width=8))).eval()
    save_model(tmp_path / "plain.pt", plain)
    loaded, info = load_model(tmp_path / "plain.pt")
    assert info["config"]["deployed"] is True
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        assert torch.equal(loaded(x), plain(x))


def test_file_is_plain_data_loadable_weights_only(tmp_path):
    path = tmp_path / "m.pt"
    model = build_model("espcn", 2)
    save_model(path, model, meta={"k": (1, 2)})
    obj = torch.load(path, weights_only=True)  # raises if anything pickled a class
    assert set(obj) == {"format", "version", "arch", "state_dict", "meta"}
    assert obj["format"] == FORMAT == "srprune-model" and obj["version"] == 1
    assert obj["arch"] == {"name": "espcn", "scale": 2, "config": {"f1": 64, "f2": 32, "act": "tanh", "colors": 3}}
    assert obj["meta"] == {"k": [1, 2]}  # tuples are stored as lists
    assert set(obj["state_dict"]) == set(model.state_dict())
    assert all(v.device.type == "cpu" for v in obj["state_dict"].values())


def test_save_refuses_overwrite_without_force(tmp_path):
    path = tmp_path / "m.pt"
    save_model(path, build_model("fsrcnn", 2, d=8, s=4, m=1))
    with pytest.raises(InputError, match="already exists"):
        save_model(path, build_model("espcn", 2))
    assert load_model(path)[1]["name"] == "fsrcnn"
    save_model(path, build_model("espcn", 2), force=True)
    assert load_model(path)[1]["name"] == "espcn"


def test_save_rejects_unsaveable_things(tmp_path):
    with pytest.raises(InputError, match="no .arch description"):
        save_model(tmp_path / "x.pt", nn.Conv2d(3, 3, 3))
    with pytest.raises(InputError, match="meta of .* plain data"):
        save_model(tmp_path / "x.pt", build_model("espcn", 2), meta={"model": nn.ReLU()})
    with pytest.raises(InputError, match="meta must be a dict"):
        save_model(tmp_path / "x.pt", build_model("espcn", 2), meta=[1, 2])
    assert not list(tmp_path.iterdir())


def _good(tmp_path) -> dict:
    path = tmp_path / "good.pt"
    save_model(path, build_model("fsrcnn", 2, d=8, s=4, m=1), force=True)
    return torch.load(path, weights_only=True)


def _assert_bad(path, *needles):
    with pytest.raises(InputError) as err:
        load_model(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg
    for needle in needles:
        assert needle in msg, msg


def test_missing_file(tmp_path):
    _assert_bad(tmp_path / "nope.pt", "does not exist")
    _assert_bad(tmp_path, "is not a file")


def test_corrupt_truncated_file(tmp_path):
    good = tmp_path / "good.pt"
    save_model(good, build_model("fsrcnn", 2, d=8, s=4, m=1))
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _assert_bad(bad, "damaged (corrupt or truncated)")


def test_not_a_torch_file(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("hello, I am a text file\n")
    _assert_bad(bad, "is not a torch file")


def test_plain_state_dict(tmp_path):
    bad = tmp_path / "sd.pth"
    torch.save(build_model("fsrcnn", 2).state_dict(), bad)
    _assert_bad(bad, "not an srprune model file", "plain state_dict")


def test_foreign_checkpoint(tmp_path):
    bad = tmp_path / "ckpt.pth"
    torch.save({"params": build_model("espcn", 2).state_dict(), "epoch": 7}, bad)
    _assert_bad(bad, "not an srprune model file", "params, epoch")


def test_pickled_module_is_refused(tmp_path):
    bad = tmp_path / "module.pt"
    torch.save(nn.Conv2d(3, 3, 3), bad)  # a full pickled class, as careless checkpoints do
    _assert_bad(bad, "pickled Python objects (torch.nn.modules.conv.Conv2d)")
    # and the raw pickle really is unsafe to load, which is why we refuse it
    with pytest.raises(pickle.UnpicklingError):
        torch.load(bad, weights_only=True)


def test_newer_version(tmp_path):
    obj = _good(tmp_path)
    obj["version"] = 2
    torch.save(obj, tmp_path / "v2.pt")
    _assert_bad(tmp_path / "v2.pt", "version 2", "up to version 1")


def test_bad_arch(tmp_path):
    obj = _good(tmp_path)
    obj["arch"] = {"name": "nosuchnet", "scale": 2, "config": {}}
    torch.save(obj, tmp_path / "arch.pt")
    _assert_bad(tmp_path / "arch.pt", "unknown architecture 'nosuchnet'")
    obj["arch"] = {"name": "fsrcnn", "scale": 2, "config": {"d": 8, "s": 4, "m": 1, "bogus": 1}}
    torch.save(obj, tmp_path / "cfg.pt")
    _assert_bad(tmp_path / "cfg.pt", "has no setting 'bogus'")
    obj["arch"] = "fsrcnn"
    torch.save(obj, tmp_path / "str.pt")
    _assert_bad(tmp_path / "str.pt", "'arch' must be a dict")


def test_state_dict_not_matching_arch(tmp_path):
    obj = _good(tmp_path)
    obj["arch"]["config"]["d"] = 12  # the weights are for d=8
    torch.save(obj, tmp_path / "shape.pt")
    _assert_bad(tmp_path / "shape.pt", "weights do not match architecture fsrcnn x2", "wrong shape",
                "feature.0.weight (8, 3, 5, 5) vs (12, 3, 5, 5)")
    obj = _good(tmp_path)
    del obj["state_dict"]["deconv.bias"]
    obj["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(obj, tmp_path / "keys.pt")
    _assert_bad(tmp_path / "keys.pt", "missing: deconv.bias", "unexpected: extra.weight")
