"""The `srprune` command line: one click group, one module per command.

Every error a user can cause ends as `error: <one line>` on stderr with exit
code 2, never a traceback: library errors (srprune.errors.InputError and the
supernet's and compiler's own), click's usage errors, and any OSError that
reaches a command's edge. `main` is the one place that maps them.
"""

from __future__ import annotations

import sys

import click

from compiler.errors import CompilerError
from srprune.cli.group import cli
from srprune.errors import InputError
from srcommon.errors import DeviceError, OutputConflict
from supernet.errors import CheckpointError, SpaceError

# Library errors that mean "bad input" and become one-line messages.
USER_ERRORS = (InputError, SpaceError, CheckpointError, CompilerError, OutputConflict, DeviceError)
USAGE_EXIT = 2


def _register() -> None:
    """Import the command modules; each adds its commands to the group (srprune.cli.group)."""
    from srprune.cli import commands  # noqa: F401


def one_line(text: str) -> str:
    """Join a (possibly multi-line) message into one line: the CLI promises exactly one."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def os_error_message(e: OSError) -> str:
    """`<path>: <reason>` of a file-system error (both paths of a rename), else its text."""
    paths = [p for p in (e.filename, getattr(e, "filename2", None)) if p is not None]
    reason = e.strerror or str(e)
    return f"{' -> '.join(map(str, paths))}: {reason}" if paths else reason


def _usage_message(e: click.ClickException) -> str:
    """click's `Usage: ... Error: ...` block as one line, naming the command to ask for help."""
    ctx = getattr(e, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return one_line(e.format_message()) + hint


def error_message(e: BaseException) -> str | None:
    """The one-line message of an exception that means bad input; None for a bug (keep its traceback)."""
    if isinstance(e, USER_ERRORS):
        return one_line(str(e))
    if isinstance(e, click.ClickException):
        return _usage_message(e)
    if isinstance(e, OSError):
        return one_line(os_error_message(e))
    return None


def _fail(message: str, code: int = USAGE_EXIT) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, mapping user errors to one line and exit code 2."""
    _register()
    try:
        cli.main(args=argv, prog_name="srprune", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:  # a bare `srprune` or group: asking for help, not a mistake
        click.echo(e.ctx.get_help())
        sys.exit(0)
    except (*USER_ERRORS, click.ClickException, OSError) as e:
        _fail(error_message(e))
