"""Output paths checked at a command's edge, before any work.

Why here and not at the write: a command that trains for an hour and then finds its output under
a file, in /proc or on a read-only mount has wasted the hour. These checks only look (and probe
with an anonymous temporary file that leaves no trace); nothing is created. Whatever still fails
at the write (a full disk, a race) is an OSError that srprune.cli.main turns into one line.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from srprune.errors import InputError


def nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists (what a mkdir -p would start from)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_location(path: str | os.PathLike) -> None:
    """Refuse `path` if it could never be created: under a file, or in a folder we cannot write."""
    path = Path(path)
    base = nearest_existing(path if path.is_dir() else path.parent)
    if base.exists() and not base.is_dir():
        raise InputError(f"{path}: cannot be written, {base} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as e:
        raise InputError(f"{path}: cannot write in {base} ({e.strerror or e})") from None


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """An existing output file is replaced only with `force`; a folder never by a file (the atomic writers
    themselves are srcommon.atomic's)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a file")
    if path.exists() and not force:
        raise InputError(f"{path} already exists (use --force to overwrite)")
    return path


def check_output_file(path: str | os.PathLike, force: bool) -> Path:
    """An output file: not a folder, not an existing file unless `force`, in a writable place."""
    path = check_writable(path, force)
    check_location(path)
    return path


def check_output_folder(path: str | os.PathLike) -> Path:
    """An output folder: a folder or nothing yet (not a file), in a writable place."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: is a file, not a folder")
    check_location(path)
    return path
