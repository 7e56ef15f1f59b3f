"""Imports every command module so that each registers its commands on the group (srprune.cli.group)."""

from srprune.cli import (  # noqa: F401
    android_cmd, compile_cmd, core_cmd, data_cmd, export_cmd, latency_cmd, latency_estimate_cmd, prune_cmd,
    quant_cmd, run_cmd, supernet_cmd)
