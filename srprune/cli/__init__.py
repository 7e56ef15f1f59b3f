"""The `srprune` command line: one click group, one module per command.

Every error a user can cause ends as `error: <one line>` on stderr with exit
code 2 (see srprune.errors); nothing prints a traceback for bad input.
"""

from __future__ import annotations

import sys

import click

from compiler.errors import CompilerError
from srprune import __version__
from srprune.errors import InputError
from srcommon.errors import OutputConflict
from supernet.errors import SpaceError

# Library errors that mean "bad input" and become one-line messages.
USER_ERRORS = (InputError, SpaceError, CompilerError, OutputConflict)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="srprune")
def cli() -> None:
    """Find, prune, compile and ship real-time super-resolution networks."""


def _register() -> None:
    """Import the command modules; each adds its commands to `cli`."""
    from srprune.cli import commands  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, mapping user errors to exit code 2."""
    _register()
    try:
        cli.main(args=argv, prog_name="srprune", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (SpaceError, CompilerError, OutputConflict) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
