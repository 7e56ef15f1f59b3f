"""Stage `report`: RUN/report.html, one offline file of the run's results (srprune/search/report.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from srprune.search.stages.base import Stage

if TYPE_CHECKING:
    from srprune.search.pipeline import Run


def run(run: "Run", fresh: bool) -> dict[str, Any]:
    """Write the report (also `srprune report RUN`)."""
    from srprune.search.report import write_report

    return {"path": str(write_report(run.dir, run.stale_stages()))}


STAGE = Stage(
    name="report",
    reads=(),
    after=("compile", "evaluate"),
    writes=lambda layout: [layout.report],
    run=run,
)
