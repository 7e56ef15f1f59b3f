"""The weight-sharing supernet: search space, elastic layers, training, extraction.

Must not import `srprune` or `compiler` (dependencies point one way, see DESIGN.md).
"""
