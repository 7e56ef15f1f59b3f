"""A folder held by one process at a time: an advisory lock file that the kernel releases when its holder dies.

Why flock: a killed holder (SIGKILL, power loss of a client) leaves no stale lock to clean up by hand; the
next process simply gets the lock. The file's content names the exclusive holder (pid, host, command, since)
for the message a second process prints. Shared holders (search workers on one study) lock it shared: they
exclude an exclusive holder and each other not at all.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

from srcommon.errors import OutputConflict

LOCK_FILE = ".srprune.lock"
# Locks this process holds, by lock file: a process that holds a folder may open it again (several commands
# run in one process, as the tests do) without locking itself out.
_HELD: dict[Path, int] = {}


def describe_holder(path: Path) -> str:
    """Who holds the lock, from the file's content (exclusive holders write it; shared ones do not)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "srprune search workers sharing the folder"
    return (f"`{info.get('command', 'srprune')}` (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"since {info.get('since', '?')})")


class FolderLock:
    """Hold `folder` exclusively (`srprune run`) or shared (`srprune search` workers) while the object lives."""

    def __init__(self, folder: str | os.PathLike, command: str, shared: bool = False) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.command = command
        self.shared = shared
        self._fd: int | None = None

    def acquire(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> "FolderLock":
        """Take the lock; held by another process: wait for it (`wait`, telling `on_wait` who holds it once)
        or raise OutputConflict naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = self.path.resolve()
        if key in _HELD:
            self._fd = None  # held already by this process: nothing to take or give back
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(self.path)
            if not wait:
                os.close(fd)
                raise OutputConflict(f"{self.path.parent}: in use by {holder}; wait for it to finish or stop it "
                                     f"(--wait waits)") from None
            if on_wait:
                on_wait(f"{self.path.parent}: in use by {holder}; waiting for it")
            fcntl.flock(fd, mode)
        self._fd = fd
        _HELD[key] = fd
        if self.shared:
            os.ftruncate(fd, 0)  # any name left there is of a killed exclusive holder
        else:
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                    "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        return self

    def release(self) -> None:
        """Give the lock back (also done by the kernel when the process ends)."""
        if self._fd is None:
            return
        _HELD.pop(self.path.resolve(), None)
        if not self.shared:
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
