"""`srprune run`: the stages in order, each skipped when its inputs are unchanged, resumed after a kill.

A stage's inputs are the config keys it reads plus the input hashes of the stages it reads from; their
hash is stored in RUN/stages.json when the stage starts and marked done when it ends. On a re-run:
done with the same hash -> skipped; started with the same hash -> resumed (the supernet from its
checkpoint, the latency table from its last chunk, the studies from their stored trials; the other
stages are short and start over, deterministically); another hash or --force -> its old outputs are
moved aside and it runs anew, and every stage after it is invalidated in the same step (its outputs moved
to RUN/stale/ and its state dropped), so no report, compiled folder or metric of an older model survives a
re-run of the stages it came from. The run folder is held by one `srprune run` at a time (srcommon.lock);
`srprune search` workers share it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable


from srcommon.atomic import write_text
from srcommon.lock import FolderLock
from srprune.errors import InputError
from srcommon.progress import note
from srprune.search import config as config_mod
from srprune.search.hashes import file_hashes, model_checksum, stale_stages, stage_hashes
from srprune.layout import RunLayout, stale_stamp
from srprune.search.stages import BY_NAME, NAMES
from srprune.search.stages import STAGES as STAGE_LIST

STAGES: tuple[str, ...] = NAMES
SEARCH_STAGES = tuple(s.name for s in STAGE_LIST if s.study)
log = logging.getLogger("srprune.run")
CALIB_BATCHES = 4  # fixed training batches calibrating each int8 candidate's ranges (cheap: one forward each)


def downstream(stage: str) -> list[str]:
    """Every stage that reads `stage`'s results, directly or through others (in pipeline order)."""
    out: set[str] = set()
    for s in STAGE_LIST:
        if any(d == stage or d in out for d in s.after):
            out.add(s.name)
    return [s for s in STAGES if s in out]


class Run:
    """One run folder: its resolved config, stage states and the objects the stages share."""

    def __init__(self, cfg: dict[str, Any], progress: bool = True) -> None:
        from compiler.targets import get_target

        self.cfg = cfg  # the resolved document: hashed per stage, written to RUN/config.yaml
        self.config = config_mod.RunConfig.from_dict(cfg)  # its typed view, which the stages read
        self.dir = Path(cfg["run_dir"])
        self.progress = progress
        self.log = log
        self.target = get_target(self.config.target, self.config.threads)
        self.layout = RunLayout(self.dir, self.target.name)
        self.lock: FolderLock | None = None  # taken by prepare()
        self.refresh_hashes()
        self.out_hw = self.config.out_hw

    def refresh_hashes(self) -> None:
        """Recompute the hashes when a stage's input file appeared or changed (search/chosen.json)."""
        self.hashes = stage_hashes(self.cfg, file_hashes(self.layout))

    # --- state -----------------------------------------------------------------------------------
    def states(self) -> dict[str, Any]:
        """RUN/stages.json (empty when absent)."""
        path = self.layout.stages
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            raise InputError(f"{path}: corrupt stage file; remove it to redo the run") from None

    def _set_state(self, stage: str, **fields: Any) -> None:
        states = self.states()
        states[stage] = {**states.get(stage, {}), **fields}
        write_text(self.layout.stages, json.dumps(states, indent=1) + "\n")

    def stale_stages(self) -> dict[str, str]:
        """{stage: why} for the stages whose outputs the report must not present (srprune.search.hashes)."""
        return stale_stages(self.dir)

    def is_done(self, stage: str) -> bool:
        """Finished with the current inputs."""
        s = self.states().get(stage, {})
        return bool(s.get("done")) and s.get("hash") == self.hashes[stage]

    # --- running ---------------------------------------------------------------------------------
    def run_stage(self, stage: str, force: bool = False) -> Any:
        """Run one stage unless it is done with the same inputs (then return its stored result)."""
        spec = BY_NAME[stage]
        state = self.states().get(stage, {})
        if not force and self.is_done(stage):
            note(f"[run] {stage}: up to date, skipped")
            return state.get("result")
        missing = [d for d in spec.after if not self.is_done(d)]
        if missing:
            raise InputError(f"stage {stage} needs stage {missing[0]} done first (srprune run -c CONFIG "
                             f"--stage {missing[0]}, or run every stage)")
        fresh = force or state.get("hash") != self.hashes[stage]
        if fresh:
            self.invalidate(stage)
        note(f"[run] {stage}: {'starting' if fresh else 'resuming'}")
        log.info("stage %s %s (inputs %s)", stage, "start" if fresh else "resume", self.hashes[stage])
        self._set_state(stage, hash=self.hashes[stage], done=False,
                        started_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"))
        started = time.perf_counter()
        used = {"model_sha256": model_checksum(self.layout.final_model)} if spec.reads_model else {}
        result = spec.run(self, fresh)
        self.refresh_hashes()  # a stage may have written another stage's input file (chosen.json)
        seconds = time.perf_counter() - started + (0.0 if fresh else float(state.get("seconds", 0.0)))
        self._set_state(stage, done=True, seconds=seconds, result=result, **used,
                        finished_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"))
        log.info("stage %s done in %.1f s: %s", stage, seconds, json.dumps(result, default=str)[:500])
        note(f"[run] {stage}: done in {seconds:.0f} s")
        return result

    def invalidate(self, stage: str) -> None:
        """Before `stage` starts anew: move the outputs of every stage downstream of it aside (RUN/stale/TIME/...;
        nothing is deleted, the folder may hold the user's files), drop their states and delete their Optuna
        studies, all in this one step; the same for `stage`'s own outputs when an earlier run of it left any
        (outputs that no run of the stage recorded, e.g. a table from `srprune latency build`, are resumed)."""
        states = self.states()
        stages = [stage, *downstream(stage)]
        stamp = stale_stamp()
        moved = []
        for s in stages:
            if s == stage and stage not in states:
                continue
            for path in BY_NAME[s].writes(self.layout):
                if path.exists() or path.is_symlink():
                    self.layout.set_aside(path, stamp)
                    moved.append(s)
            if BY_NAME[s].study and s in states:
                _delete_study(self.storage(), BY_NAME[s].study)
        dropped = [s for s in stages[1:] if s in states]
        if dropped or stage in states:
            for s in dropped:
                del states[s]
            states.pop(stage, None)
            write_text(self.layout.stages, json.dumps(states, indent=1) + "\n")
        if moved or dropped:
            where = f"; old outputs moved to {self.layout.stale / stamp}" if moved else ""
            note(f"[run] {stage}: inputs changed or forced: invalidated {', '.join([stage, *dropped])}{where}")
            log.info("invalidated %s (moved: %s)", [stage, *dropped], sorted(set(moved)))

    def storage(self) -> Any:
        """The Optuna storage of the searches."""
        from srprune.search.study import open_storage, storage_url

        if not hasattr(self, "_storage"):
            self._storage = open_storage(storage_url(self.dir, self.config.search.storage))
        return self._storage

    def search_context(self) -> Any:
        """What the search trials need (loaded once)."""
        if not hasattr(self, "_ctx"):
            from srprune.latency import load_predictor
            from srprune.search.arch import SearchContext
            from srprune.search.supernet_stage import val_tensors
            from supernet.space import SearchSpace
            from supernet.train import supernet_from_checkpoint

            c = self.config
            self._ctx = SearchContext(
                supernet=supernet_from_checkpoint(self.layout.supernet_checkpoint).eval(),
                space=SearchSpace.from_dict(c.supernet.space),
                val=val_tensors(c.val_data, c.scale),
                predictor=load_predictor(self.dir, self.target.name, self.target.threads),
                out_hw=self.out_hw, scale=c.scale, budget_ms=c.budget_ms, search=c.search,
                adapt_batches=adapt_batches(c, c.scale), calib_batches=calib_batches(c, c.scale))
        return self._ctx


def calib_batches(cfg: config_mod.RunConfig, scale: int) -> list:
    """The fixed LR batches that calibrate an int8 candidate's activation ranges (none when the search has no
    int8): CALIB_BATCHES training batches, the same for every candidate."""
    if "int8" not in cfg.search.precisions:
        return []
    return [lr for lr, _ in fixed_batches(cfg, scale, CALIB_BATCHES, 888)]


def adapt_batches(cfg: config_mod.RunConfig, scale: int) -> list:
    """The fixed training batches of the candidates' short adaptation (seeded; none when adapt_steps is 0)."""
    return fixed_batches(cfg, scale, cfg.search.adapt_steps, 777)


def fixed_batches(cfg: config_mod.RunConfig, scale: int, n: int, seed_offset: int) -> list:
    """`n` seeded (lr, hr) training batches of the supernet's batch and patch size."""
    if n == 0:
        return []
    from srprune.data import PatchSampler, load_dataset

    t = cfg.supernet.train
    sampler = PatchSampler(load_dataset(cfg.data, scale, split="train"), scale, int(t["patch_size"]),
                           int(t["batch_size"]), seed=cfg.search.seed + seed_offset)
    batches = iter(sampler)
    return [next(batches) for _ in range(n)]


def _delete_study(storage: Any, name: str) -> None:
    import optuna

    with contextlib.suppress(KeyError):  # no such study yet: nothing to delete
        optuna.delete_study(study_name=name, storage=storage)


def prepare(config_path: Path, run_dir: Path | None = None, progress: bool = True,
            storage: str | None = None, shared: bool = False, wait: bool = False) -> Run:
    """Load and check the config (one-line errors before any work), take the run folder (exclusively, or
    `shared` by search workers; `wait` for a holder instead of stopping), write RUN/config.yaml, set up the log."""
    cfg = config_mod.load(config_path, run_dir)
    if storage:
        cfg["search"]["storage"] = storage
    if cfg["search"].get("storage"):
        from srprune.search.study import check_storage_url

        check_storage_url(str(cfg["search"]["storage"]))  # a missing driver: one line now, not after stage 1
    run = Run(cfg, progress)
    run.dir.mkdir(parents=True, exist_ok=True)
    command = "srprune search" if shared else "srprune run"
    run.lock = FolderLock(run.dir, command, shared=shared).acquire(
        wait=wait, on_wait=lambda msg: note(f"[run] {msg}"))
    early_budget_check(run)
    write_text(run.layout.config, config_mod.dump(cfg))
    handler = logging.FileHandler(run.layout.log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for name in ("srprune.run", "supernet.train", "compiler.tvm"):  # compiler.tvm: TVM's C++ log lines
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "srprune_run", False)]:  # an earlier run, same process
            logger.removeHandler(old)
            old.close()
        handler.srprune_run = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return run


def early_budget_check(run: Run) -> None:
    """With a latency model already in the run folder, refuse an impossible budget before anything runs."""
    if not run.is_done("latency"):
        return
    from srprune.latency import load_predictor
    from srprune.search.latency_stage import check_budget
    from supernet.space import SearchSpace

    predictor = load_predictor(run.dir, run.target.name, run.target.threads)
    check_budget(predictor, run.cfg, SearchSpace.from_dict(run.config.supernet.space), run.out_hw)


def run_pipeline(run: Run, stages: tuple[str, ...] = STAGES, force: bool = False,
                 on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run `stages` in order; returns {stage: result}. A deployed model measured over the budget is replanned
    (up to search.replans times): the next candidate is fine-tuned, compiled and measured in its place."""
    from srprune.search.replan import replan

    if len(stages) == 1 and not BY_NAME[stages[0]].enabled(run.cfg):
        note(f"[run] {stages[0]}: off in the config (an optional stage), nothing to do")
    stages = tuple(s for s in stages if BY_NAME[s].enabled(run.cfg))  # optional stages that are off
    results = {}
    for stage in stages:
        if on_stage:
            on_stage(stage)
        results[stage] = run.run_stage(stage, force=force)
    after = [s for s in STAGES[STAGES.index("finetune"):] if s in stages]
    feedback = run.layout.feedback
    while "compile" in stages:
        seen = feedback.read_text() if feedback.exists() else None
        if replan(run):  # srprune.search.replan
            for stage in after:
                results[stage] = run.run_stage(stage)
            continue
        if "report" in stages and feedback.exists() and feedback.read_text() != seen:
            from srprune.search.report import write_report

            write_report(run.dir, run.stale_stages())  # the last measurement is news for the report
        break
    return results
