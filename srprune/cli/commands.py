"""Imports every command module so that each registers its commands on `srprune.cli.cli`."""

from srprune.cli import android_cmd, compile_cmd, core_cmd, data_cmd, demo_cmd, latency_cmd, prune_cmd, supernet_cmd  # noqa: F401
