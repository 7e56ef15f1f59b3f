"""The three-stage compiler-aware search and the `srprune run` pipeline (see docs/architecture.md, "search").

Stages, each a module that reads and writes the run folder: latency (layer table on the target),
supernet (stage 1), arch (stage 2: block + width per cell, pruning scheme per layer), ratios
(stage 3: pruning ratio per layer), finetune (extract, prune, distil), compile (compile, check,
measure), evaluate, report. `pipeline` runs them in order and skips those whose inputs are unchanged.
"""
