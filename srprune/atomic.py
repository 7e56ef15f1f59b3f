"""srprune's rule for single output files: an existing one is replaced only with --force.

The atomic writers themselves live in srcommon.atomic (shared with supernet and compiler).
"""

from __future__ import annotations

import os
from pathlib import Path

from srprune.errors import InputError


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to overwrite an existing output unless `force` is set; never replace a folder by a file."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; name a file to write")
    if path.exists() and not force:
        raise InputError(f"{path} already exists (use --force to overwrite)")
    return path
