"""The error type for bad user input; the CLI turns it into one line and exit code 2.

Library code raises `InputError` for anything a user can cause (bad paths, bad
files, bad configs). It is a plain exception, so the library does not depend on
click: only srprune.cli prints `error: <message>` and exits with status 2,
never a traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """A problem with what the user gave us (exit code 2, one line, no traceback)."""
