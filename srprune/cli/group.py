"""The `srprune` click group that every command module adds its commands to.

A module of its own so that the command modules import it without importing srprune.cli (whose `main`
imports them): no import cycle.
"""

from __future__ import annotations

import click

from srprune import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="srprune")
def cli() -> None:
    """Find, prune, compile and ship real-time super-resolution networks."""
