"""`genome`: a network of the supernet's search space, rebuilt from its genome alone.

Registering it here is what lets a model file written by `srprune supernet extract` (or by the
search) be loaded, evaluated, pruned and compiled like any reference model, with no supernet
checkpoint around: the file stores {"name": "genome", "config": {"genome": {...}}} plus weights.
"""

from __future__ import annotations

from torch import nn

from srprune.models.registry import register
from supernet.standalone import build_genome_net


@register("genome", scales=(2, 3, 4))
def genome(scale: int, genome: dict, deployed: bool = False) -> nn.Module:
    """The standalone GenomeNet of `genome` (whose scale must equal `scale`)."""
    return build_genome_net(scale, genome, deployed=deployed)
