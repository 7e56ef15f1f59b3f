"""A dense winner is fine-tuned through the pruner with a ratio-0 mask on one layer: that layer must be one the
pruner knows. A dws cell's first conv is depthwise, which it does not (configs/android-estimate.yaml's search picked
such a winner on 2026-12-07 and the finetune stage stopped with 'not a prunable conv')."""

from __future__ import annotations

import torch


def test_dense_winner_spec_names_a_layer_the_pruner_takes():
    from srprune.pruning.pruner import Pruner
    from srprune.search.candidate import extract_deployed
    from srprune.search.stages.finetune import dense_finetune_spec
    from supernet.model import SuperNet
    from supernet.space import Cell, Genome, SearchSpace

    space = SearchSpace.from_dict({"num_cells": 2, "widths": [8, 16], "blocks": ["dws", "conv", "skip"],
                                   "scales": [2]})
    torch.manual_seed(0)
    model = extract_deployed(SuperNet(space).eval(), Genome(2, 16, "relu", [Cell("dws", 16, []), Cell("conv", 8, [])]))
    convs = [(n, m.groups) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and n != "head"]
    assert convs[0][1] > 1  # the first conv after the head is the depthwise one: what the stage used to pick
    spec = dense_finetune_spec(model)
    (name,) = spec["layers"]
    assert name == next(n for n, g in convs if g == 1) and spec["layers"][name]["ratio"] == 0.0
    Pruner(model, spec)  # accepted: raises InputError for a layer it does not know
