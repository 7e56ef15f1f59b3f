"""Channel pruning: coupled masks across residual adds, exact compaction, and reloadable model files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from srprune.errors import InputError
from srprune.models.modelfile import load_model, save_model
from srprune.models.registry import build_model, is_registered, register
from srprune.pruning.graph import channel_graph
from srprune.pruning.layers import prunable_layers
from srprune.pruning.pruner import Pruner

RESNET = "test_pruning_resnet"


class TinyResNet(nn.Module):
    """head conv -> 2 residual blocks (conv-relu-conv + skip) -> tail conv -> PixelShuffle."""

    def __init__(self, scale: int, width: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.act = nn.PReLU(width)
        self.blocks = nn.ModuleList()
        for _ in range(2):
            self.blocks.append(nn.ModuleDict({"conv1": nn.Conv2d(width, width, 3, padding=1), "relu": nn.ReLU(),
                                              "conv2": nn.Conv2d(width, width, 1)}))
        self.tail = nn.Conv2d(width, 3 * scale * scale, 3, padding=1)
        self.up = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.act(self.head(x))
        for blk in self.blocks:
            h = h + blk["conv2"](blk["relu"](blk["conv1"](h)))
        return self.up(self.tail(h))


if not is_registered(RESNET):
    register(RESNET)(TinyResNet)


def _model(name: str, **cfg) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name, 2, **cfg).eval()
    with torch.no_grad():  # nonzero biases and PReLU slopes, so a wrong slice would show
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_residual_adds_couple_producers():
    model = _model(RESNET)
    graph = channel_graph(model)
    head_group = graph.groups[graph.out_group["head"]]
    assert sorted(head_group.producers) == ["blocks.0.conv2", "blocks.1.conv2", "head"]
    assert sorted(head_group.consumers) == ["blocks.0.conv1", "blocks.1.conv1", "tail"]
    assert head_group.per_channel == ["act"] and head_group.prunable
    layers = prunable_layers(model)
    assert not layers["tail"].channel_prunable and "PixelShuffle" in layers["tail"].reason
    assert layers["blocks.0.conv1"].channel_prunable and layers["blocks.0.conv1"].coupled == ()


def test_residual_compaction_matches_masked_dense(tmp_path):
    model = _model(RESNET)
    x = torch.rand(2, 3, 10, 9)
    pruner = Pruner(model, {"scheme": "channel", "ratio": 0.5})
    pruner.update(1.0)
    masked_out = model(x)
    # Coupled producers lost the same channels: the residual stream's zero channels agree.
    rows = [model.get_submodule(n).weight.detach().reshape(8, -1).abs().sum(1) == 0
            for n in ("head", "blocks.0.conv2", "blocks.1.conv2")]
    assert torch.equal(rows[0], rows[1]) and torch.equal(rows[0], rows[2]) and int(rows[0].sum()) == 4
    small, meta = pruner.finalize()
    assert small.head.out_channels == 4 and small.act.num_parameters == 4
    assert small.blocks[0]["conv1"].weight.shape == (4, 4, 3, 3)
    assert small.tail.weight.shape == (12, 4, 3, 3)
    assert (small(x) - masked_out).abs().max().item() <= 1e-5
    # The compacted net is an ordinary model file that reloads to the same function.
    path = save_model(tmp_path / "small.pt", small, meta={"pruning": meta})
    loaded, info = load_model(path)
    assert info["name"] == "channel_pruned"
    assert (loaded(x) - masked_out).abs().max().item() <= 1e-5


def _check_reference(name: str, cfg: dict, tmp_path) -> None:
    model = _model(name, **cfg)
    dense = sum(p.numel() for p in model.parameters())
    pruner = Pruner(model, {"default": {"scheme": "channel", "ratio": 0.5}})
    pruner.update(1.0)
    x = torch.rand(1, 3, 11, 12)
    masked = model(x)
    small, _ = pruner.finalize()
    assert sum(p.numel() for p in small.parameters()) < 0.5 * dense
    assert (small(x) - masked).abs().max().item() <= 1e-5
    loaded, _ = load_model(save_model(tmp_path / f"{name}.pt", small))
    assert (loaded(x) - masked).abs().max().item() <= 1e-5


def test_espcn_compaction(tmp_path):
    _check_reference("espcn", {}, tmp_path)


def test_fsrcnn_compaction_including_the_deconvolution_input(tmp_path):
    _check_reference("fsrcnn", {"d": 16, "s": 8, "m": 2}, tmp_path)


def test_ecbsr_deployed_compaction(tmp_path):
    _check_reference("ecbsr", {"blocks": 2, "width": 8, "deployed": True}, tmp_path)


def test_channel_then_block_on_the_compacted_consumer():
    model = _model("ecbsr", blocks=1, width=16, deployed=True)
    spec = {"layers": {"body.0.conv": {"scheme": "channel", "ratio": 0.5},
                       "body.1.conv": {"scheme": "block", "ratio": 0.5, "block": [4, 8]}}}
    pruner = Pruner(model, spec)
    pruner.update(1.0)
    x = torch.rand(1, 3, 8, 8)
    masked = model(x)
    small, meta = pruner.finalize()
    w = small.body[1].conv.weight.detach()
    assert tuple(w.shape) == (16, 8, 3, 3)  # 72 columns = 9 blocks of 8
    assert (w == 0).float().mean().item() == 0.5
    assert meta["layers"]["body.1.conv"]["kept_columns_per_row_block"] == [36]
    assert (small(x) - masked).abs().max().item() <= 1e-5


def test_pruning_a_pruned_model_again(tmp_path):
    model = _model("fsrcnn", d=16, s=8, m=2)
    first = Pruner(model, {"scheme": "channel", "ratio": 0.5})
    first.update(1.0)
    small, _ = first.finalize()
    second = Pruner(small, {"scheme": "channel", "ratio": 0.5})
    second.update(1.0)
    x = torch.rand(1, 3, 9, 9)
    masked = small(x)
    smaller, _ = second.finalize()
    shapes = smaller.arch["config"]["shapes"]
    assert smaller.arch["config"]["base"]["name"] == "fsrcnn"  # widths always refer to the original base
    assert shapes["feature.0"] == [4, 3] and shapes["deconv"] == [3, 4] and shapes["shrink.1"] == [2]
    loaded, _ = load_model(save_model(tmp_path / "twice.pt", smaller))
    assert (loaded(x) - masked).abs().max().item() <= 1e-5


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.a(x)
        if h.mean() > 0:  # data-dependent control flow: fx cannot trace it
            h = h * 2
        return self.b(h)


def test_untraceable_models_get_masked_schemes_but_no_channel_pruning():
    model = _Untraceable()
    layers = prunable_layers(model)
    assert not layers["a"].channel_prunable and "torch.fx" in layers["a"].reason
    pruner = Pruner(model, {"scheme": "unstructured", "ratio": 0.5})
    pruner.update(1.0)
    assert (model.a.weight == 0).sum().item() == model.a.weight.numel() // 2
    with pytest.raises(InputError, match="torch.fx"):
        Pruner(_Untraceable(), {"layers": {"a": {"scheme": "channel", "ratio": 0.5}}})
