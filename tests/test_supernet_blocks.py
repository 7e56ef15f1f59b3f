"""The block registry (supernet.blocks): the one place that lists block types and knows each one.

Checks that nothing else in supernet names a block type, that the costs and layer choices the entries
give are the ones the code had before the registry, that `deployed_convs` is exactly what
srprune.latency's `_cell_layers` computed by hand before it asked the registry, and that a block type added to the table alone works end
to end (supernet, extraction, deployment, costs).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from supernet.blocks import (
    BLOCK_TYPES,
    BLOCKS,
    DEFAULT_BLOCKS,
    PARAM_ROLES,
    SKIP,
    BlockType,
    DeployedConv,
    activate,
    block_macs_per_pixel,
    block_params,
    block_type,
    deployed_convs,
    deployed_kernel_sizes,
)
from supernet.complexity import genome_macs, genome_params
from supernet.errors import SpaceError
from supernet.model import SuperNet
from supernet.space import BLOCKS as SPACE_BLOCKS
from supernet.space import Cell, Genome, SearchSpace
from supernet.standalone import GenomeNet, extract
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WIDTHS = [(8, 8, [16]), (8, 16, [32]), (24, 8, [48]), (16, 12, [8])]  # cin, width, a first inner layer


def _layers(block: str, base: list[int]) -> list[int]:
    return (base * 2)[: BLOCK_TYPES[block].inner] if block in BLOCK_TYPES else []


def test_the_registry_is_the_only_list_of_block_names():
    assert SPACE_BLOCKS is BLOCKS
    assert BLOCKS == {n: b.inner for n, b in BLOCK_TYPES.items() if b.searchable}
    assert list(BLOCKS) == ["conv", "res", "wide", "ecb", "dws", "skip"]  # order: default space, messages
    assert SearchSpace().blocks == DEFAULT_BLOCKS == tuple(BLOCKS)
    assert set(PARAM_ROLES) == set(BLOCK_TYPES) and SKIP in BLOCKS
    for name, entry in BLOCK_TYPES.items():
        assert entry.name == name and isinstance(entry, BlockType)
        assert entry.deploys_to is None or entry.deploys_to is BLOCK_TYPES[entry.deploys_to.name]
    # no module of supernet outside the blocks package names a block type in a string literal
    names = set(BLOCK_TYPES)
    found = []
    for path in sorted((ROOT / "supernet").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert found == []


def test_unknown_block_is_a_space_error():
    with pytest.raises(SpaceError, match="unknown block type 'attention'"):
        block_type("attention")


def _old_macs(block: str, cin: int, width: int, layers: list[int], deployed: bool) -> int:
    """supernet.blocks.block_macs_per_pixel before the registry (the reference the entries must reproduce)."""
    if block == "skip":
        return 0
    if block in ("conv", "plain") or (block == "ecb" and deployed):
        return cin * width * 9
    if block == "res":
        return cin * layers[0] * 9 + layers[0] * width * 9
    if block == "wide":
        return cin * layers[0] + layers[0] * layers[1] + layers[1] * width * 9
    if block == "dws":
        return cin * 9 + cin * width
    m = layers[0]
    return cin * width * 9 + cin * m + m * width * 9 + 3 * (cin * width + width * 9)


def _old_params(block: str, cin: int, width: int, layers: list[int], act: str, deployed: bool) -> int:
    """Hand counts of each block's learnable values (biases and PReLU slopes included)."""
    a = width if act == "prelu" else 0
    if block == "skip":
        return 0
    if block in ("conv", "plain") or (block == "ecb" and deployed):
        return cin * width * 9 + width + a
    if block == "res":
        m = layers[0]
        return cin * m * 9 + m + (m if act == "prelu" else 0) + m * width * 9 + width
    if block == "wide":
        e, r = layers
        return cin * e + e + (e if act == "prelu" else 0) + e * r + r + r * width * 9 + width
    if block == "dws":
        return cin * 9 + cin + cin * width + width + a
    m = layers[0]
    return cin * width * 9 + width + cin * m + m + m * width * 9 + width + 3 * (cin * width + 3 * width) + a


@pytest.mark.parametrize("block", list(BLOCK_TYPES))
def test_costs_and_layer_choices_as_before(block):
    for (cin, width, base), deployed, act in itertools.product(WIDTHS, (True, False), ("relu", "prelu")):
        layers = [base[0], base[0] // 2][: BLOCK_TYPES[block].inner]
        assert block_macs_per_pixel(block, cin, width, layers, deployed) == _old_macs(block, cin, width, layers,
                                                                                      deployed)
        assert block_params(block, cin, width, layers, act, deployed) == _old_params(block, cin, width, layers, act,
                                                                                     deployed)
    space = SearchSpace(widths=(8, 16), wide_expand=3, ecb_expand=2)
    old = {("wide", 0): (24, 48), ("ecb", 0): (16, 32)}
    for i in range(BLOCK_TYPES[block].inner):
        assert space.layer_choices(block, i) == old.get((block, i), (8, 16))


def _cell_layers_by_hand(block: str, cin: int, width: int, layers: list[int], act: str,
                         hw: tuple[int, int], prefix: str, prune: dict[str, dict]) -> Iterator:
    """The latency model's mapping as it was written by hand before the registry (srprune/latency/layers.py's
    docstring table): the independent reference the registry's deployed_convs must reproduce."""
    from compiler.latency.config import LayerConfig
    from srprune.latency.layers import _conv

    def p(name: str) -> dict | None:
        return prune.get(f"{prefix}.{name}")

    if block == "skip":
        return
    adapter = [(f"{prefix}.skip", LayerConfig("adapter", cin, width, hw[0], hw[1], k=1, pad=0, bias=False))] \
        if cin != width else []
    if block in ("conv", "ecb", "plain"):
        yield f"{prefix}.conv", _conv(cin, width, hw, act=act, prune=p("conv"))
    elif block == "res":
        yield f"{prefix}.c1", _conv(cin, layers[0], hw, act=act, prune=p("c1"))
        yield from adapter
        yield f"{prefix}.c2", _conv(layers[0], width, hw, residual=True, prune=p("c2"))
    elif block == "wide":
        yield f"{prefix}.ex", _conv(cin, layers[0], hw, 1, act=act, prune=p("ex"))
        yield f"{prefix}.rd", _conv(layers[0], layers[1], hw, 1, prune=p("rd"))
        yield from adapter
        yield f"{prefix}.c3", _conv(layers[1], width, hw, residual=True, prune=p("c3"))
    elif block == "dws":
        yield f"{prefix}.dw", _conv(cin, cin, hw, groups=cin, prune=p("dw"))
        yield from adapter
        yield f"{prefix}.pw", _conv(cin, width, hw, 1, act=act, residual=True, prune=p("pw"))


@pytest.mark.parametrize("block", list(BLOCK_TYPES))
def test_deployed_convs_match_the_latency_model(block):
    from srprune.latency.layers import _cell_layers

    hw = (9, 14)
    for (cin, width, base), act in itertools.product(WIDTHS, ("relu", "prelu")):
        layers = _layers(block, base)
        prune = {f"cells.2.{n}": {"scheme": "block", "ratio": 0.5, "block": (1, 4)}
                 for n in ("conv", "c1", "c2", "ex", "rd", "c3", "dw", "pw")}
        for pr in ({}, prune):
            want = list(_cell_layers_by_hand(block, cin, width, layers, act, hw, "cells.2", pr))
            got = list(_cell_layers(block, cin, width, layers, act, hw, "cells.2", pr))
            assert got == want, (block, cin, width, layers, act)
        convs = deployed_convs(block, cin, width, layers, act)
        assert all(isinstance(c, DeployedConv) for c in convs)
        assert sum(c.macs_per_pixel for c in convs) == block_macs_per_pixel(block, cin, width, layers)


def test_inner_choices_as_the_latency_model_enumerates_them():
    """srprune.latency.space_layers' hand enumeration of 0, 1 or 2 inner layers, in its order."""
    space = SearchSpace(widths=(8, 16, 24), wide_expand=2)
    for block in BLOCKS:
        choices = [space.layer_choices(block, i) for i in range(BLOCKS[block])]
        inner = [[]] if not choices else ([[a] for a in choices[0]] if len(choices) == 1
                                           else [[a, b] for a in choices[0] for b in choices[1]])
        assert space.inner_choices(block) == inner


def test_kernel_sizes_as_the_latency_stage_lists_them():
    """srprune/search/latency_stage.py times 3x3 and, when wide or dws is in the space, 1x1 convs."""
    real = [b for b in BLOCKS if b != SKIP]
    for n in range(1, len(real) + 1):
        for blocks in itertools.combinations(real, n):
            assert deployed_kernel_sizes(blocks + (SKIP,)) == [3] + ([1] if {"wide", "dws"} & set(blocks) else [])


def test_deployed_convs_name_the_deployed_modules():
    """Every conv `deployed_convs` names is an nn.Conv2d of the deployed GenomeNet of that shape."""
    g = Genome(2, 8, "prelu", [Cell("conv", 16, []), Cell("res", 8, [24]), Cell("wide", 12, [32, 8]),
                               Cell("ecb", 12, [24]), Cell("dws", 16, []), Cell("skip", 0, [])])
    net = GenomeNet(g).deploy()
    modules = dict(net.named_modules())
    for i, (cin, c) in enumerate(zip(g.widths_in(), g.cells)):
        for d in deployed_convs(c.block, cin, c.width, c.layers, g.activation):
            if d.kind == "adapter":
                continue
            conv = modules[f"cells.{i}.{d.name}"]
            assert isinstance(conv, nn.Conv2d)
            assert (conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.groups) == \
                (d.cin, d.cout, d.k, d.groups)


class _Conv1x1(BlockType):
    """A toy block type, conv1x1 -> act, defined only here: registering it must be all it takes."""

    name = "c1x1"
    params = {"pw_w": ("w", "cin", 1, 1), "pw_b": ("w",), "act_w": ("w",)}
    in_default_space = False

    def forward(self, x, p, activation):
        return activate(F.conv2d(x, p["pw_w"], p["pw_b"]), activation, p.get("act_w"))

    def module_forward(self, cell, x):
        return cell.act(cell.pw(x))

    def deployed_convs(self, cin, width, layers, activation):
        return [DeployedConv("pw", cin, width, 1, act=activation)]


def test_a_block_type_is_one_registry_entry(monkeypatch):
    entry = _Conv1x1()
    monkeypatch.setitem(BLOCK_TYPES, entry.name, entry)
    monkeypatch.setitem(BLOCKS, entry.name, entry.inner)
    space = SearchSpace(num_cells=2, widths=(4, 8), blocks=("conv", "c1x1", "skip"), activation="prelu",
                        min_depth=1)
    torch.manual_seed(0)
    net = SuperNet(space)
    g = Genome(2, 8, "prelu", [Cell("c1x1", 4, []), Cell("conv", 8, [])]).validate(space)
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        model, _ = extract(net, g)
        assert torch.equal(net(x, g), model(x))
        assert torch.allclose(model(x), model.deploy()(x), atol=1e-6)  # the conv cell folds W + identity
    assert genome_params(g) == sum(p.numel() for p in model.parameters())
    assert genome_macs(g, (12, 14)) == (3 * 8 * 9 + 8 * 4 + 4 * 8 * 9 + 8 * 12 * 9 + 12 * 25) * 6 * 7
