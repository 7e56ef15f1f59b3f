"""The one error type the CLI turns into a one-line message and exit code 2.

Library code raises `InputError` for anything a user can cause (bad paths, bad
files, bad configs); the CLI prints `error: <message>` and exits with status 2,
never a traceback.
"""

from __future__ import annotations

import click


class InputError(click.ClickException):
    """A problem with what the user gave us (exit code 2, one line, no traceback)."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: D102 - click's signature
        click.echo(f"error: {self.format_message()}", err=True, file=file)
