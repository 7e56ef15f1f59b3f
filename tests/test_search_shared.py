"""A search shared by several processes through a real PostgreSQL server and through an Optuna journal file.

The PostgreSQL fixture starts a throw-away cluster of Debian's server binaries (scripts/install-system-deps.sh
installs them) in a temporary folder, on a unix socket only (no TCP port to collide with), as `nobody` when the
tests run as root (initdb refuses root), and stops it at the end. Each shared search is checked against an
independent reference: the same trials copied into a fresh SQLite study and finished by one process must give
the same choice, front and trial table.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_one_line_error
from tests.test_search import base, cli, copy_run, read_csv  # noqa: F401 - `base` is the module fixture

TRIALS = 24


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres():
    """A running throw-away PostgreSQL cluster; yields a function making a fresh database's SQLAlchemy URL."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries absent (/usr/lib/postgresql/*/bin): run scripts/install-system-deps.sh")
    import psycopg  # the `distributed` extra, part of `dev`: a missing driver is a failure, not a skip

    home = Path(tempfile.mkdtemp(prefix="srprune-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        nobody = pwd.getpwnam("nobody")
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"]
    data, port = home / "data", "5433"

    def pg(*args: str) -> None:
        r = subprocess.run([*as_user, *map(str, args)], cwd=home, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]

    pg(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    pg(bindir / "pg_ctl", "-D", data, "-l", home / "server.log", "-w", "-t", "60", "-o",
       f"-k {home} -p {port} -c listen_addresses='' -c fsync=off -c max_connections=50", "start")
    made = []

    def database(name: str) -> str:
        with psycopg.connect(host=str(home), port=port, user="postgres", dbname="postgres", autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"postgresql://postgres@/{name}?host={home}&port={port}"

    try:
        yield database
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       cwd=home, capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def _shared_search(run_cfg: Path, storage: str, cache: Path) -> list[int]:
    """Two `srprune search` processes on one study; returns their pids."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), SRPRUNE_CACHE_DIR=str(cache))
    cmd = [sys.executable, "-c", "from srprune.cli import main; main()", "search", "-c", str(run_cfg),
           "--stage", "arch", "--storage", storage]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    return [p.pid for p in procs]


def _check_shared(base, tmp_path: Path, storage: str) -> None:
    import optuna

    run, cfg = copy_run(base, tmp_path, "shared", search__trials=TRIALS)
    pids = _shared_search(cfg, storage, base[1])
    study = optuna.load_study(study_name="arch", storage=_open(storage))
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == TRIALS and len({t.number for t in complete}) == TRIALS  # none lost, none extra
    workers = {t.user_attrs["worker"].rpartition(":")[2] for t in complete}
    assert workers == {str(p) for p in pids}  # both processes ran trials
    assert len(read_csv(run / "search" / "trials.csv")) == TRIALS

    # One process given the same trials (copied into a fresh SQLite study) runs none and chooses the same.
    ref, ref_cfg = copy_run(base, tmp_path, "one", search__trials=TRIALS)
    db = ref / "search" / "study.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    optuna.copy_study(from_study_name="arch", from_storage=_open(storage), to_storage=f"sqlite:///{db}")
    r = cli("search", "-c", ref_cfg, "--stage", "arch", cache=base[1])
    assert r.returncode == 0, r.stderr[-2000:]
    after = optuna.load_study(study_name="arch", storage=f"sqlite:///{db}").get_trials()
    assert len(after) == len(study.get_trials())  # it asked nothing new
    for name in ("trials.csv", "pareto.json", "arch.json"):
        assert (run / "search" / name).read_text() == (ref / "search" / name).read_text(), name
    assert json.loads((run / "search" / "arch.json").read_text())  # a real choice, not an empty file


def _open(storage: str):
    from srprune.search.study import open_storage

    return open_storage(storage)


def test_two_processes_share_one_study_on_postgresql(base, tmp_path, postgres):
    _check_shared(base, tmp_path, postgres("shared_search"))


def test_two_processes_share_one_study_in_a_journal_file(base, tmp_path):
    journal = tmp_path / "shared-disk" / "study.log"
    journal.parent.mkdir()
    _check_shared(base, tmp_path, f"journal://{journal}")
    assert journal.stat().st_size > 0


def test_a_missing_driver_is_one_line_naming_the_extra(tmp_path):
    """Without psycopg, a postgresql:// storage stops before any work with the extra to install."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\nbudget_ms: 40\n")
    code = ("import sys; sys.modules['psycopg'] = None; sys.modules['psycopg2'] = None\n"
            "from srprune.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code, "search", "-c", str(cfg), "--storage",
                        "postgresql://me:secret@db.example/srprune"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert_one_line_error(r, "pip install 'srprune[distributed]'", alone=True)
    assert "secret" not in r.stderr  # the password is not echoed
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("url, fragment", [
    ("mysql://me@db.example/srprune", "driver (MySQLdb) is not installed"),
    ("nosuchdb://x/y", "not an Optuna storage URL"),
    ("journal://", "journal URLs name a file"),
    ("journal:///no/such/folder/study.log", "folder /no/such/folder does not exist"),
])
def test_bad_storage_urls_are_one_line(run_cli, tmp_path, url, fragment):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\nbudget_ms: 40\n")
    r = run_cli("search", "-c", cfg, "--storage", url)
    assert_one_line_error(r, fragment, alone=True)
