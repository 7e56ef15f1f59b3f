"""How the run names the deployed model's latency: measured on the target, or estimated by the static model.

Why one home: with `latency.source: estimate` no number of the run was measured, and every printed
summary, the report, the replanning notes and search/feedback.json must say "estimated (static model
of CPU X)" instead of "measured"; the compile stage's result carries the value under `measured_ms` or
`estimated_ms` and its label under `latency`.
"""

from __future__ import annotations

from typing import Any


def deployed_ms(result: dict[str, Any]) -> float:
    """The deployed model's time per frame: measured, or estimated when nothing could be measured."""
    return float(result["measured_ms"] if "measured_ms" in result else result["estimated_ms"])


def latency_word(result: dict[str, Any]) -> str:
    """'measured' or 'estimated (static model of CPU X)'."""
    return str(result.get("latency") or "measured")


def value_key(result: dict[str, Any]) -> str:
    """The key a record of this result keeps its time under (feedback entries follow the compile result)."""
    return "measured_ms" if "measured_ms" in result else "estimated_ms"
