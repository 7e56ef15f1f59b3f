"""The weight-sharing supernet: search space, elastic layers, training, extraction.

Must not import `srprune` or `compiler` (dependencies point one way, see DESIGN.md).

- `space`: `SearchSpace`, `Genome` (plain data, JSON round trip, validation, sampling)
- `blocks`: the block-type registry (`BLOCK_TYPES`: one module per type knows its layers, forward, folding, costs
  and deployed convs); the bicubic skip kernel
- `model`: `SuperNet` (shared weights, `forward(x, genome)`, `export_state`)
- `standalone`: `GenomeNet` (plain layers, `deploy()`), `build_genome_net`, `extract`
- `complexity`: `genome_params`, `genome_macs` (analytic)
- `proxy`: `proxy_psnr`, `psnr_y` (srcommon's protocol PSNR-Y)
- `settings`: `TrainSettings` (the one typed, self-validating shape of the training settings)
- `sorting`: `sort_channels` (channels ordered by importance; the widest network's function unchanged)
- `train`: `train_supernet` (sandwich rule, in-place distillation, exact resume, torchrun; srcommon's loop)
"""

from supernet.complexity import genome_macs, genome_params
from supernet.errors import CheckpointError, SpaceError
from supernet.model import SuperNet
from supernet.sorting import sort_channels
from supernet.space import BLOCKS, Cell, Genome, SearchSpace
from supernet.standalone import GenomeNet, build_genome_net, extract

__all__ = ["BLOCKS", "Cell", "CheckpointError", "Genome", "GenomeNet", "SearchSpace", "SpaceError", "SuperNet",
           "build_genome_net", "extract", "genome_macs", "genome_params", "sort_channels"]
