"""The error srcommon raises for a file-system conflict the user can resolve (one line at the CLI)."""

from __future__ import annotations


class OutputConflict(Exception):
    """An output path cannot be written without losing something: it holds files srprune did not write,
    it is of the wrong kind, or another process holds it."""


class DeviceError(ValueError):
    """A training device or precision this machine cannot give (srcommon.devices; the CLIs print one line)."""
