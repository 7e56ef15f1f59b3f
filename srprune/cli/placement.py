"""`--device`, `--amp`, `--workers`: the options of every command that trains (one home, srcommon.devices)."""

from __future__ import annotations

from typing import Any, Callable

import click

from srcommon.devices import AMP_CHOICES, DEVICE_CHOICES


def placement_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the three options; the command receives them as `device`, `amp`, `workers`."""
    fn = click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
                      help="Processes assembling training batches (0: the training process); same results.")(fn)
    fn = click.option("--amp", type=click.Choice(AMP_CHOICES), default="off", show_default=True,
                      help="Mixed precision: bf16 (GPU or CPU) or fp16 (GPU only, loss scaled).")(fn)
    fn = click.option("--device", default="auto", show_default=True,
                      help=f"Training device: {DEVICE_CHOICES} (auto: CUDA when present, else the CPU).")(fn)
    return fn


def placement(device: str, amp: str, workers: int) -> Any:
    """The checked Placement (one-line error for a device that is not here, fp16 on the CPU)."""
    from srcommon.devices import Placement

    return Placement(device, amp, workers).check()
