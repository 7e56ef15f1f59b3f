"""srprune: compiler-aware search, pruning and deployment of real-time SR networks."""

__version__ = "0.1.0"
