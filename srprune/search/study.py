"""Optuna studies for stages 2 and 3: storage, a worker loop that several processes can share, exports.

Why a hand-written ask/tell loop and not `study.optimize`:
- Reproducible and resumable: each trial gets a sampler seeded by the number of trials finished
  before it, so a search killed and re-run asks exactly what an uninterrupted one asks (a killed
  trial is marked failed and its parameters are asked again).
- Shared: any number of processes (on one machine or several, given a server storage URL) run the
  loop on one study; each trial is created atomically by the storage, and a process that finds the
  study already holding `n_trials` finished-or-running trials before its own stops, so the study ends
  with exactly `n_trials` complete trials, none lost or duplicated.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from srprune.errors import InputError
from srprune.layout import RunLayout

WORKER_ATTR = "worker"  # host:pid of the process running a trial
# A trial of another machine still running after this long is taken as lost (a trial takes seconds).
REMOTE_STALE_S = 600.0
UNNAMED_STALE_S = 60.0  # a running trial that never got its worker's name after this long is taken as lost
STUCK_LIMIT = 3
GIVE_UP = 200  # pruned trials in a row after which the space counts as exhausted (fewer points than trials)


def _quiet_optuna() -> None:
    """Optuna's own log lines and its experimental-feature warnings would drown the progress bar."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def storage_url(run_dir: Path, url: str | None) -> str:
    """The configured storage, or SQLite in RUN/search/study.db."""
    if url:
        return str(url)
    path = RunLayout(run_dir).study_db.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


JOURNAL = "journal://"  # journal:///abs/path: Optuna's JournalStorage on a (shared) file, no server
# Databases whose driver an extra of ours installs (pyproject.toml); others name the missing module only.
DRIVER_EXTRAS = {"postgresql": "distributed"}


def check_storage_url(url: str) -> None:
    """Refuse, in one line and before any work, a storage URL that cannot open: malformed, an unknown database,
    or a driver that is not installed (SQLAlchemy only says "Failed to import DB access module" on first use,
    after the earlier stages have run). Connects to nothing."""
    if url.startswith(JOURNAL):
        path = journal_path(url)
        if not path.parent.is_dir():
            raise InputError(f"search storage {url!r}: folder {path.parent} does not exist")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise InputError(f"search storage {url!r}: not an Optuna storage URL (sqlite:///FILE, "
                         f"postgresql://USER@HOST/DB, journal:///FILE): {exc}") from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        extra = DRIVER_EXTRAS.get(parsed.get_backend_name())
        how = f"pip install 'srprune[{extra}]'" if extra else f"install the Python module {exc.name or parsed.drivername}"
        raise InputError(f"search storage {shown!r}: its driver ({exc.name or parsed.drivername}) is not "
                         f"installed: {how}") from None


def journal_path(url: str) -> Path:
    """The file of a journal:///abs/path URL (journal://rel/path is relative to the working folder)."""
    rest = url[len(JOURNAL):]
    if not rest or rest == "/":
        raise InputError(f"search storage {url!r}: journal URLs name a file: journal:///shared/disk/study.log")
    return Path(rest).absolute()


def open_storage(url: str) -> Any:
    """An Optuna storage: RDB (SQLite waits for locks: several local processes) or a journal file.

    Optuna creates the schema of a new database on first open, and processes that open a new database at
    the same moment race on it ("table studies already exists", a duplicate alembic_version row). Local
    SQLite opens are serialised with a lock file beside the database; other URLs retry a few times (the
    losing process then finds the schema complete). A journal file needs no schema: Optuna appends each
    change under a lock file beside it (symlink-based, which works on NFS).
    """
    import optuna

    _quiet_optuna()
    check_storage_url(url)
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = journal_path(url)
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from None
    kwargs: dict[str, Any] = {}
    lock_path = None
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
        db = url.split(":///", 1)[-1]
        lock_path = Path(db + ".lock") if db and db != ":memory:" else None
    last: Exception | None = None
    for attempt in range(SCHEMA_RETRIES):
        try:
            with _file_lock(lock_path):
                return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any driver error is a bad URL or an unreachable server
            last = exc
            if "already exists" not in str(exc) and "UNIQUE constraint" not in str(exc) and "duplicate" not in str(exc):
                break
            time.sleep(0.2 * (attempt + 1))
    raise InputError(f"search storage {url!r}: {str(last).strip().splitlines()[0]}") from None


SCHEMA_RETRIES = 5


@contextlib.contextmanager
def _file_lock(path: Path | None):
    """An exclusive advisory lock on `path` for the duration (no lock when path is None)."""
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def make_sampler(kind: str, seed: int, startup: int) -> Any:
    """A seeded Optuna sampler; TPE and GP model the constraints each trial stores (random ignores them)."""
    import optuna

    _quiet_optuna()
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True)


def constraint_of(trial: Any) -> list[float]:
    """The stored constraint values of a trial (<= 0 means feasible)."""
    return list(trial.user_attrs.get("constraint", [0.0]))


def _alive(trial: Any) -> bool:
    """Whether the worker running `trial` is alive: its process on this host, or a recent start elsewhere."""
    host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
    if host != socket.gethostname():
        started = trial.datetime_start
        return started is None or (datetime.now() - started).total_seconds() < REMOTE_STALE_S
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study: Any) -> int:
    """Mark running trials of dead workers as failed (their parameters are asked again); returns how many."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if WORKER_ATTR in t.user_attrs:
            dead = not _alive(t)
        else:  # killed between `ask` and naming its worker (milliseconds apart)
            dead = t.datetime_start is not None and (datetime.now() - t.datetime_start).total_seconds() > UNNAMED_STALE_S
        if dead:
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            n += 1
    return n


def run_trials(study: Any, n_trials: int, objective: Callable[[Any], tuple[list[float], list[float]] | None],
               sampler_factory: Callable[[int], Any], *, progress: bool = True, desc: str = "trials",
               log: logging.Logger | None = None) -> int:
    """Run `objective` until the study holds `n_trials` complete trials; returns how many this process ran.

    `objective(trial)` returns (values, constraints) or None for a point outside the space or one
    already evaluated (the trial is marked pruned and does not count). `sampler_factory(k)` gives the
    sampler for the k-th trial (k = trials finished before it); after STUCK_LIMIT pruned trials in a
    row (a model-based sampler that keeps proposing its incumbent) one random trial breaks the loop.
    """
    from optuna.trial import TrialState

    from srcommon.progress import progress_bar

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    me = f"{socket.gethostname()}:{os.getpid()}"
    ran = 0
    fail_dead_trials(study)
    done0 = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    bar = progress_bar(total=n_trials, initial=min(done0, n_trials), desc=desc, unit="trial", disable=not progress)
    try:
        while True:
            trials = study.get_trials(deepcopy=False)
            complete = sum(t.state == TrialState.COMPLETE for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if complete >= n_trials:
                break
            if complete + running >= n_trials:  # another worker is finishing the last ones
                time.sleep(0.5)
                fail_dead_trials(study)
                continue
            stuck = 0  # trailing pruned trials: the sampler keeps asking duplicates or invalid points
            for t in sorted((t for t in trials if t.state in finished), key=lambda t: -t.number):
                if t.state != TrialState.PRUNED:
                    break
                stuck += 1
            if stuck >= GIVE_UP:
                if log:
                    log.info("%d points in a row were repeats or invalid: the space looks exhausted", stuck)
                break
            k = sum(t.state in finished for t in trials)
            study.sampler = sampler_factory(k) if stuck < STUCK_LIMIT else make_sampler("random", k, 0)
            trial = study.ask()
            trial.set_user_attr(WORKER_ATTR, me)
            before = [t for t in study.get_trials(deepcopy=False)
                      if t.number < trial.number and t.state in (TrialState.COMPLETE, TrialState.RUNNING)]
            if len(before) >= n_trials:  # lost a race: the study is full
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=TrialState.FAIL)
                continue
            result = objective(trial)
            if result is None:
                study.tell(trial, state=TrialState.PRUNED)
                continue
            values, constraints = result
            trial.set_user_attr("constraint", [float(c) for c in constraints])
            for i, c in enumerate(constraints):  # what TPE and GP read (Optuna >= 5)
                trial.set_constraint(f"c{i}", float(c))
            study.tell(trial, values)
            ran += 1
            bar.update(1)
            if log:
                log.info("trial %d: values %s constraint %s", trial.number, values, constraints)
    finally:
        bar.close()
    return ran


def complete_trials(study: Any) -> list[Any]:
    """Complete trials in number order."""
    from optuna.trial import TrialState

    return sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)


def feasible(trial: Any) -> bool:
    """All constraints satisfied."""
    return all(c <= 0 for c in constraint_of(trial))


def nondominated(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (PSNR, ms) points no other point beats in both (PSNR up, ms down), fastest first.

    One sweep by latency: a point is on the front when its PSNR beats every faster point's.
    """
    best, front = float("-inf"), []
    for i in sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0])):
        if points[i][0] > best:
            front.append(i)
            best = points[i][0]
    return front


def pareto_front(trials: list[Any]) -> list[Any]:
    """Feasible trials on the (PSNR up, latency down) front: values = [psnr, ms]."""
    ok = [t for t in trials if feasible(t)]
    return [ok[i] for i in nondominated([(t.values[0], t.values[1]) for t in ok])]


def trials_csv(trials: list[Any], extra: Callable[[Any], dict[str, Any]]) -> str:
    """CSV text: trial (its place among the complete trials), psnr, latency, feasible, plus `extra(trial)`.

    Why not Optuna's trial number: a trial killed with its process keeps its number as a failed
    trial, so numbers differ between a resumed search and an uninterrupted one; places do not.
    """
    rows = []
    for i, t in enumerate(trials):
        rows.append({"trial": i, "proxy_psnr": round(t.values[0], 4), "predicted_ms": round(t.values[1], 3),
                     "feasible": feasible(t), **extra(t)})
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()
