"""The search pipeline (`srprune run | search | report`) end to end on a tiny space, plus its pieces.

One module-scoped run folder holds the latency model and the supernet of a tiny space (about 30 s);
every test copies it and runs the later stages. Nothing is mocked: layers and networks are compiled
with TVM and timed, the supernet is trained, the search runs Optuna on SQLite.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import ROOT, assert_one_line_error

TINY = {
    "output_size": "256x192",
    # tiny networks take ~0.3-1.5 ms quiet: every one fits, even where the table was timed on a loaded machine (a
    # layer table measured beside another test run's 2-thread work came out 4-18x slow: a 3 ms budget was refused)
    "budget_ms": 50.0,
    "threads": 2,
    "supernet": {"space": {"num_cells": 2, "widths": [8, 16], "blocks": ["conv", "res", "skip"], "scales": [2]},
                 "train": {"steps": 30, "val_every": 30, "checkpoint_every": 10, "batch_size": 8}},
    "latency": {"repeat": 3, "calibrate": 2, "span_s": 0},  # one burst: the span has its own tests (and the replan's)
    "search": {"trials": 12, "startup_trials": 5, "ratio_trials": 6, "blocks": [[4, 8]], "ratios": [0.5, 0.75],
               "min_fill": 0.0, "replans": 0},  # replanning acts on noisy measurements; its own test turns it on
    "finetune": {"steps": 20, "batch_size": 8},
}


def write_config(path: Path, run_dir: Path, **changes) -> Path:
    cfg = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        holder = cfg
        *parents, last = key.split("__")
        for p in parents:
            holder = holder.setdefault(p, {})
        holder[last] = value
    cfg["run_dir"] = str(run_dir)
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args, cache: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), SRPRUNE_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-c", "from srprune.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A run folder with the latency and supernet stages done (tiny space); copied by the tests."""
    root = tmp_path_factory.mktemp("search-base")
    cache = root / "cache"
    cfg = write_config(root / "c.yaml", root / "run")
    for stage in ("latency", "supernet"):
        r = cli("run", "-c", cfg, "--stage", stage, cache=cache)
        assert r.returncode == 0, r.stderr[-3000:]
    return root / "run", cache


def copy_run(base, tmp_path: Path, name: str = "run", **changes) -> tuple[Path, Path]:
    src, cache = base
    run = tmp_path / name
    shutil.copytree(src, run)
    return run, write_config(tmp_path / f"{name}.yaml", run, **changes)


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def complete_trials(db: Path, study: str) -> list[int]:
    with sqlite3.connect(db) as con:
        rows = con.execute("select t.number from trials t join studies s on t.study_id = s.study_id "
                           "where s.study_name = ? and t.state = 'COMPLETE' order by t.number", (study,)).fetchall()
    return [r[0] for r in rows]


# --- the whole pipeline --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full(base, tmp_path_factory):
    """The tiny pipeline run to the end once (stages after the base's)."""
    tmp = tmp_path_factory.mktemp("search-full")
    run, cfg = copy_run(base, tmp)
    r = cli("run", "-c", cfg, cache=base[1])
    assert r.returncode == 0, r.stderr[-3000:]
    return run, cfg, r


def test_run_writes_every_output(full):
    run, _, r = full
    for rel in ("config.yaml", "stages.json", "run.log", "search/study.db", "search/trials.csv", "search/pareto.json",
                "search/chosen.json", "final/model.pt", "final/arch.json", "compiled/host/manifest.json",
                "compiled/host/latency.json", "eval/metrics.json", "eval/metrics.md", "report.html"):
        assert (run / rel).is_file(), rel
    states = json.loads((run / "stages.json").read_text())
    assert [s for s in states if states[s]["done"]] == ["latency", "supernet", "arch", "ratios", "finetune", "compile",
                                                        "evaluate", "report"]
    assert "latency on host: measured" in r.stdout and "PSNR-Y on builtin" in r.stdout


def test_chosen_is_the_best_feasible_trial_and_the_front_is_nondominated(full):
    run, _, _ = full
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    upper = cfg["budget_ms"] * (1 - cfg["search"]["margin"])
    rows = read_csv(run / "search" / "trials.csv") + read_csv(run / "search" / "ratios.csv")
    assert len(read_csv(run / "search" / "trials.csv")) == cfg["search"]["trials"]
    for row in rows:  # feasibility is exactly the budget constraint
        assert (row["feasible"] == "True") == (float(row["predicted_ms"]) <= upper + 5e-4)
    chosen = json.loads((run / "search" / "chosen.json").read_text())
    feasible = [float(r["proxy_psnr"]) for r in rows if r["feasible"] == "True"]
    if chosen.get("stage") == "replan":  # the first deployment measured outside the window (a loaded machine):
        # the replan chose among the scored trials by corrected predictions, never one deployed before
        feedback = json.loads((run / "search" / "feedback.json").read_text())
        assert any(float(r["proxy_psnr"]) == pytest.approx(chosen["proxy_psnr"], abs=1e-4) for r in rows)
        assert all(f["candidate"] != {"genome": chosen["genome"], "prune": chosen["prune"]} for f in feedback[:-1]) \
            or chosen.get("restored")
    else:
        assert chosen["proxy_psnr"] == pytest.approx(max(feasible), abs=1e-4)
        assert chosen["predicted_ms"] <= upper
    stage2 = [r for r in read_csv(run / "search" / "trials.csv") if r["feasible"] == "True"]
    pts = [(float(r["proxy_psnr"]), float(r["predicted_ms"])) for r in stage2]
    front = json.loads((run / "search" / "pareto.json").read_text())
    assert front
    for f in front:
        p, ms = round(f["proxy_psnr"], 4), round(f["predicted_ms"], 3)
        assert not any(q >= p and m <= ms and (q > p or m < ms) for q, m in pts)
    for q, m in pts:  # every feasible trial is on the front or dominated by a front member
        assert any(round(f["proxy_psnr"], 4) >= q and round(f["predicted_ms"], 3) <= m for f in front)


def test_final_model_has_the_chosen_sparsity_and_compiled_output_matches(full):
    from srprune.models.modelfile import load_model

    run, _, _ = full
    chosen = json.loads((run / "search" / "chosen.json").read_text())
    model, info = load_model(run / "final" / "model.pt")
    mods = dict(model.named_modules())
    for name, p in chosen["prune"].items():
        w = mods[name].weight.detach().reshape(mods[name].weight.shape[0], -1)
        if p["scheme"] == "block":  # whole columns of each rows x cols block are zero, at the chosen ratio
            rows, cols = p["block"]
            blocks = w.reshape(w.shape[0] // rows, rows, w.shape[1] // cols, cols)
            col_zero = (blocks == 0).all(dim=1)
            assert float(col_zero.float().mean()) == pytest.approx(p["ratio"], abs=1.0 / col_zero.numel() + 1e-6)
        else:
            assert float((w == 0).float().mean()) >= p["ratio"] - 0.05
    lat = json.loads((run / "compiled" / "host" / "latency.json").read_text())
    assert lat["max_abs_diff"] <= 1e-4
    assert lat["min_ms"] <= lat["measured_ms"] <= lat["max_ms"]
    assert lat["within_budget"] == (lat["measured_ms"] <= lat["budget_ms"])
    assert [r["layer"] for r in lat["layers"]][0] == "head" and lat["layers"][-1]["layer"] == "tail"
    # the compiled artifact loads and reproduces the final model's output
    from compiler.artifact import load_artifact
    from tvm import relax
    import tvm

    manifest, lib = load_artifact(run / "compiled" / "host")
    x = np.random.default_rng(1).random(manifest["input"]["shape"], dtype=np.float32)
    vm = relax.VirtualMachine(lib, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-4


def test_eval_metrics_follow_the_protocol(full):
    """The final PSNR in metrics.json recomputed here from the model file with srprune.metrics."""
    from srprune.data import load_dataset
    from srprune.evaluate import super_resolve
    from srprune.metrics import psnr
    from srprune.models.modelfile import load_model

    run, _, _ = full
    doc = json.loads((run / "eval" / "metrics.json").read_text())
    model, _ = load_model(run / "final" / "model.pt")
    pairs = load_dataset("builtin", 2, split="val")
    mine = float(np.mean([psnr(super_resolve(model.eval(), p.lr), p.hr, crop_border=2) for p in pairs]))
    assert doc["datasets"]["builtin"]["final"]["psnr"] == pytest.approx(mine, abs=1e-6)
    assert doc["datasets"]["builtin"]["bicubic"]["psnr"] == pytest.approx(33.486, abs=0.01)  # docs/benchmarks.md


def test_report_is_one_offline_file(full):
    run, _, _ = full
    text = (run / "report.html").read_text()
    crops = json.loads((run / "eval" / "metrics.json").read_text())["crops"]  # 2-3 windows per image (test_crops.py)
    per_image = {c["image"]: sum(d["image"] == c["image"] for d in crops) for c in crops}
    assert all(2 <= n <= 3 for n in per_image.values()) and {c["why"] for c in crops} == {"detail", "difference"}
    assert text.count("<svg") >= 1 and text.count("data:image/png;base64,") == 3 * len(crops)  # bicubic, final, HR
    for external in ("src='http", 'src="http', "href='http", 'href="http', "<script src", "<link"):
        assert external not in text
    for heading in ("Stages", "Chosen network, layer by layer", "PSNR / SSIM", "Crops"):
        assert heading in text


def test_rerun_skips_every_stage_and_a_change_redoes_only_what_depends_on_it(full, base, tmp_path):
    run, cfg, _ = full
    r = cli("run", "-c", cfg, cache=base[1])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("up to date, skipped") == 8
    # a copy with another fine-tuning budget: the search is reused, fine-tuning and after are redone
    copy = tmp_path / "changed"
    shutil.copytree(run, copy)
    cfg2 = write_config(tmp_path / "c2.yaml", copy, finetune__steps=10)
    r = cli("run", "-c", cfg2, cache=base[1])
    assert r.returncode == 0, r.stderr[-2000:]
    for stage in ("latency", "supernet", "arch", "ratios"):
        assert f"[run] {stage}: up to date, skipped" in r.stderr
    for stage in ("finetune", "compile", "evaluate", "report"):
        assert f"[run] {stage}: starting" in r.stderr
    meta = torch.load(copy / "final" / "model.pt", weights_only=False)
    assert "finetune" in json.dumps(meta.get("meta", {}))


def test_rerunning_an_upstream_stage_invalidates_everything_downstream(full, base, tmp_path):
    run, _, _ = full
    copy = tmp_path / "changed"
    shutil.copytree(run, copy)
    cfg2 = write_config(tmp_path / "c2.yaml", copy, finetune__steps=10)
    r = cli("run", "-c", cfg2, "--stage", "finetune", cache=base[1])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "invalidated finetune, compile, evaluate, report" in r.stderr
    states = json.loads((copy / "stages.json").read_text())
    assert states["finetune"]["done"] and not {"compile", "evaluate", "report"} & set(states)
    # no compiled model, metric or report of the old model is left where a user would read it ...
    assert not (copy / "compiled" / "host").exists() and not (copy / "eval").exists()
    assert not (copy / "report.html").exists()
    # ... and nothing was deleted: the old outputs were moved aside
    (stale,) = list((copy / "stale").iterdir())
    assert (stale / "compiled" / "host" / "model.so").is_file() and (stale / "final" / "model.pt").is_file()
    assert (stale / "eval" / "metrics.json").is_file() and (stale / "report.html").is_file()
    r = cli("report", copy, cache=base[1])
    assert r.returncode == 0, r.stderr[-2000:]
    text = (copy / "report.html").read_text()
    assert "Measured latency" not in text and "PSNR / SSIM" not in text


def test_report_refuses_outputs_whose_inputs_changed(full, base, tmp_path):
    run, _, _ = full
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    states = json.loads((copy / "stages.json").read_text())
    states["compile"]["hash"] = "0" * 16  # deployed under other inputs (as an older srprune could leave it)
    (copy / "stages.json").write_text(json.dumps(states))
    assert cli("report", copy, cache=base[1]).returncode == 0
    text = (copy / "report.html").read_text()
    assert "Not shown, stale" in text and "compile (its inputs changed since it ran)" in text
    assert "Measured latency" not in text and "PSNR / SSIM" in text
    shutil.copy(run / "stages.json", copy / "stages.json")
    with open(copy / "final" / "model.pt", "ab") as f:  # another final model than the one compiled and scored
        f.write(b"\0")
    assert cli("report", copy, cache=base[1]).returncode == 0
    text = (copy / "report.html").read_text()
    assert "compile (final/model.pt changed since it ran)" in text and "evaluate (final/model.pt changed" in text
    assert "Measured latency" not in text and "PSNR / SSIM" not in text


# --- kill and resume; several processes on one study -----------------------------------------------


def _wait_for(predicate, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_killed_run_resumes_to_the_same_result(base, tmp_path):
    """Killed in stage 2 and run again: the same trials, choice, fine-tuned weights and PSNR as an uninterrupted run."""
    changes = {"search__trials": 30, "search__ratio_trials": 4}
    ref, ref_cfg = copy_run(base, tmp_path, "ref", **changes)
    r = cli("run", "-c", ref_cfg, cache=base[1])
    assert r.returncode == 0, r.stderr[-2000:]
    run, cfg = copy_run(base, tmp_path, "killed", **changes)
    env = dict(os.environ, PYTHONPATH=str(ROOT), SRPRUNE_CACHE_DIR=str(base[1]))
    proc = subprocess.Popen([sys.executable, "-c", "from srprune.cli import main; main()", "run", "-c", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    db = run / "search" / "study.db"
    try:
        assert _wait_for(lambda: db.exists() and len(_safe_trials(db)) >= 8, 120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(_safe_trials(db)) < 30  # killed in the middle of stage 2
    r = cli("run", "-c", cfg, cache=base[1])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[run] arch: resuming" in r.stderr
    for name in ("search/trials.csv", "search/ratios.csv", "search/chosen.json", "final/arch.json"):
        assert (run / name).read_text() == (ref / name).read_text(), name
    a = torch.load(run / "final" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(ref / "final" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    psnr = [json.loads((d / "eval" / "metrics.json").read_text())["datasets"]["builtin"]["final"]["psnr"]
            for d in (run, ref)]
    assert psnr[0] == psnr[1]


def _safe_trials(db: Path) -> list[int]:
    try:
        return complete_trials(db, "arch")
    except sqlite3.Error:
        return []


def test_two_processes_share_one_study(base, tmp_path):
    run, cfg = copy_run(base, tmp_path, "shared", search__trials=40)
    env = dict(os.environ, PYTHONPATH=str(ROOT), SRPRUNE_CACHE_DIR=str(base[1]))
    cmd = [sys.executable, "-c", "from srprune.cli import main; main()", "search", "-c", str(cfg), "--stage", "arch"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    import optuna

    study = optuna.load_study(study_name="arch", storage=f"sqlite:///{run / 'search' / 'study.db'}")
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 40  # none lost, none extra
    assert len({t.number for t in complete}) == 40
    workers = {t.user_attrs["worker"] for t in complete}
    assert {str(p.pid) for p in procs} == {w.rpartition(":")[2] for w in workers}  # both did trials
    assert len(read_csv(run / "search" / "trials.csv")) == 40


# --- bad input: one line, before any work -----------------------------------------------------------


@pytest.mark.parametrize("changes, fragment", [
    ({"colour": 1}, "unknown key 'colour'"),
    ({"search__samplr": "tpe"}, "unknown key 'search.samplr'"),
    ({"data": "/no/such/images"}, "data: dataset '/no/such/images' not found"),
    ({"eval_data": ["builtin", "/no/such/set"]}, "eval_data[1]: dataset '/no/such/set' not found"),
    ({"budget_ms": None}, "budget_ms"),
    ({"search__sampler": "annealing"}, "search.sampler must be one of tpe, gp, random"),
    ({"target": "gameboy"}, "target:"),
    ({"supernet__space__blocks": ["conv", "mystery"]}, "unknown block type 'mystery'"),
    ({"search__schemes": ["dense", "unstructured"]}, "no fast kernel"),
    # wrong types, anywhere: every value is checked by its rule (srprune/search/schema.py)
    ({"rpc": 12345}, "rpc must be a non-empty string, got 12345"),
    ({"rpc": ["rpc://a:1"]}, "rpc must be a non-empty string"),
    ({"rpc": "http://phone"}, "rpc: RPC address must look like rpc://HOST:PORT"),
    ({"threads": "four"}, "threads must be an integer"),
    ({"latency__repeat": 2.5}, "latency.repeat must be an integer"),
    ({"search__blocks": [[4, "8"]]}, "search.blocks[0][1] must be an integer"),
    ({"supernet__train__sampling": 3}, "supernet.train.sampling must be one of fixed, fair"),
    ({"supernet": [1, 2]}, "supernet must be a mapping"),
    # NaN, infinities and out-of-range numbers, named by key
    ({"finetune__lr": float("nan")}, "finetune.lr must be a number in (0, 1], got nan"),
    ({"budget_ms": float("inf")}, "budget_ms must be a number"),
    ({"search__margin": float("-inf")}, "search.margin must be a number in [0, 0.5]"),
    ({"supernet__train__lr": float("nan")}, "supernet.train.lr must be a number"),
    ({"supernet__train__kd_weight": 7}, "supernet.train.kd_weight must be a number in [0, 1]"),
    ({"search__seed": 2**40}, "search.seed must be an integer in [0, "),
    ({"search__ratios": [0.5, 1.0]}, "search.ratios[1] must be a number in (0, 1)"),
    # sizes the scale does not divide
    ({"output_size": "255x191"}, "output_size 255x191 is not a multiple of the scale x2"),
])
def test_bad_config_is_one_line_before_any_work(run_cli, tmp_path, changes, fragment):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", **changes)
    assert_one_line_error(run_cli("run", "-c", cfg), fragment, alone=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, fragment", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a UTF-8 text file"),        # a binary file
    ("budget_ms: 10\nrun_dir: caf\xe9\n".encode("latin-1"), "not a UTF-8 text file"),  # latin-1 text
    (b"budget_ms: 10\n\x00\x00", "binary file"),
    (b"search: 5\nbudget_ms: 10\nsearch: {trials: 3}\n", "duplicate key 'search' on line 3 (first on line 1)"),
    (b"search:\n  trials: 3\n  trials: 4\nbudget_ms: 10\n", "duplicate key 'trials' on line 3"),
    (b"budget_ms: [10\n", "not valid YAML"),
    (b"- 1\n- 2\n", "must be a mapping"),
])
def test_unreadable_config_files_are_one_line(run_cli, tmp_path, content, fragment):
    """Config files that are not UTF-8 YAML mappings with unique keys, for `run` and `supernet train` alike."""
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(content)
    assert_one_line_error(run_cli("run", "-c", cfg, "-o", tmp_path / "run"), fragment, alone=True)
    assert_one_line_error(run_cli("supernet", "train", "-c", cfg, "-o", tmp_path / "run"), fragment, alone=True)
    assert not (tmp_path / "run").exists()


def test_every_config_key_has_a_rule():
    """RUN_RULES covers every key of DEFAULTS (supernet.space/train have their own parsers), and TRAIN_RULES
    every supernet training setting: no value reaches a stage unchecked."""
    from srprune.search.config import DEFAULTS, RUN_RULES
    from srprune.search.supernet_stage import TRAIN_KEYS, TRAIN_RULES

    def keys(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            out |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {prefix + k}
        return out

    assert keys(DEFAULTS) - {"supernet.space", "supernet.train"} == keys(RUN_RULES)
    assert set(TRAIN_RULES) == set(TRAIN_KEYS)


def test_impossible_budget_is_refused_before_any_work(base, tmp_path, run_cli):
    run, cfg = copy_run(base, tmp_path, budget_ms=0.01)
    before = (run / "stages.json").read_text()
    assert_one_line_error(run_cli("run", "-c", cfg), "budget_ms 0.01 is impossible", "fastest network")
    assert (run / "stages.json").read_text() == before
    assert not (run / "search").exists()


def test_stage_needs_its_inputs(run_cli, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run")
    assert_one_line_error(run_cli("run", "-c", cfg, "--stage", "arch"), "needs stage latency")
    assert_one_line_error(run_cli("run", "-c", cfg, "--stage", "nope"), "unknown stage 'nope'")
    assert_one_line_error(run_cli("report", tmp_path / "nothing"), "no such run folder")


# --- pieces ---------------------------------------------------------------------------------------


def test_stage_hashes_follow_dependencies():
    from srprune.search.config import resolve
    from srprune.search.pipeline import stage_hashes

    cfg = resolve({**TINY, "run_dir": "r"})
    base_h = stage_hashes(cfg)
    cfg2 = resolve({**TINY, "run_dir": "other", "finetune": {"steps": 5}})
    h = stage_hashes(cfg2)
    assert [s for s in h if h[s] != base_h[s]] == ["finetune", "compile", "evaluate", "report", "apk"]
    cfg3 = resolve({**TINY, "run_dir": "r", "budget_ms": 2.5})
    h = stage_hashes(cfg3)
    assert h["latency"] == base_h["latency"] and h["supernet"] == base_h["supernet"] and h["arch"] != base_h["arch"]


def test_sparse_configs_fit_their_layers():
    from srprune.search.config import resolve
    from srprune.search.latency_stage import sparse_configs
    from supernet.space import SearchSpace

    cfg = resolve({**TINY, "run_dir": "r", "search": {"blocks": [[4, 8], [2, 8]], "ratios": [0.25, 0.5, 0.75]}})
    space = SearchSpace.from_dict(cfg["supernet"]["space"])
    configs = sparse_configs(space, cfg["search"], (192, 256))
    pruned = [c for c in configs if c.scheme != "dense"]
    # 2 block sizes x 3 ratios + pattern at 0.5556 (scheme_ratio 0.5 lifted) and 0.75; each with one dense twin
    assert len(pruned) == 2 * 3 + 2 and sum(c.scheme == "dense" for c in configs) == 1
    assert {c.ratio for c in pruned if c.scheme == "pattern"} == {0.5556, 0.75}


def test_shipped_configs_resolve(tmp_path):
    """configs/demo.yaml as it is; configs/paper-x2.yaml once its datasets exist (here: empty folders)."""
    from srprune.search.config import load, resolve

    demo = load(ROOT / "configs" / "demo.yaml")
    assert demo["target"] == "host" and demo["budget_ms"] > 0 and demo["data"] == "builtin"
    raw = yaml.safe_load((ROOT / "configs" / "paper-x2.yaml").read_text())
    for key in ("data", "val_data"):
        (tmp_path / raw[key]).mkdir(parents=True, exist_ok=True)
        raw[key] = str(tmp_path / raw[key])
    raw["eval_data"] = [str(tmp_path / d) for d in raw["eval_data"]]
    for d in raw["eval_data"]:
        Path(d).mkdir(parents=True)
    paper = resolve(raw)
    assert paper["target"] == "android-arm64-dotprod" and paper["rpc"].startswith("rpc://") and paper["budget_ms"] == 33
    assert paper["search"]["precisions"] == ["fp32", "int8"]  # the phone's sdot: int8 per layer where it pays


def test_replan_pick_corrects_predictions_by_the_measurement():
    from srprune.search.replan import pick

    def rec(psnr, ms, head):
        return {"proxy_psnr": psnr, "predicted_ms": ms, "genome": {"head": head}, "prune": {}}

    records = [rec(34.9, 9.0, 1), rec(34.8, 7.0, 2), rec(34.7, 6.0, 3), rec(34.6, 4.0, 4), rec(34.85, 7.2, 5)]
    deployed = {"candidate": {"genome": {"head": 1}, "prune": {}}, "predicted_ms": 9.0, "measured_ms": 12.0}
    # correction 12/9: window [6, 9.5] ms corrected -> predicted in [4.5, 7.125]: heads 2 (9.33) and 3 (8.0); head 5
    # (7.2 -> 9.6) is out; the best proxy of the rest is head 2
    best = pick(records, [deployed], 6.0, 9.5)
    assert best["genome"]["head"] == 2 and best["corrected_ms"] == pytest.approx(7.0 * 12 / 9)
    assert best["correction"] == pytest.approx(12 / 9)
    second = {"candidate": {"genome": {"head": 2}, "prune": {}}, "predicted_ms": 7.0, "measured_ms": 10.0}
    assert pick(records, [deployed, second], 6.0, 9.5)["genome"]["head"] == 3  # 10/7: 6.0 -> 8.57
    # 12 ms measured under a [20, 30] window: nothing fills it, and nothing under it beats the deployment's 34.9 dB
    assert pick(records, [{**deployed, "proxy_psnr": 34.9, "within_budget": True}], 20.0, 30.0) is None


def test_replan_pick_falls_back_to_the_best_under_budget_when_nothing_fills_the_window():
    """A deployment measured under budget x min_fill whose corrected window holds no record: the best record under
    budget that beats every deployment within budget (under_fill), else None (it is kept; no loop, no error);
    after an over-budget one, the best under budget."""
    from srprune.search.replan import pick

    def rec(psnr, ms, head):
        return {"proxy_psnr": psnr, "predicted_ms": ms, "genome": {"head": head}, "prune": {}}

    records = [rec(34.0, 2.0, 1), rec(34.5, 3.0, 2), rec(33.0, 1.0, 3), rec(35.0, 300.0, 4)]
    under = {"candidate": {"genome": {"head": 1}, "prune": {}}, "proxy_psnr": 34.0, "predicted_ms": 2.0,
             "measured_ms": 2.0, "within_budget": True}
    best = pick(records, [under], 85.0, 95.0)  # correction 1: head 4 is over budget, nothing in the window
    assert best["genome"]["head"] == 2 and best["under_fill"] is True and best["corrected_ms"] == 3.0
    second = {"candidate": {"genome": {"head": 2}, "prune": {}}, "proxy_psnr": 34.5, "predicted_ms": 3.0,
              "measured_ms": 3.0, "within_budget": True}
    assert pick(records, [under, second], 85.0, 95.0) is None  # head 3 (33 dB) beats no deployment: keep head 2
    over = {"candidate": {"genome": {"head": 4}, "prune": {}}, "proxy_psnr": 35.0, "predicted_ms": 300.0,
            "measured_ms": 1200.0, "within_budget": False}
    best = pick(records, [over], 85.0, 95.0)  # correction 4: heads 1-3 at 8, 12, 4 ms, all under the window
    assert best["genome"]["head"] == 2 and best["under_fill"] is True
    assert "under_fill" not in pick(records, [under], 1.5, 95.0)  # head 2 fills this window


def test_a_restored_deployment_keeps_its_under_fill_mark():
    """Restoring the best earlier deployment within budget brings back its chosen.json as it was, the under_fill
    mark included (the report's 'no network filled' line read it; it was lost)."""
    from srprune.search.replan import restore_choice

    def entry(head, psnr, ms, within, **extra):
        return {"candidate": {"genome": {"head": head}, "prune": {}}, "proxy_psnr": psnr, "predicted_ms": ms * 0.9,
                "measured_ms": ms, "within_budget": within, **extra}

    feedback = [entry(1, 30.0, 20.0, True, under_fill=True, fill=0.62), entry(2, 30.2, 24.0, True),
                entry(3, 30.5, 45.0, False), entry(4, 30.6, 41.0, False)]
    new, ms = restore_choice(feedback)
    assert new["genome"] == {"head": 2} and ms == 24.0 and new["restored"] and "under_fill" not in new
    new, ms = restore_choice([feedback[0], feedback[2], feedback[3]])
    assert new["genome"] == {"head": 1} and ms == 20.0 and new["under_fill"] is True and new["fill"] == 0.62
    assert restore_choice(feedback[2:]) is None  # none within budget
    assert restore_choice(feedback[:1]) is None  # the last entry is the one being replaced, never restored


def test_over_budget_measurement_is_replanned_and_recorded(base, tmp_path):
    """A latency model that predicts 10x too fast: the deployed model measures over budget; the pipeline records
    every such measurement, corrects the predictions by it and deploys the next fitting candidate, until one fits,
    none is left, or search.replans (2) are used up, and says which."""
    budget = 0.15  # below any tiny network's real time (~0.3-1 ms on 2 cores), above the 10x-too-fast predictions
    run, cfg = copy_run(base, tmp_path, budget_ms=budget, search__replans=2, latency__span_s=0.5)
    pred_file = run / "latency" / "host" / "predictor.json"
    doc = json.loads(pred_file.read_text())
    doc.update(alpha=doc["alpha"] * 0.1, beta_ms=0.0, gamma_ms=0.0)
    pred_file.write_text(json.dumps(doc))
    r = cli("run", "-c", cfg, cache=base[1])
    assert r.returncode == 0, r.stderr[-2000:]
    feedback = json.loads((run / "search" / "feedback.json").read_text())
    assert 1 <= len(feedback) <= 3
    assert all(f["measured_ms"] > budget > f["predicted_ms"] and not f["within_budget"] for f in feedback)
    assert len({json.dumps(f["candidate"], sort_keys=True) for f in feedback}) == len(feedback)  # never the same twice
    lat = json.loads((run / "compiled" / "host" / "latency.json").read_text())
    # every over-budget deployment but a final one was followed by a replan
    assert r.stderr.count("replanning with predictions x") == len(feedback) - (0 if lat["within_budget"] else 1)
    if lat["within_budget"]:
        assert json.loads((run / "search" / "chosen.json").read_text())["stage"] == "replan"
    else:
        assert "no other scored candidate fits" in r.stderr
        assert "OVER BUDGET" in r.stdout
    report = (run / "report.html").read_text()
    assert f"Replanned after measurements outside the budget window ({len(feedback)})" in report
    # each over-budget result was timed again over the span before it counted (tests/test_measure_span.py)
    assert r.stderr.count("before deciding") == len(feedback)
    if lat["within_budget"]:  # (min_fill 0: nothing under budget is outside the window)
        assert "timed_again" not in lat and "so timed again" not in report
    else:
        assert lat["timed_again"]["reason"] == "over" and len(lat["samples_ms"]) == 2 * lat["rounds"]
        assert lat["first_ms"] > budget and "so timed again" in report and "over two spans of 0.5 s" in report
    r = cli("run", "-c", cfg, cache=base[1])  # a re-run measures nothing new
    assert r.returncode == 0 and r.stderr.count("up to date, skipped") == 8
    assert json.loads((run / "search" / "feedback.json").read_text()) == feedback


def test_processes_opening_a_new_study_database_at_once_all_succeed(tmp_path):
    """Optuna creates the schema on first open; simultaneous first opens used to fail ('table studies already
    exists', a duplicate alembic_version row: 9 of 24 processes in 4 rounds of 6 before the lock)."""
    for k in range(3):
        url = f"sqlite:///{tmp_path / f'race{k}' / 'study.db'}"
        code = f"from srprune.search.study import open_storage; open_storage({url!r})"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(6)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), [e.strip().splitlines()[-1] for e in errors if e.strip()]


def test_stage3_choices_hold_stage2s_pattern_ratio():
    """A pattern layer's stage-3 ratios are the search's ratios raised to what its kernels keep (5/9): stage 2's own
    ratio for it (scheme_ratio 0.5 -> 5/9) is one of them, so stage 3's first trial is stage 2's choice, and the
    latency table times the same ratios."""
    from srprune.search.candidate import PATTERN_MIN_RATIO, layer_prune, scheme_ratios

    ratios = [0.25, 0.5, 0.75]
    assert scheme_ratios("pattern", ratios) == [PATTERN_MIN_RATIO, 0.75]
    assert layer_prune("pattern", None, 0.5)["ratio"] in scheme_ratios("pattern", ratios)
    assert scheme_ratios("block", ratios) == ratios


def test_a_budget_above_the_space_deploys_the_best_network_under_it(base, tmp_path):
    """A budget the space's largest network cannot fill (min_fill): the run finishes (stage 2 and 3 take the best
    network under budget, marked under_fill, with a warning); the headline and the report say so; a re-run skips
    every stage."""
    run, cfg = copy_run(base, tmp_path, budget_ms=100.0, search__min_fill=0.85, search__replans=1)
    r = cli("run", "-c", cfg, cache=base[1])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "warning: stage 2: no network of the search space fills search.min_fill (85%)" in r.stderr
    arch = json.loads((run / "search" / "arch.json").read_text())
    assert arch["under_fill"] and arch["fill"] == pytest.approx(arch["predicted_ms"] / 100.0, abs=1e-4)
    assert "under search.min_fill (85%) of the budget" in r.stdout
    assert "No network of the search space filled" in (run / "report.html").read_text()
    again = cli("run", "-c", cfg, cache=base[1])
    assert again.returncode == 0 and again.stderr.count("up to date, skipped") == 8
