"""Supernet training settings: one typed, self-validating shape, from the config section to the loop.

Why one shape: the settings used to pass through a defaults dict, hand checks, fifteen keyword arguments
and this class, with two defaults that disagreed. Now the config's `supernet.train` section is parsed
once into `TrainSettings` (`from_dict`) and passed whole. `RULES` is the one home of each setting's
range: TrainSettings checks itself with it, and srprune's config reader derives its declarative rules
(srprune.search.supernet_stage.TRAIN_RULES) from it, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from supernet.errors import SpaceError

COUNT = 10**9  # a generous upper bound for step counts (they must still be finite integers)


@dataclass(frozen=True)
class Bound:
    """A finite number (an integer if `integer`) in [low, high]; `above` makes low exclusive."""

    low: float
    high: float
    integer: bool = False
    above: bool = False

    def ok(self, v: Any) -> bool:
        """Whether `v` fits (bools are not numbers here)."""
        if isinstance(v, bool) or not isinstance(v, int if self.integer else (int, float)) or not math.isfinite(v):
            return False
        return (v > self.low if self.above else v >= self.low) and v <= self.high


@dataclass(frozen=True)
class Choice:
    """One of a few strings."""

    options: tuple[str, ...]

    def ok(self, v: Any) -> bool:
        """Whether `v` is one of the options."""
        return isinstance(v, str) and v in self.options


# The rule of every setting (the config section's keys; `scale` comes from the run, not the section).
RULES: dict[str, Bound | Choice] = {
    "steps": Bound(1, COUNT, integer=True), "batch_size": Bound(1, 4096, integer=True),
    "patch_size": Bound(4, 4096, integer=True), "lr": Bound(0, 1, above=True), "min_lr_ratio": Bound(0, 1),
    "num_random": Bound(0, 64, integer=True), "kd_weight": Bound(0, 1), "seed": Bound(0, 2**32 - 1, integer=True),
    "val_every": Bound(0, COUNT, integer=True), "checkpoint_every": Bound(1, COUNT, integer=True),
    "sort_every": Bound(0, COUNT, integer=True), "sampling": Choice(("fixed", "fair")),
}
SCALE = Bound(1, 64, integer=True)
# What a checkpoint must agree on to be resumed: everything that shapes the weights besides the data
# (batch and patch size live in the data iterator's state; val_every and checkpoint_every change no weight).
RESUME_KEYS = ("steps", "scale", "lr", "min_lr_ratio", "num_random", "kd_weight", "seed", "sort_every", "sampling")


@dataclass(frozen=True)
class TrainSettings:
    """Everything besides data and space that determines a supernet training run (recorded in the checkpoint).

    Defaults are those of the shipped demo configs (configs/demo.yaml, configs/supernet-demo.yaml): lr 2e-3
    and a checkpoint every 100 steps (the class used to say 1e-3 and 50, the config reader 2e-3 and 100).
    """

    steps: int = 1500
    batch_size: int = 16  # LR patches per step (per process under torchrun)
    patch_size: int = 32  # LR patch side
    lr: float = 2e-3
    min_lr_ratio: float = 0.01  # cosine schedule ends at lr * min_lr_ratio
    num_random: int = 2
    kd_weight: float = 0.5
    seed: int = 0
    val_every: int = 250  # validate the largest and smallest every this many steps (0: only at the end)
    checkpoint_every: int = 100
    sort_every: int = 0  # sort channels by importance every this many steps (0: never)
    # "fixed": the sandwich's largest and smallest are the costliest / cheapest block everywhere, every step, and
    # the random sub-networks draw blocks independently. "fair": the largest and smallest take each block type in
    # turn (step by step) and the random sub-networks deal each cell's blocks from a shuffled deck, so every
    # block type gets the same number of updates (with "fixed", the largest's block gets about 4x the others').
    sampling: str = "fixed"
    scale: int | None = None  # the scale trained; None: the space's first

    def __post_init__(self) -> None:
        for key, rule in RULES.items():
            v = getattr(self, key)
            if not rule.ok(v):
                raise SpaceError(f"training setting {key} must be {describe(rule)}, got {v!r}")
        if self.scale is not None and not SCALE.ok(self.scale):
            raise SpaceError(f"training setting scale must be {describe(SCALE)}, got {self.scale!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], scale: int | None = None) -> "TrainSettings":
        """Parse a config section (missing keys take the defaults); an unknown key or bad value is a SpaceError."""
        unknown = sorted(set(data) - set(RULES))
        if unknown:
            raise SpaceError(f"unknown training setting {unknown[0]!r} (settings: {', '.join(RULES)})")
        return cls(**data, scale=scale)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The config section's keys with their defaults (what `srprune run` writes into RUN/config.yaml)."""
        return {f.name: f.default for f in fields(cls) if f.name in RULES}

    def to_dict(self) -> dict[str, Any]:
        """Plain data (recorded in the checkpoint)."""
        return asdict(self)

    def resume_view(self) -> dict[str, Any]:
        """The settings a checkpoint must match to be continued (RESUME_KEYS)."""
        return {k: getattr(self, k) for k in RESUME_KEYS}


def describe(rule: Bound | Choice) -> str:
    """A rule in words, for messages."""
    if isinstance(rule, Choice):
        return "one of " + ", ".join(rule.options)
    kind = "an integer" if rule.integer else "a number"
    return f"{kind} in {'(' if rule.above else '['}{rule.low:g}, {rule.high:g}]"
