"""`srprune latency build|predict|validate` end to end on a tiny space and frame, plus its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srprune.latency import space_layers
from supernet.space import SearchSpace
from tests.conftest import assert_one_line_error

SPACE = {"num_cells": 2, "widths": [8], "blocks": ["conv", "res", "skip"], "scales": [2]}
SEARCH = {"schemes": ["dense", "block"], "blocks": [[4, 8]], "ratios": [0.5]}  # one pruned kernel to time
GENOME = {"scale": 2, "head": 8, "activation": "relu",
          "cells": [{"block": "res", "width": 8, "layers": [8]}, {"block": "conv", "width": 8, "layers": []}]}
COMMON = ["--target", "host", "--threads", "1", "--size", "32x16"]


@pytest.fixture(scope="module")
def built_run(tmp_path_factory):
    """One table + calibration built through the CLI, shared by the tests below."""
    from srprune.cli import main

    root = tmp_path_factory.mktemp("lat")
    cfg = root / "cfg.yaml"
    cfg.write_text(json.dumps({"supernet": {"space": SPACE}, "search": SEARCH}))  # JSON is YAML
    run = root / "run"
    try:
        main(["latency", "build", "--run", str(run), "--config", str(cfg), *COMMON, "--repeat", "1",
              "--calibrate", "1"])
    except SystemExit as e:
        assert e.code in (0, None)
    return run, cfg


def test_build_writes_table_and_calibration_and_resumes(built_run, run_cli):
    """The table holds the space's dense layers and, as the run's latency stage does, the search's pruned kernels
    timed on the pruner's masks."""
    from srprune.search.config import DEFAULTS
    from srprune.search.latency_stage import PRUNED_WEIGHTS, sparse_configs

    run, cfg = built_run
    table = json.loads((run / "latency" / "host" / "table.json").read_text())
    space = SearchSpace.from_dict(SPACE)
    pruned = sparse_configs(space, {**DEFAULTS["search"], **SEARCH}, (16, 32))
    assert [c.key() for c in pruned if c.scheme != "dense"] == ["conv:8>8@8x16:k3g1p1:b1:relu:r0:block0.5000/4x8"]
    want = {c.key() for c in space_layers(space, (16, 32)) + pruned}
    assert set(table["entries"]) == want and table["header"]["threads"] == 1
    assert table["header"]["pruned_weights"] == PRUNED_WEIGHTS
    assert (run / "latency" / "host" / "predictor.json").exists()
    r = run_cli("latency", "build", "--run", run, "--config", cfg, *COMMON, "--repeat", "1", "--calibrate", "1")
    assert r.code == 0 and "(0 measured now)" in r.out and "predictor.json" not in r.out  # nothing redone


def test_pruned_entries_timed_on_other_weights_are_remeasured(built_run, run_cli, tmp_path):
    """A table from before the pruner's masks (another weight source in its header): predict says so, and
    build measures its pruned entries again instead of reusing them."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(built_run[0], run)
    path = run / "latency" / "host" / "table.json"
    table = json.loads(path.read_text())
    del table["header"]["pruned_weights"]
    path.write_text(json.dumps(table))
    r = run_cli("latency", "predict", json.dumps(GENOME), "--run", run, *COMMON)
    assert r.code == 0 and "timed on other weights" in r.err
    r = run_cli("latency", "build", "--run", run, "--config", built_run[1], *COMMON, "--repeat", "1",
                "--calibrate", "1")
    assert r.code == 0 and "(1 measured now, 1 pruned re-measured on the pruner's masks)" in r.out, r.out
    r = run_cli("latency", "predict", json.dumps(GENOME), "--run", run, *COMMON)
    assert r.code == 0 and "timed on other weights" not in r.err


def test_predict_equals_hand_sum(built_run, run_cli):
    run, _ = built_run
    r = run_cli("latency", "predict", json.dumps(GENOME), "--run", run, *COMMON, "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    table = json.loads((run / "latency" / "host" / "table.json").read_text())["entries"]
    cal = json.loads((run / "latency" / "host" / "predictor.json").read_text())
    # head, res c1, res c2 (+residual), conv cell, tail: medians straight from the file
    keys = ["conv:3>8@8x16:k3g1p1:b1:none:r0", "conv:8>8@8x16:k3g1p1:b1:relu:r0", "conv:8>8@8x16:k3g1p1:b1:none:r1",
            "conv:8>8@8x16:k3g1p1:b1:relu:r0", "tail:8>12@8x16:k3g1p1:b1:none:r0:s2"]
    assert [p["layer"] for p in out["layers"]] == keys
    total = sum(table[k]["median_ms"] for k in keys)
    assert out["predicted_ms"] == pytest.approx(cal["alpha"] * total + cal["beta_ms"] + cal["gamma_ms"] * 5)


def test_predict_model_file_equals_its_genome(built_run, run_cli, tmp_path):
    from srprune.models import build_model, save_model

    path = save_model(tmp_path / "net.pt", build_model("genome", 2, genome=GENOME))
    genome_file = tmp_path / "arch.json"
    genome_file.write_text(json.dumps({"genome": GENOME}))
    run, _ = built_run
    a = run_cli("latency", "predict", path, "--run", run, *COMMON, "--json")
    b = run_cli("latency", "predict", genome_file, "--run", run, *COMMON, "--json")
    assert a.code == 0 and b.code == 0, a.err + b.err
    assert json.loads(a.out)["predicted_ms"] == json.loads(b.out)["predicted_ms"]
    other = save_model(tmp_path / "fsrcnn.pt", build_model("fsrcnn", 2))
    assert_one_line_error(run_cli("latency", "predict", other, "--run", run, *COMMON), "needs a searched network")


def test_validate_writes_report(built_run, run_cli, tmp_path):
    run, cfg = built_run
    plot = tmp_path / "scatter.png"
    r = run_cli("latency", "validate", "--run", run, "--config", cfg, *COMMON, "--n", "2", "--rounds", "1",
                "--calibrate", "0", "--plot", plot)
    assert r.code == 0, r.err
    assert "MAPE" in r.out and "Spearman" in r.out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads((run / "latency" / "host" / "validate.json").read_text())
    assert res["n"] == 2 and len(res["rows"]) == 2
    errs = [abs(x["predicted_ms"] - x["measured_ms"]) / x["measured_ms"] * 100 for x in res["rows"]]
    assert res["mape_pct"] == pytest.approx(sum(errs) / 2)


def test_calibration_fits_networks_against_their_own_layers(built_run):
    """The stored calibration is fitted on each network's time over its own layers' sum timed in the same rounds
    (one network: alpha = measured / that sum), not over the table's sum, which each point keeps beside it."""
    from compiler.latency.predict import Predictor
    from compiler.latency.table import load_table
    from srprune.latency import genome_layers, latency_prune

    run, _ = built_run
    cal = json.loads((run / "latency" / "host" / "predictor.json").read_text())
    (point,) = cal["points"]
    layers = genome_layers(point["genome"], (16, 32), latency_prune(point.get("prune") or {}))
    assert point["layers"] == len(layers) == len(point["layers_ms"])
    assert point["table_sum_ms"] == pytest.approx(Predictor(load_table(run / "latency" / "host" / "table.json"))
                                                  .sum_ms(layers))
    assert cal["alpha"] == pytest.approx(point["measured_ms"] / point["sum_ms"])
    assert cal["beta_ms"] == cal["gamma_ms"] == 0.0


class _Recording:
    """The real in-process runner, keeping every sample each of its timers returned (in creation order)."""

    def __init__(self, threads: int) -> None:
        from compiler.latency.runners import LocalRunner

        self.runner, self.builds, self.samples = LocalRunner(threads), [], []

    def timer(self, built):
        inner, mine = self.runner.timer(built), []
        self.builds.append(built)
        self.samples.append(mine)

        def run(repeat: int) -> list[float]:
            out = inner(repeat)
            mine.append(out[-1])  # the sample `interleaved` keeps (the last of each call)
            return out
        return run


def test_networks_are_timed_beside_their_own_layers():
    """`measure_networks(with_layers=True)`: every layer of the network is timed in the same rounds (a dense layer
    that occurs twice is built and timed once and counted twice; a pruned one is the sparse kernel built on the
    model's own weight), and the layer sum is the median over rounds of each round's sum."""
    import statistics

    from compiler.targets import get_target
    from srprune.latency import latency_prune, measure_networks, named_genome_layers
    from srprune.latency.workflow import Network
    from srprune.search.candidate import apply_masks, layer_prune, pruning_spec
    from supernet.space import Genome
    from supernet.standalone import GenomeNet

    genome = Genome.coerce({"scale": 2, "head": 8, "activation": "relu", "cells": [
        {"block": "conv", "width": 8, "layers": []}, {"block": "conv", "width": 8, "layers": []},
        {"block": "conv", "width": 8, "layers": []}]})
    prune = {"cells.2.conv": layer_prune("block", (4, 8), 0.5)}
    model = GenomeNet(genome).deploy().eval()
    apply_masks(model, pruning_spec(prune))
    named = named_genome_layers(genome, (16, 32), latency_prune(prune))
    keys = [c.key() for _, c in named]
    assert keys[1] == keys[2] and "block" in keys[3]  # cells.0/1: one dense key; cells.2 pruned
    rec = _Recording(1)
    (m,) = measure_networks([Network(genome, prune, model)], get_target("host", 1), rec, (16, 32), rounds=3,
                            with_layers=True, progress=False)
    distinct = list(dict.fromkeys(keys))
    assert len(rec.builds) == 1 + len(distinct)  # the network, then each distinct layer once
    assert all(len(s) == 3 for s in rec.samples)
    np.testing.assert_array_equal(rec.builds[1 + distinct.index(keys[3])].extra["weight"],
                                  dict(model.named_modules())["cells.2.conv"].weight.detach().numpy())
    own = [rec.samples[1 + distinct.index(k)] for k in keys]
    assert m["measured_ms"] == statistics.median(rec.samples[0])
    assert m["layers_ms"] == [statistics.median(s) for s in own]
    assert m["layers_sum_ms"] == pytest.approx(statistics.median(sum(s[r] for s in own) for r in range(3)))


def test_errors_are_one_line(built_run, run_cli, tmp_path):
    run, _ = built_run
    r = run_cli("latency", "predict", json.dumps(GENOME), "--run", run, "--target", "host", "--threads", "2",
                "--size", "32x16")
    assert_one_line_error(r, "measured for target host (1 threads), not host (2 threads)")
    bad = tmp_path / "bad"
    (bad / "latency" / "host").mkdir(parents=True)
    (bad / "latency" / "host" / "table.json").write_text("\x00garbage")
    assert_one_line_error(run_cli("latency", "predict", json.dumps(GENOME), "--run", bad, *COMMON), "corrupt latency table")
    assert_one_line_error(run_cli("latency", "predict", json.dumps(GENOME), "--run", tmp_path / "none", *COMMON),
                          "no latency table here")
    assert_one_line_error(run_cli("latency", "build", "--run", bad, "--target", "android-arm64"), "cross-compiled")
    assert_one_line_error(run_cli("latency", "build", "--run", tmp_path / "r", *COMMON, "--rpc", "rpc://127.0.0.1:1",
                                  "--timeout", "2"), "RPC server rpc://127.0.0.1:1")
    assert_one_line_error(run_cli("latency", "predict", "{oops", "--run", run, *COMMON), "not valid JSON")
    cfg = tmp_path / "bad-search.yaml"
    cfg.write_text(json.dumps({"supernet": {"space": SPACE}, "search": {**SEARCH, "ratios": [2]}}))
    assert_one_line_error(run_cli("latency", "build", "--run", tmp_path / "r2", "--config", cfg, *COMMON),
                          "search.ratios[0] must be a number in (0, 1), got 2")


# --- calibration from phone measurements (`srprune android bench --json`) ---------------------------


def _device_table(run, precisions=("fp32",)):
    """An android-arm64 table (4 threads) whose layer times follow t = 0.01 + 1e-6 * MACs (any numbers work)."""
    from compiler.latency.table import make_header, open_table
    from srprune.layout import table_path
    from srprune.latency import space_layers

    table = open_table(table_path(run, "android-arm64"), "android-arm64", 4)
    for c in space_layers(SearchSpace.from_dict(SPACE), (48, 64), precisions):
        table.add(c, [0.01 + 1e-6 * c.macs()])
    table.save()
    assert make_header("android-arm64", 4)["target"] == "android-arm64"
    return table


def _bench_record(genome, measured, model="genome", threads=4, candidate=None):
    return {"format": "srprune-device-bench", "version": 1, "target": "android-arm64", "device": "Pixel Test",
            "input_shape": [1, 3, 24, 32], "output_shape": [1, 3, 48, 64], "model": model, "scale": 2,
            "config": {"genome": genome, "deployed": True} if model == "genome" else {},
            "candidate": candidate, "library_sha256": "0" * 64,
            "results": [{"describe": "x", "median_ms": measured, "min_ms": measured, "max_ms": measured, "runs": 20,
                         "threads": threads}]}


def test_calibrate_from_device_bench_fits_the_measurements(run_cli, tmp_path):
    from compiler.latency.predict import Predictor
    from srprune.latency import genome_layers, load_predictor

    run = tmp_path / "run"
    table = _device_table(run)
    other = {**GENOME, "cells": [{"block": "conv", "width": 8, "layers": []}, {"block": "skip", "width": 0,
                                                                              "layers": []}]}
    files = []
    for i, g in enumerate((GENOME, other)):  # the phone: measured = 1.25 x sum + 3 ms, exactly
        s = Predictor(table).sum_ms(genome_layers(g, (48, 64)))
        f = tmp_path / f"bench{i}.json"
        f.write_text(json.dumps(_bench_record(g, 1.25 * s + 3.0)))
        files += ["--device-bench", f]
    r = run_cli("latency", "calibrate", "--run", run, "--target", "android-arm64", "--threads", "4", *files)
    assert r.code == 0, r.err
    pred = load_predictor(run, "android-arm64", 4)
    assert pred.calibration.alpha == pytest.approx(1.25) and pred.calibration.beta_ms == pytest.approx(3.0)
    assert {p["device"] for p in pred.calibration.points} == {"Pixel Test"}


def test_calibrate_from_device_bench_refits_int8_networks_apart(run_cli, tmp_path):
    """A phone's bench of an int8 / mixed c-lib (its candidate names int8 layers) re-fits the int8 calibration only;
    the fp32 fit stays; the predictor prices networks with int8 layers by the int8 fit."""
    from compiler.latency.predict import Predictor
    from srprune.latency import genome_layers, load_predictor

    run = tmp_path / "run"
    table = _device_table(run, ("fp32", "int8"))
    other = {**GENOME, "cells": [{"block": "conv", "width": 8, "layers": []}, {"block": "skip", "width": 0,
                                                                              "layers": []}]}
    fp32_files, int8_files = [], []
    for i, g in enumerate((GENOME, other)):  # fp32: 1.25 x sum + 3 ms; with int8 layers: 1.1 x sum + 0.5 ms
        s = Predictor(table).sum_ms(genome_layers(g, (48, 64)))
        f = tmp_path / f"fp32-{i}.json"
        f.write_text(json.dumps(_bench_record(g, 1.25 * s + 3.0)))
        fp32_files += ["--device-bench", f]
        prec = {"head": "int8", "tail": "int8"}
        s8 = Predictor(table).sum_ms(genome_layers(g, (48, 64), precision=prec))
        f = tmp_path / f"int8-{i}.json"
        f.write_text(json.dumps(_bench_record(g, 1.1 * s8 + 0.5, candidate={"genome": g, "precision": prec})))
        int8_files += ["--device-bench", f]
    args = ("latency", "calibrate", "--run", run, "--target", "android-arm64", "--threads", "4")
    assert run_cli(*args, *fp32_files).code == 0
    r = run_cli(*args, *int8_files)
    assert r.code == 0, r.err
    pred = load_predictor(run, "android-arm64", 4)
    cal = pred.calibration
    assert (cal.alpha, cal.beta_ms) == (pytest.approx(1.25), pytest.approx(3.0))  # kept from the fp32 benches
    assert (cal.int8.alpha, cal.int8.beta_ms) == (pytest.approx(1.1), pytest.approx(0.5))
    layers = genome_layers(GENOME, (48, 64), precision={"tail": "int8"})
    assert pred.predict(layers) == pytest.approx(1.1 * pred.sum_ms(layers) + 0.5)
    assert run_cli(*args, *fp32_files[:2]).code == 0  # one fp32 bench again: the int8 fit stays
    assert load_predictor(run, "android-arm64", 4).calibration.int8.alpha == pytest.approx(1.1)


def test_calibrate_from_device_bench_errors(run_cli, tmp_path):
    run = tmp_path / "run"
    _device_table(run)
    cases = [(_bench_record(GENOME, 5.0, model="fsrcnn"), "not a searched network"),
             (_bench_record(GENOME, 5.0, threads=1), "no result at 4 threads"),
             ({"format": "other"}, "not an `srprune android bench --json` file")]
    for i, (record, fragment) in enumerate(cases):
        f = tmp_path / f"b{i}.json"
        f.write_text(json.dumps(record))
        assert_one_line_error(run_cli("latency", "calibrate", "--run", run, "--target", "android-arm64",
                                      "--threads", "4", "--device-bench", f), fragment)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert_one_line_error(run_cli("latency", "calibrate", "--run", run, "--threads", "4", "--device-bench", bad),
                          "not JSON")


def test_bench_record_of_a_searched_model_carries_its_layers():
    """android.bench_records keeps the manifest's genome and pruning, which give the layers the table prices."""
    from srprune import android
    from srprune.latency import device_bench_points, genome_layers

    prune = {"cells.0.c1": {"scheme": "block", "ratio": 0.5, "block": [4, 8]}}
    manifest = {"input": {"shape": [1, 3, 24, 32]}, "output": {"shape": [1, 3, 48, 64]}, "library": "libsrmodel.so",
                "meta": {"model": "genome", "scale": 2, "config": {"genome": GENOME, "deployed": True},
                         "candidate": {"genome": GENOME, "prune": prune}}, "checksums": {}}
    r = android.BenchResult("x", 9.0, 8.5, 9.5, 20, 4)
    rec = json.loads(json.dumps(android.bench_records(manifest, "Pixel", [r])))
    (layers, ms), = device_bench_points(rec, 4)
    assert ms == 9.0
    want = genome_layers(GENOME, (48, 64), {"cells.0.c1": {"scheme": "block", "ratio": 0.5, "block": (4, 8)}})
    assert layers == want and any(c.scheme == "block" for c in layers)


def test_build_with_int8_calibrates_int8_c_libs_apart(run_cli, tmp_path):
    """`latency build --precisions fp32,int8`: beside the fp32 networks, networks with int8 layers (all int8, and a
    mix) are built as the int8 c-lib and timed whole beside their own kernels (an int8 c-lib's adapters are none);
    their fit is `Calibration.int8` (one network per kind: alpha = its time over its layers' sum), and a
    network with an int8 layer is predicted by it."""
    from srprune.latency import genome_layers, latency_prune, load_predictor

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"supernet": {"space": SPACE}, "search": {"schemes": ["dense"]}}))
    run = tmp_path / "run"
    r = run_cli("latency", "build", "--run", run, "--config", cfg, *COMMON, "--repeat", "1", "--calibrate", "1",
                "--precisions", "fp32,int8")
    assert r.code == 0, r.err
    assert "(networks with int8 layers, as int8 c-libs)" in r.out
    saved = json.loads((run / "latency" / "host" / "predictor.json").read_text())
    (point,) = saved["int8"]["points"]
    assert set(point["precision"].values()) == {"int8"}
    layers = genome_layers(point["genome"], (16, 32), latency_prune(point.get("prune") or {}), point["precision"])
    assert len(point["layers_ms"]) == point["layers"] == sum(c.op != "adapter" for c in layers)
    assert saved["int8"]["alpha"] == pytest.approx(point["measured_ms"] / point["sum_ms"])
    assert "precision" not in saved["points"][0]  # the fp32 fit's network is fp32
    pred = load_predictor(run, "host", 1)
    assert pred.calibration.int8.alpha == saved["int8"]["alpha"]
    assert pred.predict(layers) == pytest.approx(pred.calibration.int8.apply(pred.sum_ms(layers), len(layers)))
    r = run_cli("latency", "validate", "--run", run, "--config", cfg, *COMMON, "--n", "2", "--rounds", "1",
                "--calibrate", "1", "--precision", "int8")
    assert r.code == 0, r.err
    res = json.loads((run / "latency" / "host" / "validate-int8.json").read_text())
    assert res["precision"] == "int8" and res["n"] == 2 and all(row["precision"] for row in res["rows"])
    assert all(row["predicted_stored_ms"] == pytest.approx(pred.predict(genome_layers(
        row["genome"], (16, 32), latency_prune(row["prune"]), row["precision"]))) for row in res["rows"])
