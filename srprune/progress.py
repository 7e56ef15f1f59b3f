"""Progress bars that stay readable in logs: live on a terminal, a line every 30 s otherwise."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """A tqdm bar (rate and ETA included); redraws rarely when stderr is not a terminal (CI, nohup)."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(*args, **kwargs)
