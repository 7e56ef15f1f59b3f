"""What long work tells the user while it runs: progress bars that stay readable in logs (live on a terminal,
one redraw every 30 s otherwise: CI, nohup) and one-line status notes.

Library code reports through here, never through click (only srprune/cli knows the command line). Here rather
than in srprune because the one training loop (srcommon.training) draws bars for supernet training too, and
supernet must not import srprune.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class _LogBar(tqdm):
    """A bar for logs: postfix updates (loss, PSNR) wait for the next timed redraw instead of forcing one."""

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs: Any) -> None:  # noqa: D102
        super().set_postfix(ordered_dict, refresh=False, **kwargs)


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """A tqdm bar (rate and ETA included); redraws rarely when stderr is not a terminal (CI, nohup)."""
    kwargs.setdefault("dynamic_ncols", True)
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
        return _LogBar(*args, **kwargs)
    return tqdm(*args, **kwargs)


def note(message: str, stdout: bool = False) -> None:
    """One status line for the user: stderr (notes, stage progress) or stdout (a command's results)."""
    stream = sys.stdout if stdout else sys.stderr
    print(message, file=stream, flush=True)
