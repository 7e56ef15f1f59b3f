"""Optional MetaSchedule tuning with a persistent database per target, reused across runs and models.

Our own conv kernels (compiler.kernels) give good speed without tuning and are never handed to
MetaSchedule: in our measurements its search did not reach them (161 trials, 19 minutes, still 2.8x
slower than ONNX Runtime on a small SR CNN). What tuning improves is everything else a network lowers
to: PixelShuffle transposes, the global skip, padding, and any operator our kernels do not cover.

The database lives in one folder per target (`db_root/<target name>-<hash of the TVM target>`), so a
workload (a fused TIR function of given shapes) tuned for one model is reused by every later compile of
any model with the same workload. `compile_model(..., tuning_root=...)` applies it. Tasks are extracted from
compiler.pipeline's module stopped after `legalize`, exactly where the build applies the database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from compiler import _tune_worker
from compiler.errors import CompilerError
from compiler.pipeline import Phase, lower
from compiler.targets import TargetSpec, get_target

log = logging.getLogger(__name__)

_SCHEDULED = ("tirx.is_scheduled", "tir.is_scheduled")
_FAILED = 1e9  # seconds: MetaSchedule records a failed build or run as 1e10 s


def database_dir(db_root: str | Path, target: TargetSpec) -> Path:
    """The database folder of `target` under `db_root` (the TVM target string is part of the key)."""
    key = json.dumps(dict(target.tvm), sort_keys=True, default=str)
    key = {k: v for k, v in json.loads(key).items() if k != "num-cores"}  # threads do not change the code
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(db_root) / f"{target.name}-{digest}"


def has_records(db_dir: Path | None) -> bool:
    """True if `db_dir` holds a MetaSchedule database with at least one tuning record."""
    if db_dir is None:
        return False
    records = Path(db_dir) / "database_tuning_record.json"
    return records.is_file() and records.stat().st_size > 0


def _is_scheduled(func) -> bool:
    attrs = func.attrs
    return bool(attrs) and any(bool(attrs.get(k, False)) for k in _SCHEDULED)


@dataclass
class TuneReport:
    """What a tuning session did: tasks tuned, trials run, time spent, where the database is."""

    db_dir: Path
    tasks: list[str]
    trials: int
    seconds: float
    records: int
    measured: int  # records that built and ran (MetaSchedule stores failed trials with a huge time)


def tune(model: nn.Module, input_shape: tuple[int, int, int, int], target: str | TargetSpec, minutes: float,
         db_root: str | Path, *, trials_per_round: int = 16, seed: int = 0, build_timeout: float = 120.0,
         run_timeout: float = 60.0, population: int = 512) -> TuneReport:
    """Tune the operators our kernels do not cover for about `minutes`; records go to the target's database.

    Tuning runs in rounds of `trials_per_round` trials per task; a round that starts before the budget is
    spent finishes, so the budget may be exceeded by one round. Cross targets cannot be measured here.
    `population` is the evolutionary search's population (TVM's default; small values only for quick checks).
    """
    from tvm.s_tir import meta_schedule as ms

    spec = target if isinstance(target, TargetSpec) else get_target(target)
    if spec.cross:
        raise CompilerError(f"target {spec.name} cannot be tuned here: tuning measures on the target itself "
                            "(tune on the device through RPC, or use the untuned build)")
    if not minutes > 0:
        raise CompilerError(f"tuning time must be positive minutes, got {minutes!r}")
    db_dir = database_dir(db_root, spec)
    db_dir.mkdir(parents=True, exist_ok=True)
    mod, _ = lower(model, input_shape, spec, stop_after=Phase.LEGALIZE)  # where compile_model applies the database
    tgt = spec.tvm_target()
    extracted = [t for t in ms.relax_integration.extract_tasks(mod, tgt)
                 if not _is_scheduled(t.dispatched[0]["main"])]
    names = [t.task_name for t in extracted]
    logs = db_dir / "last-run-logs"  # MetaSchedule's per-task logs of the latest session, for diagnosis
    shutil.rmtree(logs, ignore_errors=True)
    start, trials = time.monotonic(), 0
    if extracted:
        # One worker pool for all rounds; generous timeouts, since a loaded machine builds slowly.
        builder = ms.builder.LocalBuilder(timeout_sec=build_timeout, f_build=_tune_worker.build)
        runner = ms.runner.LocalRunner(timeout_sec=run_timeout)
        round_no = 0
        while round_no == 0 or time.monotonic() - start < minutes * 60.0:  # at least one round
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                extracted, work_dir=str(logs / f"round{round_no}"), seed=seed + round_no,
                strategy=ms.search_strategy.EvolutionarySearch(population_size=population,
                                                               init_min_unmeasured=min(50, population)))
            database = ms.database.JSONDatabase(work_dir=str(db_dir))
            before = len(database)
            ms.tune.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(logs / f"round{round_no}"),
                               max_trials_global=trials_per_round * len(contexts),
                               num_trials_per_iter=min(trials_per_round, 64), database=database,
                               builder=builder, runner=runner)
            added = len(database) - before
            trials += added
            round_no += 1
            log.info("tuning round %d: %d trials recorded, %.0f s", round_no, added, time.monotonic() - start)
            if added == 0:
                break  # the search space of every task is exhausted
    records = ms.database.JSONDatabase(work_dir=str(db_dir)).get_all_tuning_records()
    measured = sum(1 for r in records if r.run_secs and min(float(t) for t in r.run_secs) < _FAILED)
    return TuneReport(db_dir, names, trials, time.monotonic() - start, len(records), measured)
