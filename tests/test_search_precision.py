"""Precision as a searched dimension (issue 20): the config key, candidates with a precision per layer, the
mixed-precision proxy, stage 2 choosing int8 where the latency table pays for it, and a killed run that resumes.
Stage 2's choice when no network fills search.min_fill of the budget is tested here too, on the same tiny supernet.

Latency tables with int8 entries are built by hand (as tests/test_latency.py builds its tables): what the
search does with them is under test here, not how int8 layers are timed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess

import numpy as np
import pytest
import torch
import yaml

from compiler.latency.predict import Predictor
from compiler.latency.table import LatencyTable, make_header
from tests.conftest import assert_one_line_error
from tests.test_search import TINY, write_config

OUT_HW = (64, 64)


# --- config ---------------------------------------------------------------------------------------------------


def _resolve(**search):
    from srprune.search.config import resolve

    return resolve({**TINY, "run_dir": "r", "search": {**TINY["search"], **search}})


def test_precisions_default_to_fp32_and_resolve_in_one_order():
    assert _resolve()["search"]["precisions"] == ["fp32"]
    assert _resolve(precisions=["int8", "fp32", "int8"])["search"]["precisions"] == ["fp32", "int8"]


@pytest.mark.parametrize("changes, fragment", [
    ({"search__precisions": ["fp32", "int4"]}, "search.precisions[1] must be one of fp32, fp16, int8"),
    ({"search__precisions": ["int8"]}, "search.precisions must include 'fp32'"),
    ({"search__precisions": ["fp32", "fp16"]}, "search.precisions: fp16 cannot run on target host"),
    ({"search__precisions": ["fp32", "fp16"], "target": "android-arm64", "rpc": "rpc://127.0.0.1:9190"},
     "fp16 cannot run on target android-arm64"),
])
def test_a_precision_the_target_cannot_run_is_one_line_before_any_work(run_cli, tmp_path, changes, fragment):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", **changes)
    assert_one_line_error(run_cli("run", "-c", cfg), fragment, alone=True)
    assert not (tmp_path / "run").exists()


def test_which_targets_run_which_precisions():
    """int8 wherever the int8 kernels have a form (aarch64 always: sdot or the NEON fallback; x86 with VNNI or
    AVX2), fp16 only where the code computes in fp16."""
    from compiler.int8.isa import precision_unsupported
    from compiler.targets import get_target

    runs = {name: [p for p in ("fp32", "fp16", "int8") if precision_unsupported(get_target(name), p) is None]
            for name in ("linux-arm64", "android-arm64", "android-arm64-fp16", "android-arm64-dotprod")}
    assert runs == {"linux-arm64": ["fp32", "int8"], "android-arm64": ["fp32", "int8"],
                    "android-arm64-fp16": ["fp32", "fp16", "int8"], "android-arm64-dotprod": ["fp32", "int8"]}
    host = get_target("host")
    plain = dataclasses.replace(host, tvm={**host.tvm, "mcpu": "x86-64"})  # SSE2 only: no int8 form
    assert "neither AVX-512 VNNI nor AVX2" in precision_unsupported(plain, "int8")
    assert precision_unsupported(host, "fp16") is not None


def test_precisions_are_an_input_of_the_latency_stage_and_stage_2_not_the_supernet():
    """The latency stage measures every precision the search may pick; the supernet is not trained again."""
    from srprune.search.pipeline import stage_hashes

    a, b = stage_hashes(_resolve()), stage_hashes(_resolve(precisions=["fp32", "int8"]))
    assert [s for s in a if a[s] != b[s]] == ["latency", "arch", "ratios", "finetune", "compile", "evaluate", "report",
                                              "apk"]


# --- candidates -----------------------------------------------------------------------------------------------


def _genome():
    from supernet.space import Cell, Genome

    return Genome(2, 8, "relu", [Cell("res", 16, [8]), Cell("conv", 8, [])])


def test_the_search_batches_are_fixed_seeded_and_calibrate_only_int8_searches():
    """Every candidate adapts and calibrates on the same batches (srprune.search.pipeline's helpers, shared with
    benchmarks/precision_proxy.py): seeded from search.seed, the supernet's batch and patch size, calibration
    batches only where int8 is searched, and a longer list starts with the shorter one."""
    from srprune.search.config import RunConfig
    from srprune.search.pipeline import CALIB_BATCHES, adapt_batches, calib_batches, fixed_batches

    fp32 = RunConfig.from_dict(_resolve(adapt_steps=3))
    int8 = RunConfig.from_dict(_resolve(adapt_steps=3, precisions=["fp32", "int8"]))
    assert calib_batches(fp32, 2) == [] and fixed_batches(int8, 2, 0, 888) == []
    calib = calib_batches(int8, 2)
    t = int8.supernet.train
    assert len(calib) == CALIB_BATCHES
    assert calib[0].shape == (t["batch_size"], 3, t["patch_size"], t["patch_size"])
    assert all(torch.equal(a, b) for a, b in zip(calib, calib_batches(int8, 2)))
    longer = fixed_batches(int8, 2, CALIB_BATCHES + 2, 888)
    assert all(torch.equal(a, lr) for a, (lr, _) in zip(calib, longer))
    adapt = adapt_batches(int8, 2)
    assert len(adapt) == 3 and adapt[0][1].shape[-1] == 2 * t["patch_size"]
    assert not torch.equal(adapt[0][0], calib[0])
    other = RunConfig.from_dict(_resolve(adapt_steps=3, precisions=["fp32", "int8"], seed=5))
    assert not torch.equal(calib_batches(other, 2)[0], calib[0])


def test_candidate_round_trip_and_old_files_read_as_fp32():
    from srprune.search.candidate import Candidate

    cand = Candidate(_genome(), {"cells.0.c1": {"scheme": "block", "ratio": 0.5, "block": [4, 8]}},
                     {"cells.0.c2": "int8", "tail": "int8", "head": "fp32"})
    data = json.loads(json.dumps(cand.to_dict()))
    assert data["precision"] == {"cells.0.c2": "int8", "tail": "int8"}  # fp32 is the absence of an entry
    back = Candidate.from_dict(data)
    assert back == cand and back.to_dict() == data
    old = {"genome": _genome().to_dict(), "prune": {}}  # a chosen.json written before precisions were searched
    assert Candidate.from_dict(old).precision == {} and Candidate.from_dict(old).to_dict() == old


def _table(tmp_path, genomes, int8_ms: dict[str, float]) -> Predictor:
    """A hand-built table of every fp32 layer of `genomes` (1 ms each) and int8 twins at `int8_ms[layer name]` ms
    (default 1 ms); no calibration, so a prediction is the plain sum."""
    from srprune.latency import named_genome_layers

    t = LatencyTable(tmp_path / "table.json", make_header("host", 2))
    for g in genomes:
        for name, c in named_genome_layers(g, OUT_HW):
            t.add(c, [1.0])
            if c.op != "adapter":
                t.add(dataclasses.replace(c, precision="int8"), [int8_ms.get(name, 1.0)])
    return Predictor(t)


def test_latency_uses_each_layers_precision(tmp_path):
    from srprune.latency import named_genome_layers
    from srprune.search.candidate import Candidate, latency_ms, layer_breakdown

    g = _genome()
    pred = _table(tmp_path, [g], {"cells.0.c2": 0.25, "tail": 0.5})
    n = len(named_genome_layers(g, OUT_HW))
    assert latency_ms(pred, Candidate(g), OUT_HW) == pytest.approx(n)
    mixed = Candidate(g, {}, {"cells.0.c2": "int8", "tail": "int8"})
    adapters = [name for name, c in named_genome_layers(g, OUT_HW) if c.op == "adapter" and name.startswith("cells.0")]
    assert adapters == ["cells.0.skip"]  # it feeds c2's residual: an int8 c2 slices / pads it in its write-back (0 ms)
    assert latency_ms(pred, mixed, OUT_HW) == pytest.approx(n - 0.75 - 0.5 - 1.0)
    rows = {r["layer"]: r for r in layer_breakdown(pred, mixed, OUT_HW)}
    assert rows["cells.0.c2"]["precision"] == "int8" and rows["head"]["precision"] == "fp32"
    assert rows["tail"]["predicted_ms"] == 0.5


def test_the_budget_check_knows_int8_reaches_faster_networks(tmp_path):
    """The fastest reachable network (the budget check's floor) is the smallest genome with every layer int8 when
    the search may pick int8, and its fp32 time when not."""
    from srprune.search.latency_stage import fastest_ms
    from supernet.space import SearchSpace

    space = SearchSpace.from_dict({"num_cells": 2, "widths": [8, 16], "blocks": ["conv", "res", "skip"],
                                   "scales": [2]})
    g = space.smallest(2)  # head, cells.0.conv, tail
    pred = _table(tmp_path, [g], {"head": 0.5, "cells.0.conv": 0.25, "tail": 0.5})
    search = {"schemes": ["dense"], "blocks": [], "ratios": [0.5]}
    assert fastest_ms(pred, space, {**search, "precisions": ["fp32"]}, 2, OUT_HW) == pytest.approx(3.0)
    assert fastest_ms(pred, space, {**search, "precisions": ["fp32", "int8"]}, 2, OUT_HW) == pytest.approx(1.25)


# --- the mixed-precision proxy --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def supernet():
    """A tiny supernet, trained for a few steps on the built-in images (seeded), in eval mode."""
    from srprune.data import PatchSampler, load_dataset
    from supernet.model import SuperNet
    from supernet.space import SearchSpace
    from supernet.train import TrainSettings, train_supernet

    space = SearchSpace.from_dict({"num_cells": 2, "widths": [8, 16], "blocks": ["conv", "res", "skip"],
                                   "scales": [2]})
    torch.manual_seed(0)
    net = SuperNet(space)
    sampler = PatchSampler(load_dataset("builtin", 2, split="train"), 2, 32, 8, seed=0)
    train_supernet(net, sampler, TrainSettings(steps=8, batch_size=8),
                   progress=False)
    return net.eval()


@pytest.fixture(scope="module")
def val():
    """The built-in validation images' top-left 64x64 LR windows (the proxy's cost is its forward passes)."""
    from srprune.search.supernet_stage import val_tensors

    return [(lr[..., :64, :64], hr[..., :128, :128]) for lr, hr in val_tensors("builtin", 2)]


@pytest.fixture(scope="module")
def calib():
    from srprune.data import PatchSampler, load_dataset

    it = iter(PatchSampler(load_dataset("builtin", 2, split="train"), 2, 32, 8, seed=888))
    return [next(it)[0] for _ in range(2)]


def test_precision_layers_are_the_int8_plans_layers(supernet):
    from srprune.quant.plan import build_plan, precision_layers
    from srprune.search.candidate import extract_deployed

    model = extract_deployed(supernet, _genome())
    assert precision_layers(model) == [layer.name for layer in build_plan(model).layers] == \
        ["head", "cells.0.c1", "cells.0.c2", "cells.1.conv", "tail"]


def test_an_all_int8_proxy_matches_the_integer_model(supernet, val, calib):
    """The proxy of a candidate with every layer int8 is the PSNR of the integer model ("quantized") made from the
    same calibration, within 0.05 dB; a candidate naming only fp32 layers is the plain proxy."""
    from srprune.quant.plan import PlanNet
    from srprune.quant.quantize import calibrate, convert
    from srprune.search.candidate import Candidate, candidate_psnr, extract_deployed
    from srprune.search.supernet_stage import protocol_psnr

    g = _genome()
    names = ["head", "cells.0.c1", "cells.0.c2", "cells.1.conv", "tail"]
    fp32 = candidate_psnr(supernet, Candidate(g), val)
    all8 = candidate_psnr(supernet, Candidate(g, {}, dict.fromkeys(names, "int8")), val, calib=calib)
    net = PlanNet(extract_deployed(supernet, g))
    calibrate(net, calib, progress=False)
    q = convert(net)
    with torch.no_grad():
        ref = [protocol_psnr(q(lr.reshape(1, *lr.shape[-3:]))[0], hr.reshape(hr.shape[-3:]), 2) for lr, hr in val]
    assert all8 == pytest.approx(sum(ref) / len(ref), abs=0.05)
    assert all8 != fp32 and abs(all8 - fp32) < 1.0  # simulated, and int8 is close on a smooth network
    assert candidate_psnr(supernet, Candidate(g, {}, {"head": "fp32"}), val) == fp32
    with pytest.raises(ValueError, match="calibration"):
        candidate_psnr(supernet, Candidate(g, {}, {"tail": "int8"}), val)


def test_a_mixed_network_quantises_only_what_int8_layers_read(supernet, calib):
    """int8 on cells.0.c2 only: what it reads (tensor 2, c1's output, and tensor 1, the cell's input as its
    residual) becomes uint8, nothing else; in float mode the plan is the model."""
    from srprune.quant.plan import PlanNet
    from srprune.quant.quantize import calibrate, convert
    from srprune.errors import InputError
    from srprune.search.candidate import extract_deployed

    model = extract_deployed(supernet, _genome())
    net = PlanNet(model, precisions={"cells.0.c2": "int8"})
    assert [i for i, u in enumerate(net.uint8) if u] == [1, 2]
    calibrate(net, calib, progress=False)  # only the one observer needs a range
    x = calib[0][:1]
    with torch.no_grad():
        net.mode = "float"
        assert torch.equal(net(x), model(x))
        net.mode = "fake"
        assert 0 < (net(x) - model(x)).abs().max() < 0.05
    with pytest.raises(InputError, match="fp16 layers have no reference model"):
        convert(PlanNet(model, precisions={"cells.0.c2": "fp16"}))
    with pytest.raises(InputError, match="no such layer cells.9.conv"):
        PlanNet(model, precisions={"cells.9.conv": "int8"})


# --- stage 2 chooses ------------------------------------------------------------------------------------------


def test_stage_2_picks_int8_where_the_table_makes_it_much_faster(supernet, val, calib, tmp_path):
    """A space of three genomes (a 16-wide conv cell in either or both places) whose fp32 networks all miss the
    budget: the cells' convs are 10x faster in int8, the head's int8 is far too slow and the tail's int8 buys
    nothing. Stage 2's choice is the best proxy PSNR among every feasible candidate, enumerated and scored here
    independently: its convs int8, its head fp32."""
    import itertools

    import optuna

    from srprune.layout import RunLayout
    from srprune.search.arch import SearchContext, search_architectures
    from srprune.search.candidate import Candidate, candidate_psnr, latency_ms
    from srprune.search.config import RunConfig
    from supernet.space import Cell, Genome, SearchSpace

    space = SearchSpace.from_dict({"num_cells": 2, "widths": [16], "blocks": ["conv", "skip"], "scales": [2]})
    conv, skip = Cell("conv", 16, []), Cell("skip", 0, [])
    genomes = [Genome(2, 16, "relu", cells) for cells in ([conv, skip], [skip, conv], [conv, conv])]
    pred = _table(tmp_path, genomes, {"head": 50.0, "cells.0.conv": 0.1, "cells.1.conv": 0.1})
    search = RunConfig.from_dict(_resolve(precisions=["fp32", "int8"], schemes=["dense"], sampler="random",
                                          trials=32, startup_trials=0, margin=0.0, min_fill=0.0)).search
    ctx = SearchContext(supernet=supernet, space=space, val=val, predictor=pred, out_hw=OUT_HW, scale=2,
                        budget_ms=2.5, search=search, calib_batches=calib)
    everything = []
    for g in genomes:
        names = ["head"] + [f"cells.{i}.conv" for i, c in enumerate(g.cells) if c.block == "conv"] + ["tail"]
        for precs in itertools.product(["fp32", "int8"], repeat=len(names)):
            everything.append(Candidate(g, {}, dict(zip(names, precs))))
    assert len(everything) == 32 and all(latency_ms(pred, Candidate(g), OUT_HW) > 2.5 for g in genomes)
    feasible = [c for c in everything if latency_ms(pred, c, OUT_HW) <= 2.5]
    assert feasible and all("head" not in c.precision for c in feasible)
    best = max(feasible, key=lambda c: candidate_psnr(supernet, c, val, calib=calib))

    layout = RunLayout(tmp_path / "run")
    layout.search.mkdir(parents=True)
    result = search_architectures(ctx, optuna.storages.InMemoryStorage(), layout, progress=False)
    chosen = Candidate.from_dict(result)
    assert result["trials"] == 32  # the whole space was scored
    assert chosen == best
    assert all(chosen.precision.get(f"cells.{i}.conv") == "int8" for i, c in enumerate(chosen.genome.cells)
               if c.block == "conv")
    assert result["predicted_ms"] == pytest.approx(latency_ms(pred, chosen, OUT_HW))
    assert layout.trials_csv.read_text().splitlines()[0].endswith(",precision")


def _three_genome_search(supernet, val, tmp_path, budget_ms: float, **search):
    """Stage 2 over a space of three genomes (a 16-wide conv cell in either or both places) on a table of 1 ms per
    layer (3-4 ms per network), every one scored (random sampler, 3 trials): (result, layout)."""
    import optuna

    from srprune.layout import RunLayout
    from srprune.search.arch import SearchContext, search_architectures
    from srprune.search.config import RunConfig
    from supernet.space import Cell, Genome, SearchSpace

    space = SearchSpace.from_dict({"num_cells": 2, "widths": [16], "blocks": ["conv", "skip"], "scales": [2]})
    conv, skip = Cell("conv", 16, []), Cell("skip", 0, [])
    genomes = [Genome(2, 16, "relu", cells) for cells in ([conv, skip], [skip, conv], [conv, conv])]
    cfg = RunConfig.from_dict(_resolve(schemes=["dense"], sampler="random", trials=3, startup_trials=0, **search))
    ctx = SearchContext(supernet=supernet, space=space, val=val, predictor=_table(tmp_path, genomes, {}),
                        out_hw=OUT_HW, scale=2, budget_ms=budget_ms, search=cfg.search)
    layout = RunLayout(tmp_path / "run")
    layout.search.mkdir(parents=True)
    log = logging.getLogger("srprune.run.test")
    return search_architectures(ctx, optuna.storages.InMemoryStorage(), layout, progress=False, log=log), layout


def test_stage_2_takes_the_best_network_under_budget_when_none_fills_min_fill(supernet, val, tmp_path, capsys,
                                                                              caplog):
    """A budget far above the space's largest network (3-4 ms of 100, min_fill 85%): stage 2 still ends, with the
    best proxy PSNR of the trials under budget, marked under_fill with its fill in arch.json, and says so once on
    stderr and in the run's log."""
    import csv

    with caplog.at_level(logging.WARNING, logger="srprune.run.test"):
        result, layout = _three_genome_search(supernet, val, tmp_path, 100.0, min_fill=0.85, margin=0.05)
    rows = list(csv.DictReader(layout.trials_csv.open()))
    assert len(rows) == 3 and not any(r["feasible"] == "True" for r in rows)
    assert result["proxy_psnr"] == pytest.approx(max(float(r["proxy_psnr"]) for r in rows), abs=1e-4)
    assert result["under_fill"] is True and result["feasible"] == 0
    assert result["fill"] == pytest.approx(result["predicted_ms"] / 100.0, abs=1e-4) and result["fill"] < 0.05
    assert json.loads(layout.arch.read_text()) == result
    err = capsys.readouterr().err
    assert err.count("warning: stage 2: no network of the search space fills search.min_fill (85%) of the 100 ms "
                     "budget; took the best one under budget") == 1
    assert [r.levelname for r in caplog.records if "min_fill" in r.getMessage()] == ["WARNING"]


def test_stage_2_with_every_trial_over_the_budget_is_one_line(supernet, val, tmp_path):
    """No trial under budget * (1 - margin) (the run's early budget check did not see it: the table changed, or the
    sampler missed the fast networks): one line naming the fastest trial; no arch.json."""
    from srprune.errors import InputError

    with pytest.raises(InputError) as info:
        _three_genome_search(supernet, val, tmp_path, 2.0, min_fill=0.5, margin=0.0)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("stage 2 found no network under 2.00 ms predicted")
    assert "the fastest of its 3 trials takes 3.00 ms, over the budget" in msg
    assert not (tmp_path / "run" / "search" / "arch.json").exists()


def test_the_choice_prefers_filling_the_window_and_then_the_best_under_budget():
    """srprune.search.arch.choose on stored trials ([psnr, ms], constraint [ms - upper, lower - ms]): a feasible
    trial beats any better one under the window; with none, the best under budget (ties: faster, then earlier)."""
    from types import SimpleNamespace

    from srprune.search.arch import choose

    def trial(n, psnr, ms, upper=10.0, lower=8.0):
        return SimpleNamespace(number=n, values=[psnr, ms], user_attrs={"constraint": [ms - upper, lower - ms]})

    t = [trial(0, 30.0, 2.0), trial(1, 29.0, 9.0), trial(2, 31.0, 11.0)]
    assert choose(t) == (t[1], False)
    t = [trial(0, 30.0, 2.0), trial(1, 30.0, 1.5), trial(2, 30.0, 1.5), trial(3, 31.0, 11.0)]
    assert choose(t) == (t[1], True)
    assert choose([trial(0, 30.0, 12.0)]) == (None, False)


def test_the_report_says_when_no_network_filled_min_fill(tmp_path):
    from srprune.search.report import build_report

    run = tmp_path / "run"
    (run / "search").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({**TINY, "target": "host", "scale": 2, "data": "builtin",
                                                     "budget_ms": 100.0, "search": {"min_fill": 0.85}}))
    chosen = {"genome": _genome().to_dict(), "prune": {}, "proxy_psnr": 30.0, "predicted_ms": 4.0, "stage": 2,
              "under_fill": True, "fill": 0.04}
    (run / "search" / "chosen.json").write_text(json.dumps(chosen))
    text = build_report(run, {})
    assert ("No network of the search space filled search.min_fill (85%) of the budget; the best one under budget "
            "was taken</b>: 4% of the budget predicted") in text
    (run / "search" / "chosen.json").write_text(json.dumps({**chosen, "under_fill": False}))
    assert "filled search.min_fill" not in build_report(run, {})


# --- the fine-tuned winner's model file -----------------------------------------------------------------------


def test_a_mixed_model_file_records_each_layers_precision_and_runs_as_simulated(supernet, calib, val, tmp_path):
    """convert() of a mixed PlanNet: int8 layers in the integer arithmetic, fp32 ones in float32; its output is
    the fake-quantised simulation's within one level of 255 on >= 99% of pixels; the file loads with
    weights_only and runs the same; the int8 c-lib refuses it with one line (compiling mixed networks is not
    built yet)."""
    from srprune.errors import InputError
    from srprune.models.modelfile import load_model, save_model
    from srprune.quant.plan import PlanNet
    from srprune.quant.qdq import qdq_graph
    from srprune.quant.quantize import calibrate, convert
    from srprune.search.candidate import extract_deployed

    precision = {"cells.0.c2": "int8", "cells.1.conv": "int8"}
    net = PlanNet(extract_deployed(supernet, _genome()), precisions=precision)
    calibrate(net, calib, progress=False)
    q = convert(net)
    assert {s["name"]: s["precision"] for s in q.specs} == {
        "head": "fp32", "cells.0.c1": "fp32", "cells.0.c2": "int8", "cells.1.conv": "int8", "tail": "fp32"}
    x = torch.round(val[0][0].reshape(1, 3, 64, 64) * 255) / 255
    with torch.no_grad():
        sim = torch.round(net(x).clamp(0, 1) * 255)
        out = torch.round(q(x) * 255)
    diff = (sim - out).abs()
    assert float(diff.max()) <= 2 and float((diff <= 1).float().mean()) >= 0.99
    save_model(tmp_path / "m.pt", q, meta={"quantization": {"precision": precision}})
    assert torch.load(tmp_path / "m.pt", weights_only=True)["arch"]["name"] == "quantized"
    back, _ = load_model(tmp_path / "m.pt")
    with torch.no_grad():
        assert torch.equal(torch.round(back(x) * 255), out)
    # the compiler's numpy reference of the mixed network (fp32 layers as FloatConv) = the model's own torch path
    from compiler.int8.network import reference_network
    from srprune.quant.deploy import to_int8_network

    net8 = to_int8_network(q)
    assert [type(layer).__name__ for layer in net8.layers] == ["FloatConv", "FloatConv", "QConv", "QConv",
                                                               "FloatConv"]
    codes = torch.round(x * 255).to(torch.uint8)
    ref = np.rint(reference_network(net8, codes.numpy()) * 255)
    assert np.abs(ref - q.run_codes(codes).numpy()).max() <= 1
    with pytest.raises(InputError, match="no QDQ ONNX export yet"):
        qdq_graph(q)


# --- the pipeline: fine-tuning an int8 winner, a killed run resuming ------------------------------------------


from tests.test_search import base, cli, copy_run  # noqa: E402,F401  (the tiny run folder: latency + supernet done)


def _with_int8_entries(run, slow_fp32: float = 3.0) -> None:
    """Give the measured table an int8 twin of every layer at the fp32 layer's measured time, and make the fp32
    entries `slow_fp32` times slower: int8 pays on every layer (what the other half of issue 20 will measure)."""
    from compiler.latency.table import load_table
    from srprune.layout import table_path

    t = load_table(table_path(run, "host"))
    for e in list(t.entries.values()):
        if e.config.precision == "fp32" and e.config.op != "adapter":
            kernel = "int8-vnni" if e.kernel in ("direct", "winograd2", "winograd4") else e.kernel
            t.add(dataclasses.replace(e.config, precision="int8"), e.samples_ms, kernel)
            t.add(e.config, [s * slow_fp32 for s in e.samples_ms], e.kernel,
                  None if e.direct_ms is None else e.direct_ms * slow_fp32)
    t.save()


def test_finetuning_an_int8_winner_is_quantisation_aware(base, tmp_path):
    """A chosen candidate with every plan layer int8 but the head: final/model.pt is the "quantized" model with
    those precisions, its recorded PSNR is its own (integer arithmetic) and QAT ran with the masks held; the
    compile stage builds the mixed int8 c-lib (the fp32 head inside it), checks it against the integer contract's
    reference and times it: its image is the model's own (`srprune eval`'s integer path) within one level."""
    from srprune.evaluate import mean_score, score_pairs
    from srprune.data import load_dataset
    from srprune.layout import RunLayout
    from srprune.models.modelfile import load_model
    from srprune.search.config import RunConfig, load
    from srprune.search.stages.finetune import finetune_chosen
    from supernet.space import Cell, Genome

    run, cfg_path = copy_run(base, tmp_path, finetune__steps=6, finetune__qat_steps=6)
    cfg = RunConfig.from_dict(load(cfg_path))
    g = Genome(2, 8, "relu", [Cell("res", 16, [8]), Cell("conv", 8, [])])
    precision = {"cells.0.c1": "int8", "cells.0.c2": "int8", "cells.1.conv": "int8", "tail": "int8"}
    chosen = {"genome": g.to_dict(), "prune": {"cells.0.c1": {"scheme": "block", "ratio": 0.5, "block": [4, 8]}},
              "precision": precision}
    summary = finetune_chosen(cfg, RunLayout(run, "host"), chosen, progress=False)
    q, info = load_model(run / "final" / "model.pt")
    meta = info["meta"]
    assert {s["name"]: s["precision"] for s in q.specs} == {"head": "fp32", **precision}
    assert meta["quantization"]["precision"] == precision and meta["quantization"]["qat"]["steps"] == 6
    assert meta["quantization"]["masked_layers"] == ["cells.0.c1"]
    w = q.layers[1].weight  # cells.0.c1, block-pruned at 0.5: its int8 weights keep the zeros
    assert float((w == 0).float().mean()) >= 0.5
    mine = mean_score(score_pairs(q, load_dataset("builtin", 2, split="val"), 2)).psnr
    assert summary["val_psnr"] == pytest.approx(mine) == meta["val"]["val_psnr"]
    assert abs(mine - meta["quantization"]["float_val_psnr"]) < 1.0
    from compiler.clib.runner import CLib
    from compiler.targets import get_target
    from srprune.search.stages.compile import compile_final

    layout = RunLayout(run, "host")
    _with_int8_entries(run)  # the predicted side (a run searching int8 has measured them in its latency stage)
    result = compile_final(cfg, layout, get_target("host", 2), rounds=3, progress=False)
    assert result["precision"] == "int8 + fp32" and result["measured_ms"] > 0 and result["within_one_step"] >= 0.999
    assert [r["precision"] for r in result["layers"] if r["op"] == "conv"][:1] == ["fp32"]  # the head
    manifest = json.loads((layout.compiled / "manifest.json").read_text())
    assert manifest["fp32_layers"] == ["head"] and manifest["precision"] == "int8"
    lr = load_dataset("builtin", 2, split="val")[0].lr
    rgb = np.asarray(lr)[:manifest["input"]["shape"][2], :manifest["input"]["shape"][3]]
    with CLib(layout.compiled / manifest["library"]) as lib:
        got = lib.run_rgb8(np.ascontiguousarray(rgb)).astype(np.int32)
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    want = q.run_codes(x)[0].numpy().transpose(1, 2, 0).astype(np.int32)
    diff = np.abs(got - want)
    assert diff.max() <= 1 and np.mean(diff == 0) >= 0.999

    # The same winner for a phone over RPC (configs/paper-x2.yaml's target): TVM's RPC server cannot load a C
    # library, so the stage builds the arm64 c-lib (sdot), checks its network on a host build and labels the
    # table's prediction as its time. No phone here: the host table stands in for the one measured on the phone.
    from srprune.search.stages.compile import PREDICTED

    arm = get_target("android-arm64-dotprod", 2)
    _table_as(run, "host", arm.name)
    alayout = RunLayout(run, arm.name)
    r = compile_final(cfg, alayout, arm, progress=False)
    assert "measured_ms" not in r and r["estimated_ms"] == r["predicted_ms"] == pytest.approx(result["predicted_ms"])
    assert r["latency"] == PREDICTED and "srprune android bench" in r["time_it"] and r["precision"] == "int8 + fp32"
    assert r["checked_on"].startswith("host c-lib build") and r["within_one_step"] >= 0.999 and r["max_abs_diff"] <= 4 / 255
    manifest = json.loads((alayout.compiled / "manifest.json").read_text())
    assert manifest["target"]["name"] == arm.name and manifest["int8_isa"] == "sdot"
    if shutil.which("llvm-objdump-19"):
        asm = subprocess.run(["llvm-objdump-19", "-d", str(alayout.compiled / manifest["library"])],
                             capture_output=True, text=True, check=True).stdout
        assert "sdot" in asm and "fmla" in asm  # the int8 layers and the fp32 head


def _table_as(run, source: str, target: str) -> None:
    """RUN/latency/SOURCE's table and calibration copied as TARGET's (same thread count)."""
    from srprune.layout import calibration_path, table_path

    for path in (table_path, calibration_path):
        if not path(run, source).exists():
            continue
        data = json.loads(path(run, source).read_text())
        data["header"]["target"] = target
        path(run, target).parent.mkdir(parents=True, exist_ok=True)
        path(run, target).write_text(json.dumps(data))


def test_a_dense_winner_whose_first_cell_is_depthwise_fine_tunes(tmp_path):
    """A dense chosen candidate starting with a dws cell: the plain fine-tuning's ratio-0 placeholder names a
    prunable layer, not the depthwise conv after the head (benchmarks/precision_proxy.py found the stage failing on
    such a candidate); the model it writes is the candidate, unpruned."""
    from srprune.data import PatchSampler, load_dataset
    from srprune.layout import RunLayout
    from srprune.models.modelfile import load_model
    from srprune.search.config import RunConfig, resolve
    from srprune.search.stages.finetune import finetune_chosen
    from supernet.model import SuperNet
    from supernet.space import Cell, Genome, SearchSpace
    from supernet.train import TrainSettings, train_supernet

    space = {"num_cells": 2, "widths": [8], "blocks": ["dws", "conv", "skip"], "scales": [2]}
    layout = RunLayout(tmp_path / "run", "host")
    layout.supernet.mkdir(parents=True)
    torch.manual_seed(0)
    sampler = PatchSampler(load_dataset("builtin", 2, split="train"), 2, 16, 4, seed=0)
    train_supernet(SuperNet(SearchSpace.from_dict(space)), sampler, TrainSettings(steps=2, batch_size=4),
                   checkpoint=layout.supernet_checkpoint, progress=False)
    cfg = RunConfig.from_dict(resolve({**TINY, "run_dir": str(layout.root), "supernet": {"space": space},
                                       "finetune": {"steps": 2, "batch_size": 4, "patch_size": 16}}))
    g = Genome(2, 8, "relu", [Cell("dws", 8, []), Cell("conv", 8, [])])
    summary = finetune_chosen(cfg, layout, {"genome": g.to_dict(), "prune": {}}, progress=False)
    model, info = load_model(layout.final_model)
    assert info["meta"]["candidate"]["genome"] == g.to_dict() and summary["val_psnr"] > 20
    pruned = info["meta"]["pruning"]["layers"]
    assert list(pruned) == ["cells.0.pw"] and pruned["cells.0.pw"]["sparsity"] == 0.0
    assert all(bool((model.get_submodule(n).weight != 0).all()) for n in ("cells.0.dw", "cells.0.pw", "cells.1.conv"))


def test_a_killed_run_with_precisions_resumes_to_the_same_result(base, tmp_path):
    """Killed in stage 2 of a search over [fp32, int8] and run again: the same trials, choice and fine-tuned
    model as an uninterrupted run (test_search's pattern; stages run one by one up to finetune: the compile stage of
    an int8 winner is test_finetuning_an_int8_winner_is_quantisation_aware's)."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.test_search import _safe_trials, _wait_for

    changes = {"search__trials": 24, "search__ratio_trials": 3, "search__precisions": ["fp32", "int8"],
               "finetune__qat_steps": 5, "finetune__steps": 6}
    stages = ("arch", "ratios", "finetune")
    ref, ref_cfg = copy_run(base, tmp_path, "ref", **changes)
    r = cli("run", "-c", ref_cfg, "--stage", "latency", cache=base[1])  # measures the int8 layers it may pick
    assert r.returncode == 0, r.stderr[-2000:]
    _with_int8_entries(ref)
    run = tmp_path / "killed"  # the same measured table (timings differ between two measurements)
    shutil.copytree(ref, run)
    cfg = write_config(tmp_path / "killed.yaml", run, **changes)
    for stage in stages:
        r = cli("run", "-c", ref_cfg, "--stage", stage, cache=base[1])
        assert r.returncode == 0, r.stderr[-2000:]
    env = dict(os.environ, PYTHONPATH=str(ROOT), SRPRUNE_CACHE_DIR=str(base[1]))
    proc = subprocess.Popen([sys.executable, "-c", "from srprune.cli import main; main()", "run", "-c", str(cfg),
                             "--stage", "arch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    db = run / "search" / "study.db"
    try:
        assert _wait_for(lambda: db.exists() and len(_safe_trials(db)) >= 6, 300)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(_safe_trials(db)) < 24  # killed in the middle of stage 2
    for stage in stages:
        r = cli("run", "-c", cfg, "--stage", stage, cache=base[1])
        assert r.returncode == 0, r.stderr[-2000:]
        if stage == "arch":
            assert "[run] arch: resuming" in r.stderr
    for name in ("search/trials.csv", "search/ratios.csv", "search/chosen.json", "final/arch.json"):
        assert (run / name).read_text() == (ref / name).read_text(), name
    trials = (ref / "search" / "trials.csv").read_text()
    assert trials.splitlines()[0].endswith(",precision") and ":int8" in trials
    a = torch.load(run / "final" / "model.pt", weights_only=True)
    b = torch.load(ref / "final" / "model.pt", weights_only=True)
    assert a["arch"] == b["arch"] and a["meta"]["val"] == b["meta"]["val"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_the_pareto_plot_colours_trials_by_precision_mix():
    """Trials with int8 layers are drawn on a colour scale (with a colour bar); an fp32-only search keeps its plain
    colours. Checked on the SVG: the colour bar adds an image-free axes (a second set of tick labels)."""
    from srprune.search.report import pareto_svg

    rows = [{"predicted_ms": str(10 + i), "proxy_psnr": str(34 + i / 10), "feasible": "True",
             "precision": " ".join(f"cells.{k}.conv:int8" for k in range(i % 3)) or "-"} for i in range(6)]
    plain = [{**r, "precision": "-"} for r in rows]
    mixed_svg, plain_svg = pareto_svg(rows, [], None, 20.0, None), pareto_svg(plain, [], None, 20.0, None)
    assert mixed_svg.startswith("<svg") and plain_svg.startswith("<svg")
    assert mixed_svg.count('id="axes_') == 2 and plain_svg.count('id="axes_') == 1
