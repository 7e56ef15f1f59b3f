"""Errors the supernet raises for bad user input (the CLI shows them as one line, exit 2)."""


class SpaceError(ValueError):
    """A search-space config or genome that does not fit the space; the message names the field."""


class CheckpointError(SpaceError):
    """A supernet checkpoint that cannot be used: unreadable, missing fields, weights of the wrong shape.

    A SpaceError too, so callers that already refuse bad spaces refuse bad checkpoints the same way.
    """
