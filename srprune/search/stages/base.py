"""What a stage of `srprune run` is: one shape for all eight, so the pipeline needs no per-stage code.

A stage declares its name, the config keys it reads, the stages whose results it reads, what it writes in
the run folder, and `run(run, fresh) -> summary` (a small JSON-able dict kept in RUN/stages.json). Skipping,
resuming, invalidating downstream stages and locking are the pipeline's (srprune/search/pipeline.py), derived
from these declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from srprune.layout import RunLayout
    from srprune.search.pipeline import Run


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline (see the module docstring)."""

    name: str
    reads: tuple[str, ...]                       # config keys ("a.b" = key b of section a)
    after: tuple[str, ...]                       # stages whose results it reads
    writes: Callable[["RunLayout"], list[Path]]  # files or folders it writes (moved aside when invalidated)
    run: Callable[["Run", bool], dict[str, Any]]  # (run, fresh) -> summary
    study: str | None = None                     # the Optuna study it owns (deleted when invalidated)
    reads_files: Callable[["RunLayout"], list[Path]] = lambda layout: []  # files whose content is an input
                                                 # besides its dependencies' results (a replan rewrites them)
    reads_model: bool = False                    # reads final/model.pt: its checksum is recorded with the state
    resumable: str = ""                          # what a restart after a kill resumes from ("" = starts over)
    enabled: Callable[[dict[str, Any]], bool] = lambda cfg: True  # on the resolved config: an optional stage
                                                 # that is off is neither run nor reported as unfinished
