"""srprune's side of the latency model: genomes -> layer configurations, and the run folder's workflows.

- `layers`: a genome / searched model / search space -> the `LayerConfig`s the compiler times;
- `workflow`: RUN/latency/TARGET/: `build_latency_model` (table + pruned kernels + calibration, the one
  build of `srprune run` and `srprune latency build`), `load_predictor`, `validate`, device calibration;
- `stats`: MAPE and Spearman; `plot`: the validation scatter plot.

The compiler's side (configurations, table file, timing back-ends, predictor) is `compiler.latency`;
what the search can prune, and on which weights its kernels are timed, is `srprune.search.latency_stage`.
"""

from srprune.latency.layers import (HD_720P, genome_layers, in_precisions, latency_prune, lr_size, model_layers,
                                    named_genome_layers, space_layers, with_precision)
from srprune.latency.plot import scatter_plot
from srprune.latency.stats import mape, spearman
from srprune.latency.workflow import (DEVICE_BENCH_FORMAT, LatencyBuild, PrunedKernels, build_latency_model,
                                      build_table, calibrate, calibrate_from_device, calibration_path, conv_weights,
                                      device_bench_points, load_predictor, make_runner, measure_networks,
                                      own_layer_builds, random_genomes, random_networks, validate)

__all__ = [
    "DEVICE_BENCH_FORMAT", "HD_720P", "LatencyBuild", "PrunedKernels", "build_latency_model", "build_table",
    "calibrate", "calibrate_from_device", "calibration_path", "conv_weights", "device_bench_points", "genome_layers",
    "in_precisions",
    "latency_prune", "load_predictor", "lr_size", "make_runner", "mape", "measure_networks", "model_layers",
    "named_genome_layers", "own_layer_builds", "random_genomes", "random_networks", "scatter_plot", "space_layers",
    "spearman", "validate", "with_precision",
]
