"""Every conv of every reference model, supernet block type and activation lands in one of our kernels.

Issue 18: no layer may fall back to TVM's default lowering (naive scalar loops for a conv; a separate op, with
one libm call per element, for an activation). Each network is lowered to the conv rewrite and its `main` must hold
no conv and no activation op, with one kernel call per conv of the PyTorch model; then it is compiled for the host
and must equal PyTorch (max |diff| <= 1e-4 on random inputs in [0, 1]).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from compiler.build import compile_model, reference_output
from compiler.pipeline import Phase, lower

TOL = 1e-4
SHAPE = (1, 3, 8, 13)
# Relax ops that would mean a conv or an activation ran outside our kernels (clip stays allowed: the genome
# networks' replicate padding clips indices; the activation networks must be kernel calls only)
FORBIDDEN = {"nn.conv2d", "nn.conv2d_transpose", "nn.relu", "nn.prelu", "nn.leakyrelu", "tanh", "sigmoid", "nn.silu",
             "nn.gelu", "nn.gelu_tanh", "where", "maximum"}


class _Apply(nn.Module):
    """A functional activation as a module (torch.export sees the function call)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


ACTIVATIONS = {
    "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(), "leaky_relu": nn.LeakyReLU(0.2), "silu": nn.SiLU(),
    "hardswish": nn.Hardswish(), "gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh"),
    "F.leaky_relu": _Apply(lambda x: F.leaky_relu(x, 0.05)), "F.silu": _Apply(F.silu),
    "x*sigmoid(x)": _Apply(lambda x: x * torch.sigmoid(x)), "F.hardswish": _Apply(F.hardswish),
    "F.gelu": _Apply(F.gelu), "torch.tanh": _Apply(torch.tanh),
}


def activation_net(act: nn.Module) -> nn.Module:
    """head (bias) -> act -> body (no bias) -> act + residual -> tail with PixelShuffle: every fused form."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Conv2d(3, 8, 3, padding=1)
            self.body = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.tail = nn.Conv2d(8, 12, 3, padding=1)
            self.act = act

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.act(self.head(x))
            return F.pixel_shuffle(self.tail(self.act(self.body(h)) + h), 2)

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():  # pre-activations over [-4, 4]: both tails of every function matter
        net.head.weight.mul_(4.0)
    return net


def _reference(name: str, scale: int = 2) -> nn.Module:
    from srprune.models import build_model, deploy

    torch.manual_seed(1)
    return deploy(build_model(name, scale)).eval()


def _genome(activation: str) -> nn.Module:
    """A deployed genome network with every searchable supernet block type."""
    from srprune.models import build_model, deploy
    from supernet.blocks import BLOCKS
    from supernet.space import Cell, Genome

    layers = {"conv": [], "dws": [], "res": [12], "ecb": [16], "wide": [16, 8]}
    assert set(BLOCKS) - {"skip"} == set(layers), "a new block type: add it here"
    cells = [Cell(block, 8, layers[block]) for block in layers]
    torch.manual_seed(2)
    return deploy(build_model("genome", 2, genome=Genome(2, 8, activation, cells).to_dict())).eval()


NETWORKS = {
    "fsrcnn": lambda: _reference("fsrcnn"),
    "espcn": lambda: _reference("espcn", 3),  # tanh
    "ecbsr": lambda: _reference("ecbsr"),
    "genome-relu": lambda: _genome("relu"),
    "genome-prelu": lambda: _genome("prelu"),
    **{f"act-{name}": (lambda a=act: activation_net(a)) for name, act in ACTIVATIONS.items()},
}


def _convs(model: nn.Module) -> int:
    return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_conv_and_activation_runs_in_our_kernels(name: str) -> None:
    model = NETWORKS[name]()
    mod, fused = lower(model, SHAPE, "host", stop_after=Phase.IMPORT_AND_REWRITE)
    ops = {line.split("= R.")[1].split("(")[0] for line in mod["main"].script().splitlines() if "= R." in line}
    assert not ops & FORBIDDEN, ops
    if name.startswith("act-"):
        assert ops == {"call_tir"}, ops  # activation, residual add and PixelShuffle all inside the kernels
    assert fused == _convs(model)
    compiled = compile_model(model, SHAPE, "host")
    x = np.random.default_rng(3).random(SHAPE, dtype=np.float32)
    np.testing.assert_allclose(compiled.run(x), reference_output(model, x), atol=TOL, rtol=0)
