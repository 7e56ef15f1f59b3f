"""Small file-system pieces that srprune, supernet and compiler all need.

This package sits below the three packages (docs/architecture.md): it imports none of them, so each of
them may use it without breaking the one-way dependency rule.
"""
