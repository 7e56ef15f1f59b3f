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
import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable


from srcommon.atomic import write_text
from srcommon.lock import FolderLock
from srprune.errors import InputError
from srprune.frame import parse_size
from srprune.progress import note
from srprune.search import config as config_mod
from srprune.search.layout import RunLayout

STAGES = ("latency", "supernet", "arch", "ratios", "finetune", "deploy", "evaluate", "report")
SEARCH_STAGES = ("arch", "ratios")

# Config keys each stage reads ("a.b" = key b of section a).
INPUTS: dict[str, tuple[str, ...]] = {
    "latency": ("target", "threads", "rpc", "output_size", "latency", "supernet.space", "search.schemes",
                "search.blocks", "search.ratios", "search.scheme_ratio"),
    "supernet": ("scale", "data", "val_data", "supernet"),
    "arch": ("scale", "budget_ms", "val_data", "search.sampler", "search.trials", "search.startup_trials",
             "search.schemes", "search.blocks", "search.scheme_ratio", "search.margin", "search.min_fill",
             "search.seed", "search.adapt_steps", "search.adapt_lr", "supernet.train.batch_size",
             "supernet.train.patch_size"),
    "ratios": ("search.sampler", "search.ratio_trials", "search.startup_trials", "search.ratios", "search.seed",
               "search.adapt_steps", "search.adapt_lr"),
    "finetune": ("data", "val_data", "finetune"),  # + the content of search/chosen.json (Run.refresh_hashes)
    "deploy": ("target", "threads", "rpc", "output_size", "budget_ms"),
    "evaluate": ("eval_data",),
    "report": (),
}
DEPENDS: dict[str, tuple[str, ...]] = {
    "latency": (), "supernet": (), "arch": ("latency", "supernet"), "ratios": ("arch",),
    "finetune": ("ratios",), "deploy": ("finetune", "latency"), "evaluate": ("finetune",),
    "report": ("deploy", "evaluate"),
}
# Stages that read final/model.pt: they record its checksum, and the report checks it is still that model.
MODEL_READERS = ("deploy", "evaluate")
STATE_FILE = "stages.json"
log = logging.getLogger("srprune.run")


def downstream(stage: str) -> list[str]:
    """Every stage that reads `stage`'s results, directly or through others (in pipeline order)."""
    out: set[str] = set()
    for s in STAGES:
        if any(d == stage or d in out for d in DEPENDS[s]):
            out.add(s)
    return [s for s in STAGES if s in out]


def _value(cfg: dict[str, Any], key: str) -> Any:
    out: Any = cfg
    for part in key.split("."):
        out = out[part]
    return out


def stage_hashes(cfg: dict[str, Any], files: dict[str, str] | None = None) -> dict[str, str]:
    """Input hash of every stage (config keys it reads + hashes of the stages it depends on).

    `files` adds the content of input files a stage reads besides its dependencies' results: the
    finetune stage reads search/chosen.json, which a replan (below) rewrites.
    """
    hashes: dict[str, str] = {}
    for stage in STAGES:
        doc = {"inputs": {k: _value(cfg, k) for k in INPUTS[stage]}, "after": [hashes[d] for d in DEPENDS[stage]]}
        if files and stage in files:
            doc["file"] = files[stage]
        hashes[stage] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    return hashes


def model_checksum(path: Path) -> str | None:
    """SHA-256 of a model file (None when absent): what the deploy and evaluate stages record having used."""
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Run:
    """One run folder: its resolved config, stage states and the objects the stages share."""

    def __init__(self, cfg: dict[str, Any], progress: bool = True) -> None:
        from compiler.targets import get_target

        self.cfg = cfg
        self.dir = Path(cfg["run_dir"])
        self.progress = progress
        self.hashes = stage_hashes(cfg)
        self.refresh_hashes()
        self.target = get_target(str(cfg["target"]), cfg["threads"])
        self.layout = RunLayout(self.dir, self.target.name)
        self.lock: FolderLock | None = None  # taken by prepare()
        w, h = parse_size(cfg["output_size"], "config: output_size")
        self.out_hw = (h, w)

    def refresh_hashes(self) -> None:
        """Recompute the hashes once search/chosen.json exists or changed (the finetune stage's input file)."""
        chosen = self.dir / "search" / "chosen.json"
        files = {"finetune": hashlib.sha256(chosen.read_bytes()).hexdigest()[:16]} if chosen.exists() else {}
        self.hashes = stage_hashes(self.cfg, files)

    # --- state -----------------------------------------------------------------------------------
    def states(self) -> dict[str, Any]:
        """RUN/stages.json (empty when absent)."""
        path = self.dir / STATE_FILE
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            raise InputError(f"{path}: corrupt stage file; remove it to redo the run") from None

    def _set_state(self, stage: str, **fields: Any) -> None:
        states = self.states()
        states[stage] = {**states.get(stage, {}), **fields}
        write_text(self.dir / STATE_FILE, json.dumps(states, indent=1) + "\n")

    def is_done(self, stage: str) -> bool:
        """Finished with the current inputs."""
        s = self.states().get(stage, {})
        return bool(s.get("done")) and s.get("hash") == self.hashes[stage]

    # --- running ---------------------------------------------------------------------------------
    def run_stage(self, stage: str, force: bool = False) -> Any:
        """Run one stage unless it is done with the same inputs (then return its stored result)."""
        state = self.states().get(stage, {})
        if not force and self.is_done(stage):
            note(f"[run] {stage}: up to date, skipped")
            return state.get("result")
        missing = [d for d in DEPENDS[stage] if not self.is_done(d)]
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
        used = {"model_sha256": model_checksum(self.layout.final_model)} if stage in MODEL_READERS else {}
        result = getattr(self, f"_stage_{stage}")(fresh)
        if stage in SEARCH_STAGES:
            self.refresh_hashes()  # chosen.json is written now
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
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        moved = []
        for s in stages:
            if s == stage and stage not in states:
                continue
            for path in self.layout.outputs(s):
                if path.exists() or path.is_symlink():
                    dest = self.layout.stale / stamp / path.relative_to(self.dir)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    path.rename(dest)
                    moved.append(s)
            if s in SEARCH_STAGES and s in states:
                from srprune.search.arch import STUDY_ARCH
                from srprune.search.ratios import STUDY_RATIOS

                _delete_study(self.storage(), STUDY_ARCH if s == "arch" else STUDY_RATIOS)
        dropped = [s for s in stages[1:] if s in states]
        if dropped or stage in states:
            for s in dropped:
                del states[s]
            states.pop(stage, None)
            write_text(self.dir / STATE_FILE, json.dumps(states, indent=1) + "\n")
        if moved or dropped:
            where = f"; old outputs moved to {self.layout.stale / stamp}" if moved else ""
            note(f"[run] {stage}: inputs changed or forced: invalidated {', '.join([stage, *dropped])}{where}",
                       err=True, stdout=True)
            log.info("invalidated %s (moved: %s)", [stage, *dropped], sorted(set(moved)))

    def storage(self) -> Any:
        """The Optuna storage of the searches."""
        from srprune.search.study import open_storage, storage_url

        if not hasattr(self, "_storage"):
            self._storage = open_storage(storage_url(self.dir, self.cfg["search"]["storage"]))
        return self._storage

    def context(self) -> Any:
        """What the search trials need (loaded once)."""
        if not hasattr(self, "_ctx"):
            from srprune.latency import load_predictor
            from srprune.search.arch import SearchContext
            from srprune.search.supernet_stage import val_tensors
            from supernet.space import SearchSpace
            from supernet.train import supernet_from_checkpoint

            scale = int(self.cfg["scale"])
            self._ctx = SearchContext(
                supernet=supernet_from_checkpoint(self.dir / "supernet" / "checkpoint.pt").eval(),
                space=SearchSpace.from_dict(self.cfg["supernet"]["space"]),
                val=val_tensors(self.cfg["val_data"], scale),
                predictor=load_predictor(self.dir, self.target.name, self.target.threads),
                out_hw=self.out_hw, scale=scale, budget_ms=float(self.cfg["budget_ms"]), search=self.cfg["search"],
                adapt_batches=self._adapt_batches(scale))
        return self._ctx

    def _adapt_batches(self, scale: int) -> list:
        """The fixed training batches of the candidates' short adaptation (seeded; none when adapt_steps is 0)."""
        n = int(self.cfg["search"]["adapt_steps"])
        if n == 0:
            return []
        from srprune.data import PatchSampler, load_dataset

        t = self.cfg["supernet"]["train"]
        sampler = PatchSampler(load_dataset(self.cfg["data"], scale, split="train"), scale, int(t["patch_size"]),
                               int(t["batch_size"]), seed=int(self.cfg["search"]["seed"]) + 777)
        batches = iter(sampler)
        return [next(batches) for _ in range(n)]

    # --- the stages (each returns a small JSON-able summary) ----------------------------------------
    def _stage_latency(self, fresh: bool) -> dict:
        from srprune.search.latency_stage import run_stage

        return run_stage(self.cfg, self.dir, self.target, self.out_hw, progress=self.progress)

    def _stage_supernet(self, fresh: bool) -> dict:
        from srprune.search.supernet_stage import CHECKPOINT, train_supernet_run

        ckpt = self.dir / "supernet" / CHECKPOINT
        r = train_supernet_run({**self.cfg["supernet"], "data": self.cfg["data"], "val_data": self.cfg["val_data"]},
                               self.dir, int(self.cfg["scale"]), resume=ckpt.exists(), progress=self.progress)
        return {"steps": r["step"], "val": r["val"]}

    def _stage_arch(self, fresh: bool) -> dict:
        from srprune.search.arch import run_stage

        r = run_stage(self.context(), self.storage(), self.dir / "search", progress=self.progress, log=log)
        return {k: r[k] for k in ("trial", "proxy_psnr", "predicted_ms", "trials", "feasible")}

    def _stage_ratios(self, fresh: bool) -> dict:
        from srprune.search.ratios import run_stage

        arch = json.loads((self.dir / "search" / "arch.json").read_text())
        r = run_stage(self.context(), arch, self.storage(), self.dir / "search", progress=self.progress, log=log)
        return {k: r[k] for k in ("proxy_psnr", "predicted_ms", "stage") if k in r}

    def _stage_finetune(self, fresh: bool) -> dict:
        from srprune.search.finalize import finetune_stage

        chosen = json.loads((self.dir / "search" / "chosen.json").read_text())
        return finetune_stage(self.cfg, self.dir, chosen, progress=self.progress)

    def _stage_deploy(self, fresh: bool) -> dict:
        from srprune.search.finalize import deploy_stage

        r = deploy_stage(self.cfg, self.dir, self.target, self.out_hw, progress=self.progress)
        return {k: r[k] for k in ("predicted_ms", "measured_ms", "budget_ms", "within_budget", "budget_fill",
                                  "max_abs_diff")}

    def _stage_evaluate(self, fresh: bool) -> dict:
        from srprune.search.finalize import evaluate_stage

        return evaluate_stage(self.cfg, self.dir, progress=self.progress)

    def _stage_report(self, fresh: bool) -> dict:
        from srprune.search.report import write_report

        return {"path": str(write_report(self.dir))}


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
    run = Run(cfg, progress)
    run.dir.mkdir(parents=True, exist_ok=True)
    command = "srprune search" if shared else "srprune run"
    run.lock = FolderLock(run.dir, command, shared=shared).acquire(
        wait=wait, on_wait=lambda msg: note(f"[run] {msg}"))
    early_budget_check(run)
    write_text(run.dir / "config.yaml", config_mod.dump(cfg))
    handler = logging.FileHandler(run.dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for name in ("srprune.run", "supernet.train"):
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
    check_budget(predictor, run.cfg, SearchSpace.from_dict(run.cfg["supernet"]["space"]), run.out_hw)


def run_pipeline(run: Run, stages: tuple[str, ...] = STAGES, force: bool = False,
                 on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run `stages` in order; returns {stage: result}. A deployed model measured over the budget is replanned
    (up to search.replans times): the next candidate is fine-tuned, compiled and measured in its place."""
    results = {}
    for stage in stages:
        if on_stage:
            on_stage(stage)
        results[stage] = run.run_stage(stage, force=force)
    after = [s for s in STAGES[STAGES.index("finetune"):] if s in stages]
    feedback = run.dir / "search" / "feedback.json"
    while "deploy" in stages:
        seen = feedback.read_text() if feedback.exists() else None
        if replan(run):
            for stage in after:
                results[stage] = run.run_stage(stage)
            continue
        if "report" in stages and feedback.exists() and feedback.read_text() != seen:
            from srprune.search.report import write_report

            write_report(run.dir)  # the last measurement is news for the report
        break
    return results


def replan(run: Run) -> bool:
    """After a measurement outside the window: pick another candidate for finetune and after; False to stop.

    Why: the latency model is a prediction; the compiled network's measured time is the truth. When the
    deployed network measures over the budget, or under budget x min_fill, its measured/predicted ratio
    corrects the predictions of every scored trial (network-level error is mostly a common factor), and
    the best trial not deployed before whose corrected time lies in the search window becomes
    search/chosen.json. At most search.replans times. If the last one is over budget and nothing else
    fits, the best earlier deployment that was within budget is restored (fine-tuning is deterministic,
    so it comes back the same). Every measurement is kept in search/feedback.json.
    """
    from srprune.search.replan import next_choice

    dep = (run.states().get("deploy") or {}).get("result") or {}
    if not dep:
        return False
    budget = float(dep["budget_ms"])
    over = dep["measured_ms"] > budget
    under = dep["measured_ms"] < budget * float(run.cfg["search"]["min_fill"])
    if not (over or under):
        return False
    feedback_path = run.dir / "search" / "feedback.json"
    feedback = json.loads(feedback_path.read_text()) if feedback_path.exists() else []
    chosen = json.loads((run.dir / "search" / "chosen.json").read_text())
    entry = {"candidate": {"genome": chosen["genome"], "prune": chosen["prune"]}, "proxy_psnr": chosen["proxy_psnr"],
             "predicted_ms": dep["predicted_ms"], "measured_ms": dep["measured_ms"], "within_budget": not over}
    if feedback and feedback[-1]["candidate"] == entry["candidate"]:
        return False  # this deployment was handled already (a re-run of a finished run, or a restored one)
    feedback.append(entry)
    write_text(feedback_path, json.dumps(feedback, indent=1) + "\n")
    what = f"measured {dep['measured_ms']:.1f} ms, {'over' if over else 'under'} the window of the {budget:g} ms budget"
    new = next_choice(run.context(), run.storage(), feedback) if len(feedback) <= int(run.cfg["search"]["replans"]) \
        else None
    if new is None:
        ok = [f for f in feedback[:-1] if f.get("within_budget")]
        if over and ok and not chosen.get("restored"):  # restore once: a restored model measured over stays
            best = max(ok, key=lambda f: f["proxy_psnr"])
            new = {**best["candidate"], "proxy_psnr": best["proxy_psnr"], "predicted_ms": best["predicted_ms"],
                   "stage": "replan", "restored": True}
            note(f"[run] {what}; no other candidate fits: restoring the earlier deployment that measured "
                       f"{best['measured_ms']:.1f} ms")
        else:
            note(f"[run] {what}; no other scored candidate fits after correcting the predictions by the "
                       f"measurement, or search.replans ({run.cfg['search']['replans']}) are used up")
            return False
    else:
        note(f"[run] {what} (predicted {dep['predicted_ms']:.1f}): replanning with predictions "
                   f"x{new['correction']:.3f}")
    write_text(run.dir / "search" / "chosen.json", json.dumps(new, indent=1) + "\n")
    run.refresh_hashes()
    log.info("replan %d: %s", len(feedback), json.dumps({k: v for k, v in new.items() if k != "genome"}))
    return True
