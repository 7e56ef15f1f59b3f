"""Supernet, extraction and re-parameterisation: equalities per block type and scale, complexity counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from supernet.blocks import bicubic_kernel
from supernet.complexity import genome_macs, genome_params
from supernet.errors import SpaceError
from supernet.model import SuperNet
from supernet.space import BLOCKS, Cell, Genome, SearchSpace
from supernet.standalone import GenomeNet, build_genome_net, extract

REAL_BLOCKS = ("conv", "res", "wide", "ecb", "dws")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _space(act: str = "prelu") -> SearchSpace:
    return SearchSpace(num_cells=3, widths=(4, 8, 12), scales=(2, 3, 4), activation=act, min_depth=0)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Weights far from their init (ECB edge scales ~0.3, not 1e-3), so every branch matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _one_block_genome(space: SearchSpace, block: str, scale: int) -> Genome:
    """Three cells of `block` whose widths go up, down and stay (exercises the partial skips)."""
    widths = [8, 12, 4]
    cells = []
    for i, w in enumerate(widths):
        layers = [space.layer_choices(block, j)[(i + j) % 3] for j in range(BLOCKS[block])]
        cells.append(Cell(block, w, layers))
    return Genome(scale, 8, space.activation, cells).validate(space)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("block", REAL_BLOCKS)
def test_extraction_and_reparam_equal(block, scale):
    space = _space()
    torch.manual_seed(0)
    net = SuperNet(space)
    _randomise(net, seed=scale)
    genome = _one_block_genome(space, block, scale)
    x = torch.rand(2, 3, 11, 13, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(x, genome)
        model, state = extract(net, genome)
        out = model(x)
        deployed = model.deploy()
        dep = deployed(x)
    assert ref.shape == (2, 3, 11 * scale, 13 * scale)
    assert ref.abs().max() > 0.5  # not a vanishing signal that would make the bounds trivial
    assert (out - ref).abs().max().item() <= 1e-5
    assert (dep - out).abs().max().item() <= 1e-4
    # the deployed form is made of plain convs only: no ECB branches left
    assert all(type(m).__name__ in {"GenomeNet", "ModuleList", "PlainBlock", "Conv2d", "PReLU", "ReLU", "Identity"}
               for m in deployed.modules())
    assert all(c.block == ("plain" if block in ("conv", "ecb") else block) for c in deployed.cells)
    if block == "ecb":
        assert not any(k.endswith("_s") for k in deployed.state_dict())
    # the standalone network rebuilds from plain data alone (what a model file stores)
    fresh = build_genome_net(scale, genome.to_dict())
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x), out)


def test_reparam_is_not_trivial_for_ecb():
    """The ECB's extra branches change the output, so the fused conv really carries them."""
    space = _space()
    torch.manual_seed(0)
    net = SuperNet(space)
    _randomise(net, seed=5)
    genome = _one_block_genome(space, "ecb", 2)
    conv_genome = Genome(2, 8, space.activation, [Cell("conv", c.width, []) for c in genome.cells])
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        a, b = net(x, genome), net(x, conv_genome)  # shared main branch, so they differ by the extra branches
    assert (a - b).abs().max() > 1e-2


def test_relu_space_and_mixed_genomes():
    space = _space("relu")
    torch.manual_seed(1)
    net = SuperNet(space)
    _randomise(net, seed=9)
    rng = np.random.default_rng(3)
    x = torch.rand(1, 3, 8, 10)
    for _ in range(10):
        g = space.sample(rng, scale=int(rng.choice([2, 3, 4])))
        with torch.no_grad():
            model, _ = extract(net, g)
            out = model(x)
            assert (out - net(x, g)).abs().max() <= 1e-5
            assert (model.deploy()(x) - out).abs().max() <= 1e-4


def test_weights_are_shared_across_widths_and_blocks():
    """A narrow sub-network's weights are the leading slice of the wide one's; conv and ECB share the 3x3."""
    space = _space()
    net = SuperNet(space)
    wide = Genome(2, 12, "prelu", [Cell("conv", 12, []), Cell("skip", 0, []), Cell("skip", 0, [])])
    narrow = Genome(2, 4, "prelu", [Cell("ecb", 8, [8]), Cell("skip", 0, []), Cell("skip", 0, [])])
    sw, sn = net.export_state(wide), net.export_state(narrow)
    assert torch.equal(sn["cells.0.conv_w"], sw["cells.0.conv_w"][:8, :4])
    assert torch.equal(sn["head_w"], sw["head_w"][:4])
    assert net.cells[0].blocks["ecb"].conv_w is net.cells[0].blocks["conv"].conv_w


def test_bicubic_skip_matches_matlab_imresize():
    """With the tail at zero the network is the fixed bicubic x s upsampler (MATLAB's, a = -0.5)."""
    from skimage import data

    from srprune.imresize import imresize

    img = data.astronaut()[100:140, 200:248].astype(np.float64) / 255.0
    for s in (2, 3, 4):
        net = GenomeNet(Genome(s, 4, "relu", [Cell("conv", 4, [])]))
        with torch.no_grad():
            net.tail.weight.zero_()
            net.tail.bias.zero_()
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
            out = net(x)[0].permute(1, 2, 0).double().numpy()
        ref = imresize(img, scale=s)
        b = 2 * s  # the border differs (edge replication vs MATLAB's mirror); compare the interior
        assert np.abs(out[b:-b, b:-b] - ref[b:-b, b:-b]).max() < 1e-5
        assert np.allclose(bicubic_kernel(s).view(3, s * s, 25).sum(-1), 1.0)


@pytest.mark.parametrize("scale", [2, 3])
def test_macs_and_params_match_counted(scale):
    """Analytic counts vs PyTorch's FlopCounterMode (2 FLOPs per MAC) and the parameter tensors."""
    space = SearchSpace(num_cells=4, widths=(8, 16, 24), scales=(2, 3), activation="prelu", min_depth=0)
    rng = np.random.default_rng(scale)
    genomes = [space.largest(scale), space.smallest(scale)] + [space.sample(rng, scale) for _ in range(6)]
    genomes.append(Genome(scale, 16, "prelu", [Cell(b, 16, [space.layer_choices(b, j)[1] for j in range(BLOCKS[b])])
                                               for b in ("wide", "ecb", "dws", "res")]))
    h, w = 12 * scale, 20 * scale
    for g in genomes:
        for deployed in (True, False):
            net = GenomeNet(g)
            if deployed:
                net = net.deploy()
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                net(torch.rand(1, 3, h // scale, w // scale))
            assert counter.get_total_flops() == 2 * genome_macs(g, out_hw=(h, w), deployed=deployed), g
            learnable = sum(p.numel() for p in net.parameters())
            assert learnable == genome_params(g, deployed=deployed)


def test_macs_at_720p_by_hand():
    """One conv cell, x2: head 3*8*9 + cell 8*8*9 + tail 8*12*9 + skip 12*25 MACs per LR pixel of 360x640."""
    g = Genome(2, 8, "relu", [Cell("conv", 8, [])])
    per_px = 3 * 8 * 9 + 8 * 8 * 9 + 8 * 12 * 9 + 12 * 25
    assert genome_macs(g) == per_px * 360 * 640
    assert genome_params(g) == (3 * 8 * 9 + 8) + (8 * 8 * 9 + 8) + (8 * 12 * 9 + 12)


def test_forward_rejects_bad_genome_and_scale():
    net = SuperNet(SearchSpace(num_cells=2, widths=(4, 8), scales=(2,)))
    g = net.space.largest(2).to_dict()
    g["scale"] = 3
    with pytest.raises(SpaceError, match="genome.scale"):
        net(torch.rand(1, 3, 8, 8), g)
    g = net.space.largest(2).to_dict()
    g["cells"].append({"block": "conv", "width": 8, "layers": []})
    with pytest.raises(SpaceError, match="genome.cells"):
        net(torch.rand(1, 3, 8, 8), g)
    with pytest.raises(SpaceError, match="scale"):
        build_genome_net(4, net.space.largest(2).to_dict())
