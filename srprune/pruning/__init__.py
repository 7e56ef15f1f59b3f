"""Pruning schemes (channel, block, pattern, unstructured), their masks, fine-tuning and export.

- `spec`: the per-layer spec format (see its docstring), `load_spec`, `parse_spec`.
- `layers.prunable_layers(model)`: the convs a spec can name (deployed model, module names).
- `schemes`: mask functions and the compiler export `block_structure` / `pattern_structure`.
- `pruner.Pruner`: masks of one model under one spec; `finalize()` compacts pruned channels.
- `finetune`: gradual pruning + fine-tuning with masks re-applied after every step.
- `run.prune_model` / `prune_model_file`: the whole flow behind `srprune prune`.

The "channel_pruned" architecture that `Pruner.finalize()` produces lives with the other architectures
(srprune.models.channel_pruned): pruning depends on models, never the reverse.
"""

from srprune.pruning.finetune import FinetuneConfig, finetune
from srprune.pruning.layers import LayerInfo, format_layers, prunable_layers
from srprune.pruning.pruner import Pruner
from srprune.pruning.run import prune_model, prune_model_file
from srprune.pruning.schemes import (block_mask, block_structure, pattern_mask, pattern_structure,
                                     unstructured_mask)
from srprune.pruning.spec import SCHEMES, LayerSpec, PruneSpec, load_spec, parse_spec

__all__ = [
    "FinetuneConfig", "LayerInfo", "LayerSpec", "PruneSpec", "Pruner", "SCHEMES", "block_mask",
    "block_structure", "finetune", "format_layers", "load_spec", "parse_spec", "pattern_mask",
    "pattern_structure", "prunable_layers", "prune_model", "prune_model_file", "unstructured_mask",
]
