"""What long work tells the user while it runs: progress bars that stay readable in logs (live on a terminal, a
line every 30 s otherwise) and one-line status notes (the bars themselves live in srcommon.progress, which supernet
training shares). Library code reports through here, never through click
(only srprune/cli knows about the command line)."""

from __future__ import annotations

import sys

from srcommon.progress import progress_bar

__all__ = ["note", "progress_bar"]


def note(message: str, stdout: bool = False) -> None:
    """One status line for the user: stderr (notes, stage progress) or stdout (a command's results)."""
    stream = sys.stdout if stdout else sys.stderr
    print(message, file=stream, flush=True)
