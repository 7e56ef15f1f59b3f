"""Frame sizes as users write them: 'WIDTHxHEIGHT' (the CLI's --size, a config's output_size).

A size is the OUTPUT frame; the network's input is size / scale. A size that is not a multiple
of the scale cannot be produced exactly, so it is refused here, before any work, rather than
silently floored (a manifest would then record a size the model does not produce).
"""

from __future__ import annotations

import re
from typing import Any

from srprune.errors import InputError

_SIZE = re.compile(r"^(\d+)x(\d+)$")
HD = (1280, 720)  # (width, height) of the default output frame


def parse_size(text: Any, what: str = "--size") -> tuple[int, int]:
    """'1280x720' -> (width, height); anything else is an InputError naming `what`."""
    m = _SIZE.match(str(text).strip().lower())
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise InputError(f"{what} must be WIDTHxHEIGHT in pixels, e.g. 1280x720, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def input_size(size: tuple[int, int], scale: int, what: str = "--size") -> tuple[int, int]:
    """The input (width, height) whose x`scale` output is exactly `size`; InputError if there is none."""
    w, h = size
    if w < scale or h < scale:
        raise InputError(f"{what} {w}x{h} is smaller than one input pixel at x{scale}")
    if w % scale or h % scale:
        raise InputError(f"{what} {w}x{h} is not a multiple of the scale x{scale} (the model would produce "
                         f"{w - w % scale}x{h - h % scale}; give that size)")
    return w // scale, h // scale


def default_frame(scale: int) -> tuple[int, int]:
    """The 720p frame rounded down to a multiple of `scale` (1278x720 at x3): the default --size."""
    return HD[0] - HD[0] % scale, HD[1] - HD[1] % scale


def frame_for(text: str | None, scale: int, what: str = "--size") -> tuple[tuple[int, int], tuple[int, int]]:
    """(output size, input size) of a --size option (None: the default frame of `scale`), checked."""
    size = default_frame(scale) if text is None else parse_size(text, what)
    return size, input_size(size, scale, what)
