"""The stages of `srprune run`, in order: one module per stage, named after it (base.Stage says the shape)."""

from __future__ import annotations

from srprune.search.stages import apk, arch, compile, evaluate, finetune, latency, ratios, report, supernet
from srprune.search.stages.base import Stage

STAGES: tuple[Stage, ...] = tuple(m.STAGE for m in (latency, supernet, arch, ratios, finetune, compile, evaluate,
                                                   report, apk))
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
