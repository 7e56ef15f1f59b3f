"""Errors the supernet raises for bad user input (the CLI shows them as one line, exit 2)."""


class SpaceError(ValueError):
    """A search-space config or genome that does not fit the space; the message names the field."""
