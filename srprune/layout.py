"""RunLayout: the one place that names the paths of a run folder (DESIGN.md's `runs/NAME/` tree).

The compiler writes and reads tables and artifacts at paths it is given; only srprune knows the run folder.

Each stage declares which of these it writes (srprune/search/stages), so that invalidating a stage (its inputs
changed, or --force) moves exactly those aside, never anything else in the folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from compiler.latency.predict import CALIBRATION_FILE
from compiler.latency.table import TABLE_FILE


def safe_name(target: str) -> str:
    """A folder name for a target name (rpc://host:port/key has characters a path must not)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", target).strip("_") or "target"


def stale_stamp() -> str:
    """The name of one RUN/stale/ folder: the UTC time of the step that set things aside."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def table_path(run_dir: str | os.PathLike, target: str) -> Path:
    """RUN/latency/TARGET/table.json: the layer table (the compiler's file format, srprune's place for it)."""
    return RunLayout(Path(run_dir), target).latency / TABLE_FILE


def calibration_path(run_dir: str | os.PathLike, target: str) -> Path:
    """RUN/latency/TARGET/predictor.json: the calibration fitted to the table."""
    return RunLayout(Path(run_dir), target).latency / CALIBRATION_FILE


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run folder for one target."""

    root: Path
    target: str | None = None  # needed only for the per-target folders (latency, compiled)

    def _target(self) -> str:
        if not self.target:
            raise ValueError("this path of a run folder depends on the target; give RunLayout one")
        return self.target

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def stages(self) -> Path:
        return self.root / "stages.json"

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    @property
    def stale(self) -> Path:
        """Where outputs of invalidated stages are moved (never deleted: the folder may hold user files)."""
        return self.root / "stale"

    def set_aside(self, path: Path, stamp: str | None = None) -> Path:
        """Move `path` (inside the run) to RUN/stale/STAMP/<the same relative path> and return where it went: what a
        re-run replaces is kept, never deleted. One `stamp` groups what one step moved (default: now, UTC)."""
        stamp = stamp or stale_stamp()
        dest = self.stale / stamp / Path(path).resolve().relative_to(self.root.resolve())
        dest.parent.mkdir(parents=True, exist_ok=True)
        Path(path).rename(dest)
        return dest

    @property
    def latency(self) -> Path:
        return self.root / "latency" / safe_name(self._target())

    @property
    def supernet(self) -> Path:
        return self.root / "supernet"

    @property
    def supernet_checkpoint(self) -> Path:
        return self.supernet / "checkpoint.pt"

    @property
    def search(self) -> Path:
        return self.root / "search"

    @property
    def trials_csv(self) -> Path:
        """Stage 2's trials."""
        return self.search / "trials.csv"

    @property
    def pareto(self) -> Path:
        return self.search / "pareto.json"

    @property
    def ratios_csv(self) -> Path:
        """Stage 3's trials."""
        return self.search / "ratios.csv"

    @property
    def study_db(self) -> Path:
        """The default Optuna storage (SQLite) of both search stages."""
        return self.search / "study.db"

    @property
    def arch(self) -> Path:
        """Stage 2's result: the chosen architecture and schemes."""
        return self.search / "arch.json"

    @property
    def chosen(self) -> Path:
        """The search's result (stage 3, or a replan): the candidate that is fine-tuned."""
        return self.search / "chosen.json"

    @property
    def feedback(self) -> Path:
        return self.search / "feedback.json"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def final_model(self) -> Path:
        return self.final / "model.pt"

    @property
    def compiled(self) -> Path:
        return self.root / "compiled" / self._target()

    @property
    def latency_report(self) -> Path:
        """The compile stage's measurement: predicted vs measured, layer by layer."""
        return self.compiled / "latency.json"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def metrics(self) -> Path:
        return self.eval / "metrics.json"

    @property
    def crops(self) -> Path:
        return self.eval / "crops"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def android(self) -> Path:
        """The apk stage's folder (android.apk: true): the model compiled as a c-lib for the app, and the APK."""
        return self.root / "android"

    @property
    def android_apk(self) -> Path:
        """The signed debug APK (`srprune android apk RUN` writes it here too)."""
        return self.android / "srprune-demo.apk"
