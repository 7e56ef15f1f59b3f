"""Frame sizes as users write them: 'WIDTHxHEIGHT' (the CLI's --size, a config's output_size)."""

from __future__ import annotations

import re
from typing import Any

from srprune.errors import InputError

_SIZE = re.compile(r"^(\d+)x(\d+)$")


def parse_size(text: Any, what: str = "--size") -> tuple[int, int]:
    """'1280x720' -> (width, height); anything else is an InputError naming `what`."""
    m = _SIZE.match(str(text).strip().lower())
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise InputError(f"{what} must be WIDTHxHEIGHT in pixels, e.g. 1280x720, got {text!r}")
    return int(m.group(1)), int(m.group(2))
