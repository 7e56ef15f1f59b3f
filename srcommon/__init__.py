"""Small pieces that srprune, supernet and compiler need, each with one home: file-system writes, ownership
and locks, progress bars, the protocol's PSNR-Y and the one training loop.

This package sits below the three packages (docs/architecture.md): it imports none of them, so each of
them may use it without breaking the one-way dependency rule.
"""
