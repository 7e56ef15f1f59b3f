"""TVM's C++ log lines routed to a Python logger instead of the user's terminal.

Why: TVM's runtime writes `LOG(WARNING)` lines straight to file descriptor 2 from C++ (no Python hook and no
environment variable turns warnings off: TVM_LOG_DEBUG only adds debug lines). Saving a Relax executable prints
one "Warning: Scope Saving:" line per memory scope (executable.cc:276), a dozen per compile, which reads as
if something were wrong. `native_log()` points fd 2 at a temporary file around such a call; afterwards, TVM's log
lines ("[HH:MM:SS] file.cc:N: ...") go to the logger `compiler.tvm` (which the run log records, level INFO) and
every other line captured meanwhile (a linker's error, a Python warning) is written back to stderr unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from typing import Iterator

LOG = logging.getLogger("compiler.tvm")
TVM_LINE = re.compile(r"^\[\d{2}:\d{2}:\d{2}\] \S+\.(?:cc|h|cpp):\d+: ")
_lock = threading.RLock()
_depth = 0


@contextlib.contextmanager
def native_log(logger: logging.Logger = LOG) -> Iterator[None]:
    """Capture fd 2 for the duration; TVM's log lines go to `logger`, everything else back to stderr."""
    global _depth
    with _lock:
        if _depth:  # nested: the outer capture sorts the lines
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        _depth = 1
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(tempfile.TemporaryFile(mode="w+b"))
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                _depth = 0
                sink.seek(0)
                _sort(sink.read().decode("utf-8", errors="replace"), logger)


def _sort(text: str, logger: logging.Logger) -> None:
    """TVM's lines to the logger, the rest back to stderr."""
    other = []
    for line in text.splitlines(keepends=True):
        if TVM_LINE.match(line):
            logger.info("%s", line.rstrip("\n"))
        else:
            other.append(line)
    if other:
        sys.stderr.write("".join(other))
        sys.stderr.flush()
