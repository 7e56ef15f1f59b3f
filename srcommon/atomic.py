"""Atomic file writes: write to a temporary file beside the target, then rename.

A reader (or a killed writer) never sees a half-written checkpoint, image or table: the target either
keeps its old content or has the complete new one. The result gets the mode a plain `open()` would have
given it (the umask's), or the mode of the file it replaces, never mkstemp's private 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


def current_umask() -> int:
    """The process's umask (read from /proc where possible: os.umask would have to change it to read it)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(path: Path, directory: bool = False) -> int:
    """The mode a new file (0666) or folder (0777) gets under the umask; an existing target keeps its own."""
    with contextlib.suppress(OSError):
        return path.stat().st_mode & 0o7777
    return (0o777 if directory else 0o666) & ~current_umask()


def temp_name_prefix(name: str) -> str:
    """The prefix of temporary files made for target `name` (so owners can recognise their leftovers)."""
    return f".{name}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    The temporary name keeps the target's suffix so that writers which pick a format from the extension
    (OpenCV, torch) still do the right thing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_name_prefix(path.name), suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, default_mode(path))  # before the caller writes: a mode it sets itself wins
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing; it replaces `path` when the block succeeds."""
    binary = "b" in mode
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if binary else encoding) as f:
            yield f


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 1) -> None:
    """Write a JSON file atomically."""
    write_text(path, json.dumps(data, indent=indent) + "\n")


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """torch.save atomically (torch is imported only when used: compiler code need not load it)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
