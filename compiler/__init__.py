"""torch -> TVM Relax compilation for named targets, kernels, latency measurement.

Must not import `srprune` or `supernet` (dependencies point one way, see DESIGN.md).
"""
