"""Params and MACs of a genome, computed from the genome alone (no network is built).

Counts follow the usual convention: a conv contributes C_out * (C_in / groups) * k * k MACs per
output pixel; biases, activations, skip additions and PixelShuffle cost no MACs. All cells run at
LR resolution, so MACs per frame = MACs per LR pixel * (H_out * W_out) / scale^2 for a stated
output size (720p = 720 x 1280 output). Deployed form (the default) counts ECB cells as the one
conv3x3 they collapse to, which is what runs on the device.
Params are the learnable weights (GenomeNet.parameters()); the fixed bicubic skip kernel
(3 s^2 * 25 values, a buffer) is not one, but its MACs (3 s^2 * 25 per LR pixel) count since it runs.
"""

from __future__ import annotations

from supernet.blocks import block_type
from supernet.space import Genome

HD_720P = (720, 1280)


def genome_macs_per_pixel(genome: Genome | dict, deployed: bool = True) -> int:
    """MACs per LR input pixel of the whole network (head, cells, tail, bicubic skip)."""
    g = Genome.coerce(genome)
    s2 = g.scale * g.scale
    total = 3 * g.head * 9
    for cin, c in zip(g.widths_in(), g.cells):
        total += block_type(c.block).macs_per_pixel(cin, c.width, c.layers, deployed)
    total += g.out_width * 3 * s2 * 9  # tail
    total += 3 * s2 * 25  # fixed bicubic skip (grouped 5x5, one input channel per group)
    return total


def genome_macs(genome: Genome | dict, out_hw: tuple[int, int] = HD_720P, deployed: bool = True) -> int:
    """MACs per frame for an output of `out_hw` = (H, W) pixels (rounded to an integer).

    The training-form ECB runs its 1x1 convs on the 1-pixel padded input (see blocks.ecb.ecb_linear),
    so its count includes that border (its entry's `border_macs`); the deployed form has no such term.
    """
    g = Genome.coerce(genome)
    h, w = out_hw[0] / g.scale, out_hw[1] / g.scale
    total = genome_macs_per_pixel(g, deployed) * h * w
    if not deployed:
        border = (h + 2) * (w + 2) - h * w
        for cin, c in zip(g.widths_in(), g.cells):
            extra = block_type(c.block).border_macs(cin, c.width, c.layers)
            if extra:
                total += extra * border
    return round(total)


def genome_params(genome: Genome | dict, deployed: bool = True) -> int:
    """Learnable parameters of the standalone network (deployed or training form)."""
    g = Genome.coerce(genome)
    total = 3 * g.head * 9 + g.head
    for cin, c in zip(g.widths_in(), g.cells):
        total += block_type(c.block).param_count(cin, c.width, c.layers, g.activation, deployed)
    out = 3 * g.scale * g.scale
    return total + out * g.out_width * 9 + out
