"""Stage `supernet` (stage 1 of the method): train the weight-sharing supernet of the search space."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from srprune.search.stages.base import Stage

if TYPE_CHECKING:
    from srprune.search.pipeline import Run


def run(run: "Run", fresh: bool) -> dict[str, Any]:
    """Train (or resume from RUN/supernet/checkpoint.pt) the supernet."""
    from srprune.search.supernet_stage import train_supernet_run

    c = run.config
    r = train_supernet_run({"space": c.supernet.space, "train": c.supernet.train, "data": c.data,
                            "val_data": c.val_data}, run.dir, c.scale, resume=run.layout.supernet_checkpoint.exists(),
                           progress=run.progress, where=c.placement)
    return {"steps": r["step"], "val": r["val"]}


STAGE = Stage(
    name="supernet",
    reads=("scale", "data", "val_data", "supernet"),
    after=(),
    writes=lambda layout: [layout.supernet],
    run=run,
    resumable="its checkpoint",
)
