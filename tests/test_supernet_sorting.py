"""Channel sorting: the widest network's function is unchanged, the order is by importance, Adam follows."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from supernet.model import SuperNet
from supernet.sorting import TRUNK, apply_permutation, channel_importance, channel_order, sort_channels
from supernet.space import BLOCKS, Cell, Genome, SearchSpace

REAL_BLOCKS = ("conv", "res", "wide", "ecb", "dws")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _space(act: str, blocks: tuple[str, ...] = REAL_BLOCKS + ("skip",)) -> SearchSpace:
    return SearchSpace(num_cells=3, widths=(4, 8, 12), blocks=blocks, scales=(2, 3), activation=act, min_depth=0)


def _randomised_net(space: SearchSpace, seed: int = 0) -> SuperNet:
    """Weights far from their init (every channel different, ECB edge scales ~0.3), output scale ~1."""
    torch.manual_seed(seed)
    net = SuperNet(space)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net


def _widest(space: SearchSpace, block: str, scale: int) -> Genome:
    """Every cell `block` at the widest trunk and inner widths: every tensor of that block is used whole."""
    layers = [max(space.layer_choices(block, i)) for i in range(BLOCKS[block])]
    return Genome(scale, space.max_width, space.activation,
                  [Cell(block, space.max_width, list(layers)) for _ in range(space.num_cells)]).validate(space)


@pytest.mark.parametrize("act", ["prelu", "relu"])
@pytest.mark.parametrize("block", REAL_BLOCKS)
def test_sort_keeps_the_widest_network_and_moves_channels(block, act):
    space = _space(act)
    net = _randomised_net(space)
    x = torch.rand(1, 3, 11, 9, generator=torch.Generator().manual_seed(5))
    genomes = [_widest(space, block, 2), _widest(space, block, 3), space.largest(2)]
    narrow = Genome(2, 4, act, [Cell("skip", 0, []), Cell("skip", 0, []), Cell("skip", 0, [])])
    with torch.no_grad():
        before = [net(x, g) for g in genomes]
        narrow_before = net(x, narrow)
        perms = sort_channels(net)
        after = [net(x, g) for g in genomes]
    for g, a, b in zip(genomes, before, after):
        assert (a - b).abs().max() <= 1e-5 * max(1.0, float(a.abs().max())), g.to_json()
    # the sort did something: the trunk order changed, so a 4-channel network now sees other channels
    assert not torch.equal(perms[TRUNK], torch.arange(space.max_width))
    with torch.no_grad():
        assert (net(x, narrow) - narrow_before).abs().max() > 1e-4
    # inner layers of the block got their own permutations (one per cell)
    inner = [k for k in perms if k.startswith("cells.") and f".{block}." in k]
    assert len(inner) == 3 * BLOCKS[block]


def test_importance_is_equivariant_and_sorted_after_the_sort():
    """Permuting channels permutes their importance; after the sort every group is non-increasing."""
    net = _randomised_net(_space("prelu"), seed=3)
    before = channel_importance(net)
    perms = sort_channels(net)
    after = channel_importance(net)
    assert set(before) == set(after) == set(perms)
    for group, imp in after.items():
        assert torch.allclose(imp, before[group][perms[group]], rtol=1e-9, atol=1e-12), group
        assert bool((imp[:-1] >= imp[1:]).all()), group
    # sorting a sorted network changes nothing
    again = channel_order(net)
    assert all(torch.equal(p, torch.arange(len(p))) for p in again.values())


def test_trunk_importance_counts_the_head_by_hand():
    """With every other trunk reader and writer zeroed, the order is that of the head filters' L1 norms."""
    space = _space("relu", blocks=("conv",))
    net = _randomised_net(space, seed=4)
    with torch.no_grad():
        for cell in net.cells:
            cell.blocks["conv"].conv_w.zero_()
        for s in space.scales:
            net.tails[f"w{s}"].zero_()
    norms = net.head_w.detach().abs().sum(dim=(1, 2, 3))
    assert torch.equal(channel_order(net)[TRUNK], torch.argsort(norms, descending=True, stable=True))


def test_adam_moments_follow_the_weights():
    """sort, then a step == a step, then the same permutation (Adam is elementwise; the widest loss is invariant)."""
    space = _space("prelu", blocks=("res", "wide", "ecb"))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 16, 16, generator=gen)
    big = space.largest(2)
    net_a = _randomised_net(space, seed=7)
    opt_a = torch.optim.Adam(net_a.parameters(), lr=1e-2)
    for _ in range(2):  # non-trivial moments
        opt_a.zero_grad()
        F.l1_loss(net_a(x, big), y).backward()
        opt_a.step()
    net_b = copy.deepcopy(net_a)
    opt_b = torch.optim.Adam(net_b.parameters(), lr=1e-2)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # load_state_dict would share the moments

    perms = sort_channels(net_a, opt_a)
    for net, opt in ((net_a, opt_a), (net_b, opt_b)):
        opt.zero_grad()
        F.l1_loss(net(x, big), y).backward()
        opt.step()
    apply_permutation(net_b, perms)
    for (name, a), (_, b) in zip(net_a.named_parameters(), net_b.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
