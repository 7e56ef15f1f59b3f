"""Gradual pruning + fine-tuning: masks hold after every optimizer step and the target is reached."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from srprune.data import ImagePair, PatchSampler, protocol_lr
from srprune.models.registry import build_model
from srprune.pruning.finetune import FinetuneConfig, finetune
from srprune.pruning.pruner import Pruner, copy_model
from srprune.pruning.run import prune_model
from srprune.pruning.schemes import block_structure, pattern_structure


@pytest.fixture(scope="module")
def sampler_pairs():
    hr = data.astronaut()[100:196, 150:246]
    pairs = [ImagePair("astronaut", hr, protocol_lr(hr, 2))]
    return pairs


def _sampler(pairs):
    return PatchSampler(pairs, 2, patch_size=12, batch_size=2, seed=0)


def _model():
    torch.manual_seed(0)
    return build_model("ecbsr", 2, blocks=1, width=8, deployed=True)


def test_cubic_schedule():
    cfg = FinetuneConfig(steps=20, prune_steps=8, updates=4)
    sched = cfg.schedule()
    assert sorted(sched) == [0, 2, 4, 6]
    assert [sched[k] for k in sorted(sched)] == pytest.approx([1 - 0.75 ** 3, 1 - 0.5 ** 3, 1 - 0.25 ** 3, 1.0])
    assert FinetuneConfig(steps=20, prune_steps=0).schedule() == {0: 1.0}


@pytest.mark.parametrize("spec", [
    {"scheme": "unstructured", "ratio": 0.75},
    {"scheme": "block", "ratio": 0.5, "block": [4, 4]},
    {"scheme": "pattern", "ratio": 0.75, "entries": 4, "patterns": 4},
    {"scheme": "channel", "ratio": 0.5},
])
def test_masks_hold_after_every_step(spec, sampler_pairs):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruner = Pruner(model, spec)
    cfg = FinetuneConfig(steps=8, prune_steps=4, updates=2, batch_size=2, patch_size=12, lr=1e-2)
    seen = []

    def check(step, net):
        params = dict(net.named_parameters())
        for pname, mask in pruner.masks.items():
            assert torch.count_nonzero(params[pname].detach()[~mask]) == 0, (step, pname)
        seen.append(step)

    finetune(pruner, _sampler(sampler_pairs), cfg, on_step=check, progress=False)
    assert seen == list(range(1, 9))
    assert pruner.violations() == 0.0
    # Training did change the kept weights.
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    small, meta = pruner.finalize()
    for name, entry in meta["layers"].items():
        w = small.get_submodule(name).weight.detach()
        if spec["scheme"] == "unstructured":
            assert (w == 0).sum().item() == round(0.75 * w.numel())
        elif spec["scheme"] == "block":
            kept = block_structure(w, (4, 4))
            assert all(len(k) == w[0].numel() // 2 for k in kept)
        elif spec["scheme"] == "pattern":
            info = pattern_structure(w)
            assert len(info["library"]) <= 4
            assert all(bin(b).count("1") == 4 for b in info["library"])
        else:
            assert w.shape[0] == 4


def test_distillation_and_prune_model_keep_the_input_model(sampler_pairs):
    model = _model()
    reference = copy_model(model)
    cfg = FinetuneConfig(steps=4, prune_steps=2, updates=2, batch_size=2, patch_size=12, distill=1.0)
    pruned, meta = prune_model(model, {"scheme": "unstructured", "ratio": 0.5}, cfg, _sampler(sampler_pairs),
                               progress=False)
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    assert meta["finetune"]["distill"] == 1.0 and meta["finetune"]["steps"] == 4
    zeros = sum(int((m.weight == 0).sum()) for m in pruned.modules() if isinstance(m, torch.nn.Conv2d))
    total = sum(m.weight.numel() for m in pruned.modules() if isinstance(m, torch.nn.Conv2d))
    assert zeros / total == pytest.approx(0.5, abs=1e-3)


def test_group_lasso_gradient_is_the_normalised_unit():
    from srprune.pruning.schemes import unit_norms

    w = torch.randn(8, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    unit_norms(w, "block", (4, 6)).sum().backward()
    mat = w.detach().numpy().reshape(8, 36)
    expected = np.empty_like(mat)
    for r in range(0, 8, 4):
        rows = mat[r:r + 4]
        expected[r:r + 4] = rows / np.sqrt((rows ** 2).sum(axis=0, keepdims=True))
    np.testing.assert_allclose(w.grad.numpy().reshape(8, 36), expected, rtol=1e-6)
    # Channel units are output rows; pattern units are kernels.
    assert unit_norms(w.detach(), "channel").shape == (8,)
    assert unit_norms(w.detach(), "pattern").shape == (32,)


def test_group_lasso_shrinks_units_and_masks_still_hold(sampler_pairs):
    norms = {}
    for weight in (0.0, 0.05):
        model = _model()
        pruner = Pruner(model, {"scheme": "block", "ratio": 0.5, "block": [4, 4]})
        cfg = FinetuneConfig(steps=6, prune_steps=6, updates=2, batch_size=2, patch_size=12, lr=1e-2,
                             group_lasso=weight)
        finetune(pruner, _sampler(sampler_pairs), cfg, progress=False)
        assert pruner.violations() == 0.0
        norms[weight] = float(pruner.group_lasso().detach())
    assert norms[0.05] < norms[0.0]
