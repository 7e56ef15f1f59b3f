"""The static latency estimate (compiler.latency.estimate): CPU models, assembly parsing on real arm64 kernels,
a dense conv against the FMA-peak formula, estimated tables in a run, and the one-line errors.

Needs llvm-mca-19 (Debian's llvm-19; scripts/install-system-deps.sh installs it); skipped with the reason without.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from compiler.latency.config import LayerConfig
from tests.conftest import assert_one_line_error

pytestmark = pytest.mark.skipif(shutil.which("llvm-mca-19") is None,
                                reason="llvm-mca-19 missing (install llvm-19: scripts/install-system-deps.sh)")


def _mca_dispatch(mcpu: str) -> int:
    """Dispatch width llvm-mca-19 reports for `mcpu`, straight from the tool (the independent reference)."""
    out = subprocess.run(["llvm-mca-19", "-mtriple=aarch64-linux-android", f"-mcpu={mcpu}"],
                         input="fmla v0.4s, v1.4s, v2.4s\n", capture_output=True, text=True, check=True).stdout
    return int(next(line.split(":")[1] for line in out.splitlines() if line.startswith("Dispatch Width")))


def test_core_models_are_not_the_a57_fallback():
    """The pitfall is real (LLVM 19 gives cortex-a77 the A57 model, width 3), and no table core maps to it."""
    from compiler.latency.estimate import A57_DISPATCH, _core, check_model, cpu_table

    assert _mca_dispatch("cortex-a57") == A57_DISPATCH
    assert _mca_dispatch("cortex-a77") == A57_DISPATCH  # why the table maps the big cores to neoverse models
    expected = {"cortex-a55": 2, "cortex-a76": 8, "cortex-a77": 8, "cortex-a78": 8, "cortex-x1": 15}
    for name in cpu_table()["cores"]:
        core = _core(name)
        assert core.mca not in ("cortex-a57", "cortex-a76", "cortex-a77", "cortex-a78", "cortex-x1")
        assert check_model(core) == _mca_dispatch(core.mca) == expected[name] != A57_DISPATCH


def test_soc_uses_its_fastest_cores():
    """A SoC runs `threads` threads on its fastest cores; the S865's four big ones are A77s (2.84 + 3 x 2.42)."""
    from compiler.latency.estimate import get_cpu

    cpu = get_cpu("snapdragon-865")
    assert [(c.name, g) for c, g in cpu.used(4)] == [("cortex-a77", 2.84)] + [("cortex-a77", 2.42)] * 3
    assert {c.name for c, _ in cpu.used(8)} == {"cortex-a77", "cortex-a55"}
    assert cpu.label() == "estimated (static model of CPU snapdragon-865)"


@pytest.fixture(scope="module")
def arm_conv():
    """A dense 3x3 conv built for android-arm64 with the table's own path, and its parsed code."""
    from compiler.latency.estimate import kernel_code
    from compiler.targets import get_target

    target = get_target("android-arm64", 1)
    cfg = LayerConfig("conv", 16, 16, 24, 64, act="relu")
    code, sched, executed = kernel_code(cfg, target)
    return cfg, target, code, sched, executed


def test_hot_loop_of_a_real_arm64_kernel(arm_conv):
    """The hot loop is the schedule's accumulator tile: fmla .4s only, a multiple of oc_tile x nvec vectors; llvm-mca
    reads every instruction of it, and its cycles lie between the two-FMA-pipe bound and one instruction a cycle."""
    from compiler.latency.estimate import _core, run_mca

    cfg, target, code, sched, executed = arm_conv
    assert executed is None
    fmla = [i for i in code.hot.body if i.startswith("fmla")]
    assert fmla and all(".4s" in i for i in fmla)
    assert code.hot.fma() == 4 * len(fmla) and len(fmla) % (sched.oc_tile * sched.nvec) == 0
    assert code.parallel > 1 and code.copy is not None and code.epilogue
    res = run_mca("\n".join(code.hot.body), _core("cortex-a77").mca, target.triple)
    assert res.instructions == len(code.hot.body) * res.iterations  # nothing of the body was dropped
    assert len(fmla) / 2 <= res.cycles_per_iteration <= len(code.hot.body)


def test_parse_mca_summary():
    from compiler.errors import CompilerError
    from compiler.latency.estimate import parse_mca

    text = ("Iterations:        100\nInstructions:      89900\nTotal Cycles:      32709\nTotal uOps:        127400\n\n"
            "Dispatch Width:    8\nuOps Per Cycle:    3.89\nIPC:               2.75\nBlock RThroughput: 321.0\n")
    r = parse_mca(text)
    assert (r.iterations, r.instructions, r.dispatch_width, r.block_rthroughput) == (100, 89900, 8, 321.0)
    assert r.cycles_per_iteration == pytest.approx(327.09)
    with pytest.raises(CompilerError):
        parse_mca("Iterations: 100\n")


@pytest.mark.parametrize("cpu", ["cortex-a77", "cortex-a55", "cortex-x1"])
def test_dense_conv_within_a_sane_factor_of_the_fma_peak(cpu):
    """The direct kernel: estimate / (MACs / (4 lanes x FMA pipes x clock)) lies in [1, 3] on one thread: never
    faster than the peak, and a register-tiled conv is not 3x off it on any of these models (the compiler gives this
    layer to Winograd, which does fewer multiplies: forced direct here)."""
    from compiler.latency.estimate import Estimator, get_cpu
    from compiler.targets import get_target
    from compiler.winograd import winograd_mode

    target = get_target("android-arm64", 1)
    est = Estimator(target, get_cpu(cpu, target))
    cfg = LayerConfig("conv", 32, 32, 24, 128, act="relu")
    core, ghz = est.used[0]
    ideal_ms = cfg.macs() / (4 * core.fma128_per_cycle * ghz * 1e9) * 1e3
    with winograd_mode("direct"):
        ratio = est.layer(cfg).ms / ideal_ms
    assert 1.0 <= ratio <= 3.0, (cpu, ratio)


def test_more_threads_and_sparser_kernels_are_faster():
    """4 threads beat 1 (the parallel loop's bands split; at best 4x), a 50% block-sparse kernel beats the direct
    kernel of its dense twin (the compiler gives the dense layer itself to Winograd: not what sparsity is measured
    against here)."""
    import numpy as np

    from compiler.latency.estimate import Estimator, get_cpu
    from compiler.targets import get_target
    from srprune.search.latency_stage import pruned_weight

    dense = LayerConfig("conv", 16, 16, 96, 64, act="relu")
    t1, t4 = get_target("android-arm64", 1), get_target("android-arm64", 4)
    one = Estimator(t1, get_cpu("cortex-a77", t1)).layer(dense).ms
    est = Estimator(t4, get_cpu("cortex-a77", t4))
    four = est.layer(dense).ms
    assert one / 4 * 0.99 <= four <= one / 2
    sparse = LayerConfig("conv", 16, 16, 96, 64, act="relu", scheme="block", ratio=0.5, block=(4, 8))
    w = pruned_weight(sparse)
    assert np.mean(w == 0) == pytest.approx(0.5, abs=0.05)
    from compiler.winograd import winograd_mode

    with winograd_mode("direct"):
        direct = Estimator(t4, est.cpu).layer(dense).ms
    assert 0.3 * direct < est.layer(sparse, w).ms < direct


def test_estimated_table_in_a_run_is_labelled(tmp_path):
    """`latency.source: estimate`'s table: every layer of the space, marked as an estimate, read by the Predictor."""
    from compiler.latency.table import load_table
    from compiler.targets import get_target
    from srprune.latency import load_predictor, space_layers
    from srprune.latency.estimated import build_estimated_table, label
    from supernet.space import SearchSpace

    space = SearchSpace.from_dict({"num_cells": 1, "widths": [8], "blocks": ["conv", "skip"], "scales": [2]})
    target = get_target("android-arm64", 4)
    table, n = build_estimated_table(tmp_path, target, "cortex-a77", space, (16, 64), progress=False)
    assert n == len(space_layers(space, (16, 64))) == len(table)
    assert label(tmp_path, target.name) == "estimated (static model of CPU cortex-a77)"
    assert load_table(table.path).header["estimate"]["cores"][0]["mca"] == "neoverse-n1"
    pred = load_predictor(tmp_path, target.name, 4)
    assert pred.calibration.alpha == 1.0 and all(e.median_ms > 0 for e in pred.table.entries.values())
    _, again = build_estimated_table(tmp_path, target, "cortex-a77", space, (16, 64), progress=False)
    assert again == 0  # resumes: nothing left to estimate
    # another CPU replaces the table: the old one and a calibration beside it are kept in RUN/stale/, not deleted
    from srprune.layout import calibration_path

    old_table = table.path.read_bytes()
    calibration_path(tmp_path, target.name).write_text('{"fitted": "on a phone"}')
    build_estimated_table(tmp_path, target, "cortex-a55", space, (16, 64), progress=False)
    kept = sorted(p for p in (tmp_path / "stale").rglob("*") if p.is_file())
    assert [p.name for p in kept] == ["predictor.json", "table.json"]
    assert kept[1].read_bytes() == old_table and kept[0].read_text() == '{"fitted": "on a phone"}'
    assert not calibration_path(tmp_path, target.name).exists()
    # a table estimated by an older method of the estimate is re-estimated (set aside like another CPU's)
    doc = json.loads(table.path.read_text())
    doc["header"]["estimate"]["method"] = 1
    table.path.write_text(json.dumps(doc))
    _, redone = build_estimated_table(tmp_path, target, "cortex-a55", space, (16, 64), progress=False)
    assert redone == len(space_layers(space, (16, 64)))


def test_config_unknown_cpu_is_one_line(tmp_path, run_cli):
    from srprune.errors import InputError
    from srprune.search.config import resolve

    base = {"run_dir": str(tmp_path / "r"), "budget_ms": 30, "target": "android-arm64",
            "supernet": {"space": {"scales": [2]}}}
    with pytest.raises(InputError, match=r"latency\.cpu: unknown cpu 'cortex-a99'; known: cortex-a55"):
        resolve({**base, "latency": {"source": "estimate", "cpu": "cortex-a99"}})
    with pytest.raises(InputError, match=r"latency\.cpu: a CPU name is required"):
        resolve({**base, "latency": {"source": "estimate"}})
    with pytest.raises(InputError, match="set rpc"):
        resolve(base)
    assert resolve({**base, "latency": {"source": "estimate", "cpu": "snapdragon-865"}})["latency"]["cpu"] == \
        "snapdragon-865"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(json.dumps({**base, "latency": {"source": "estimate", "cpu": "cortex-a99"}}))
    assert_one_line_error(run_cli("run", "-c", cfg), "unknown cpu 'cortex-a99'")


def test_cli_estimate_prints_layers_and_total(run_cli):
    genome = {"scale": 2, "head": 8, "activation": "relu",
              "cells": [{"block": "conv", "width": 8, "layers": []}]}
    r = run_cli("latency", "estimate", "--target", "android-arm64", "--cpu", "cortex-a77", "--size", "128x32",
                "--json", json.dumps(genome))
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [row["name"] for row in doc["layers"]] == ["head", "cells.0.conv", "tail"]
    assert doc["total_ms"] == pytest.approx(sum(row["ms"] for row in doc["layers"]))
    assert doc["latency"] == "estimated (static model of CPU cortex-a77)"
    assert doc["estimate"]["memory"] is None and all(row["memory_ms"] == 0.0 for row in doc["layers"])
    soc = run_cli("latency", "estimate", "--target", "android-arm64", "--cpu", "snapdragon-865", "--size", "128x32",
                  json.dumps(genome))
    assert soc.code == 0, soc.err
    assert "memory: each kernel's bytes at 44 GB/s (LPDDR5-5500" in soc.out
    bad = run_cli("latency", "estimate", "--cpu", "cortex-a99", json.dumps(genome))
    assert_one_line_error(bad, "unknown cpu 'cortex-a99'")


def test_calibrate_reports_the_estimates_error(run_cli, tmp_path):
    """With --cpu, `latency calibrate` prints the static estimate of each phone-measured network and its MAPE:
    a phone measuring exactly 2x the estimate: the estimate is -50% off, MAPE 50%."""
    from compiler.latency.estimate import Estimator, get_cpu
    from compiler.targets import get_target
    from srprune.latency import genome_layers
    from tests.test_latency_cli import GENOME, _bench_record, _device_table

    run = tmp_path / "run"
    _device_table(run)
    target = get_target("android-arm64", 4)
    est = Estimator(target, get_cpu("cortex-a55", target))
    static = sum(est.layer(c).ms for c in genome_layers(GENOME, (48, 64)))
    f = tmp_path / "bench.json"
    f.write_text(json.dumps(_bench_record(GENOME, 2 * static)))
    r = run_cli("latency", "calibrate", "--run", run, "--target", "android-arm64", "--threads", "4",
                "--device-bench", f, "--cpu", "cortex-a55")
    assert r.code == 0, r.err
    assert "(-50.0%)" in r.out and "MAPE 50.0%" in r.out
    assert "estimated (static model of CPU cortex-a55)" in r.out
    bad = run_cli("latency", "calibrate", "--run", run, "--target", "android-arm64", "--threads", "4",
                  "--device-bench", f, "--cpu", "cortex-a99")
    assert_one_line_error(bad, "unknown cpu 'cortex-a99'")


def test_shipped_android_estimate_config_resolves():
    """configs/android-estimate.yaml: android-arm64 without rpc, latency estimated on the S865, budget in ms."""
    from srprune.search.config import load
    from tests.conftest import ROOT

    cfg = load(ROOT / "configs" / "android-estimate.yaml")
    assert (cfg["target"], cfg["rpc"], cfg["threads"], cfg["output_size"]) == ("android-arm64", None, 4, "1280x720")
    assert cfg["latency"]["source"] == "estimate" and cfg["latency"]["cpu"] == "snapdragon-865"
    assert cfg["scale"] == 2 and cfg["data"] == "builtin" and cfg["budget_ms"] > 0


def test_replan_and_labels_read_estimated_results():
    """A compile result of an estimated run has `estimated_ms` and its label, and no `measured_ms`: the replanning
    corrects predictions by it just as by a measurement, and the summaries name it as estimated."""
    from srprune.search.latency_label import deployed_ms, latency_word, value_key
    from srprune.search.replan import pick

    dep = {"predicted_ms": 9.0, "estimated_ms": 12.0, "latency": "estimated (static model of CPU cortex-a77)"}
    assert (deployed_ms(dep), latency_word(dep), value_key(dep)) == (12.0, dep["latency"], "estimated_ms")
    assert latency_word({"measured_ms": 1.0}) == "measured"
    records = [{"proxy_psnr": 34.9, "predicted_ms": 9.0, "genome": {"head": 1}, "prune": {}},
               {"proxy_psnr": 34.8, "predicted_ms": 7.0, "genome": {"head": 2}, "prune": {}}]
    feedback = [{"candidate": {"genome": {"head": 1}, "prune": {}}, "predicted_ms": 9.0, "estimated_ms": 12.0}]
    best = pick(records, feedback, 8.0, 10.0)
    assert best["genome"] == {"head": 2} and best["corrected_ms"] == pytest.approx(7.0 * 12.0 / 9.0)


def test_instruction_classes():
    """What the loop finder counts: multiply-adds (fmla/fmls, sdot = 4 bytes x lanes, smlal), products (a GEMM's first
    channel is an fmul), whole vector registers stored (stp q = 2, st1 with two registers = 2)."""
    from compiler.latency.estimate import fma_lanes, mul_lanes, vector_stores

    assert [fma_lanes(i) for i in ("fmla v0.4s, v1.4s, v2.4s", "fmls v0.4s, v1.4s, v2.4s", "fmla v0.8h, v1.8h, v2.8h",
                                   "sdot v0.4s, v1.16b, v2.16b", "smlal2 v0.4s, v1.8h, v2.h[3]",
                                   "fadd v0.4s, v1.4s, v2.4s",
                                   "vfmadd231ps %zmm1, %zmm2, %zmm0")] == [4, 4, 8, 16, 4, 0, 16]
    assert mul_lanes("fmul v0.4s, v1.4s, v2.4s") == mul_lanes("fmul v0.4s, v1.4s, v2.s[1]") == 4
    assert fma_lanes("fmul v0.4s, v1.4s, v2.4s") == 0
    assert [vector_stores(i) for i in ("str q0, [x1]", "stp q0, q1, [x2, #32]", "st1 { v0.4s, v1.4s }, [x0]",
                                       "str s0, [x1]", "vmovups %zmm0, 64(%rax)", "ldr q0, [x1]")] == [1, 2, 2, 0, 1, 0]


def _winograd_layer(target):
    """A dense 3x3 conv the compiler gives to Winograd on `target`, with its tile m and schedule."""
    from compiler.latency.measure import conv_spec
    from compiler.winograd import choose_conv_kernel, choose_winograd_schedule

    cfg = LayerConfig("conv", 32, 32, 48, 128, act="relu")
    spec = conv_spec(cfg, target)
    m = choose_conv_kernel(spec, target.vec, target.registers)
    assert m in (2, 4), "the compiler's cost model keeps a 32->32 3x3 conv direct: pick another layer"
    return cfg, spec, m, choose_winograd_schedule(spec, m, target.vec, target.registers)


@pytest.mark.parametrize("target_name", ["android-arm64", "host"])
def test_winograd_layer_is_estimated_from_the_winograd_kernel(target_name):
    """A layer the compiler gives to Winograd is estimated from the Winograd kernel's own code: the GEMM loop found
    forms chunk x oc_tile x nvec x vec products per pass (the schedule's formula) and runs as often as the batched
    GEMM needs (computed tiles x alpha^2 x cin x cout products); output and input transforms are found; the whole is
    cheaper than the direct kernel of the same layer and at least its GEMM."""
    import math

    from compiler.latency.estimate import Estimator, get_cpu
    from compiler.targets import get_target

    target = get_target(target_name, 1)
    cfg, spec, m, sched = _winograd_layer(target)
    est = Estimator(target, get_cpu("cortex-a77" if target.cross else "host", target))
    e = est.layer(cfg)
    assert e.detail["kernel"] == f"winograd{m}"
    chunk = max(d for d in range(1, cfg.cin + 1) if cfg.cin % d == 0 and d <= 32)
    assert e.detail["gemm_products"] == chunk * sched.oc_tile * sched.nvec * sched.vec
    a = m + 2
    oh, ow = cfg.out_hw
    tiles = math.ceil(oh / m) * math.ceil(math.ceil(ow / m) / sched.w_tile) * sched.w_tile
    gemm = e.detail["parts"]["gemm"]
    assert gemm["count"] * e.detail["gemm_products"] == pytest.approx(tiles * a * a * cfg.cin * cfg.cout)
    assert {"gemm", "output", "input_cols"} <= set(e.detail["parts"])
    from compiler.winograd import winograd_mode

    with winograd_mode("direct"):
        direct = Estimator(target, est.cpu).layer(cfg)
    assert direct.detail["kernel"] == "direct"
    assert e.parts["gemm"] < sum(e.parts.values()) < sum(direct.parts.values())


def test_fp16_kernel_is_fp16_and_not_slower_per_mac():
    """The fp16 target's estimate builds the fp16 kernel (fmla .8h only in the hot loop, a multiple of the tile's
    oc_tile x nvec accumulators; it used to build a float32 kernel with 8-lane vectors): on the same core model its
    cycles per multiply-add are at most the fp32 kernel's, and so is the layer (fp16 keeps 3x3 convs direct)."""
    from compiler.latency.estimate import Estimator, _core, get_cpu, kernel_code, run_mca
    from compiler.targets import get_target
    from compiler.winograd import winograd_mode

    cfg = LayerConfig("conv", 16, 16, 24, 64, act="relu")
    t16, t32 = get_target("android-arm64-fp16", 1), get_target("android-arm64", 1)
    code, sched, _ = kernel_code(cfg, t16)
    fmla = [i for i in code.hot.body if i.startswith("fml")]
    assert fmla and all(".8h" in i for i in fmla) and sched.vec == 8
    assert code.hot.fma() == 8 * len(fmla) and len(fmla) % (sched.oc_tile * sched.nvec) == 0
    code32, _, _ = kernel_code(cfg, t32)
    n1 = _core("cortex-a77").mca
    per_mac16 = run_mca("\n".join(code.hot.body), n1, t16.triple).cycles_per_iteration / code.hot.fma()
    per_mac32 = run_mca("\n".join(code32.hot.body), n1, t32.triple).cycles_per_iteration / code32.hot.fma()
    assert per_mac16 <= per_mac32
    e16 = Estimator(t16, get_cpu("cortex-a77", t16)).layer(cfg)
    with winograd_mode("direct"):
        e32 = Estimator(t32, get_cpu("cortex-a77", t32)).layer(cfg)
    assert e16.detail["kernel"] == "direct" and e16.ms <= e32.ms


@pytest.mark.parametrize(("target_name", "form", "lanes"), [("android-arm64-dotprod", "sdot", 16),
                                                            ("android-arm64", "smlal", 4)])
def test_int8_layer_is_estimated_from_the_int8_kernel(target_name, form, lanes):
    """A precision-int8 layer is the int8 kernel of the target's dot form: with +dotprod the loop found holds sdot
    (the kernel's columns x oc_tile x nvec of them: groups of 4 input channels x 9 taps), without it NEON smlal and no
    sdot; the products counted equal the layer's dense multiply-adds (cin a multiple of 4, width a multiple of the
    tile)."""
    from compiler.int8.isa import choose_isa
    from compiler.int8.kernel import build_kernel
    from compiler.latency.estimate import Estimator, get_cpu, int8_layer
    from compiler.targets import get_target

    target = get_target(target_name, 1)
    cfg = LayerConfig("conv", 16, 16, 24, 64, act="relu", precision="int8")
    est = Estimator(target, get_cpu("cortex-a77", target))
    e = est.layer(cfg)
    assert e.detail["kernel"] == f"int8 {'sdot' if form == 'sdot' else 'neon'}" and e.ms > 0
    assert e.detail["executed_macs"] == cfg.macs()
    k = build_kernel(int8_layer(cfg, None), 1, cfg.h, cfg.w, choose_isa(target))
    if form == "sdot":
        columns = (cfg.cin // 4) * 9
        assert e.detail["dot_macs"] == lanes * columns * k.plan.oc_tile * k.plan.nvec
    from compiler.int8.isa import kernel_target
    from compiler.latency.estimate import KernelCode, _compile_asm

    code = KernelCode.from_asm(_compile_asm(k.func, kernel_target(target, k.isa), "int8"), 1)
    ops = [i.split()[0] for i in code.hot.body]
    assert any(o.startswith(form) for o in ops) and (form == "sdot" or "sdot" not in ops)


def test_cli_estimates_a_quantised_model_as_its_int8_clib(run_cli, tmp_path):
    """`latency estimate` of a quantised model (srprune quantize): one row per kernel of its int8 c-lib in order
    (quantise, bicubic skip, one conv per layer, names from the model), sdot on the dotprod target and the NEON form
    on plain android-arm64; the total is their sum and is labelled as estimated."""
    import cv2
    import torch
    from skimage import data

    from srprune.models import build_model, resolve_model, save_model
    from srprune.quant.quantize import QuantConfig, quantize_model_file
    from supernet.space import Cell, Genome

    hr = tmp_path / "hr"
    hr.mkdir()
    cv2.imwrite(str(hr / "chelsea.png"), data.chelsea()[:48, :64, ::-1])
    genome = Genome(2, 8, "relu", [Cell("res", 8, [8]), Cell("dws", 8, [])]).to_dict()
    torch.manual_seed(0)
    save_model(tmp_path / "g.pt", build_model("genome", 2, genome=genome))
    q, _ = quantize_model_file(str(tmp_path / "g.pt"), str(hr), tmp_path / "g-q.pt", QuantConfig(), val_data=None,
                               progress=False)
    specs = resolve_model(str(q), None)[0].specs
    for target, form in (("android-arm64-dotprod", "sdot"), ("android-arm64", "neon")):
        r = run_cli("latency", "estimate", "--target", target, "--cpu", "cortex-a77", "--size", "128x32", "--json", q)
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        assert [row["name"] for row in doc["layers"]] == ["quantize", "skip"] + [s["name"] for s in specs]
        convs = doc["layers"][2:]
        assert all(row["layer"].startswith(f"int8 {form} conv") and row["ms"] > 0 for row in convs)
        assert [row["macs"] for row in convs] == [s["out"] * s["in"] // s["groups"] * s["k"] ** 2 * 16 * 64
                                                   for s in specs]
        assert doc["total_ms"] == pytest.approx(sum(row["ms"] for row in doc["layers"]))
        assert doc["latency"] == "estimated (static model of CPU cortex-a77)"


def test_memory_term_against_the_hand_formula():
    """The memory term of known layers on the S865 (44.0 GB/s, its LPDDR5's spec sheet), counted by hand: a 3x3
    16->32 conv with a residual at 90x160 reads its input, residual and weights and writes its output; a channel
    pad reads its input and writes zeros too, a slice reads only what it keeps; fp16 tensors are half the bytes.
    The estimate is compute + memory, its compute part what the same CPU gives without a bandwidth, and a bare core
    (no memory system named) has no memory term."""
    from dataclasses import replace

    from compiler.latency.estimate import Estimator, get_cpu
    from compiler.targets import get_target

    target = get_target("android-arm64", 4)
    cpu = get_cpu("snapdragon-865", target)
    assert cpu.mem_gbps == 44.0 and "LPDDR5" in cpu.mem_source
    est = Estimator(target, cpu)
    h, w = 90, 160
    conv = LayerConfig("conv", 16, 32, h, w, act="relu", residual=True)
    e = est.layer(conv)
    hand = 4 * (16 * h * w + 32 * h * w + 32 * h * w + 32 * 16 * 9)  # input, output, residual, weights
    assert e.detail["bytes"] == hand
    assert e.detail["memory_ms"] == pytest.approx(hand / 44.0e9 * 1e3)
    assert e.ms == pytest.approx(e.detail["compute_ms"] + e.detail["memory_ms"])
    bare = Estimator(target, replace(cpu, mem_gbps=None)).layer(conv)
    assert bare.ms == pytest.approx(e.detail["compute_ms"]) and bare.detail["memory_ms"] == 0.0
    pad = est.layer(LayerConfig("adapter", 16, 32, h, w, k=1, pad=0, bias=False))
    cut = est.layer(LayerConfig("adapter", 32, 16, h, w, k=1, pad=0, bias=False))
    assert pad.detail["bytes"] == 4 * (16 + 32) * h * w and cut.detail["bytes"] == 4 * (16 + 16) * h * w
    t16 = get_target("android-arm64-fp16", 4)
    assert Estimator(t16, get_cpu("snapdragon-865", t16)).layer(conv).detail["bytes"] == hand / 2
    core = Estimator(target, get_cpu("cortex-a77", target))
    assert core.describe()["memory"] is None and core.layer(conv).detail["memory_ms"] == 0.0


def test_tail_memory_is_its_convs_and_the_shuffle():
    """A x2 tail from 16 channels: its conv to 12 channels, the 5x5 bicubic conv of the 3-channel image (grouped:
    12 x 1 x 25 weights) and the PixelShuffle's read and write of the 12-channel output, by hand."""
    from compiler.latency.estimate import traffic_bytes

    h, w = 40, 64
    tail = LayerConfig("tail", 16, 3, h, w, k=3, scale=2)
    hand = 4 * ((16 * h * w + 12 * h * w + 12 * 16 * 9) + (3 * h * w + 12 * h * w + 12 * 25) + 2 * 12 * h * w)
    assert traffic_bytes(tail) == hand


def test_host_bandwidth_is_the_recorded_figure_for_the_threads(tmp_path, monkeypatch):
    """benchmarks/mem_bandwidth.py --record writes a `hosts` entry that keeps cpus.json valid and the rest of it as
    it was; the estimate takes the figure of the most threads measured up to the target's, and without an entry
    has no memory term and says why."""
    import json

    from benchmarks import mem_bandwidth
    from compiler.latency import estimate

    path = tmp_path / "cpus.json"
    path.write_text(estimate.CPU_FILE.read_text())
    before = json.loads(path.read_text())
    results = [{"threads": 1, "array_mib": 32, "repeats": 10, "best_gbps": 12.34, "median_gbps": 9.0, "load": 0.5},
               {"threads": 2, "array_mib": 32, "repeats": 10, "best_gbps": 20.06, "median_gbps": 15.0, "load": 0.5}]
    monkeypatch.setattr(mem_bandwidth, "llvm_cpu", lambda: "testcpu")
    mem_bandwidth.record(results, path)
    after = json.loads(path.read_text())
    assert after["hosts"]["testcpu"]["gbps"] == {"1": 12.3, "2": 20.1}
    assert {k: v for k, v in after.items() if k != "hosts"} == {k: v for k, v in before.items() if k != "hosts"}
    monkeypatch.setattr(estimate, "cpu_table", lambda: after)
    assert estimate.host_bandwidth("testcpu", 1)[0] == 12.3
    assert estimate.host_bandwidth("testcpu", 4)[0] == 20.1
    gbps, why = estimate.host_bandwidth("othercpu", 2)
    assert gbps is None and "mem_bandwidth.py --record" in why


def test_an_estimated_run_ends_with_an_apk_and_labels_every_latency(tmp_path):
    """configs/android-estimate.yaml's pipeline, on a tiny space (the shipped config takes about 7 minutes: README):
    `srprune run` for android-arm64 with `latency.source: estimate` and `android.apk` deploys a network whose
    estimated time fits the budget (compile via the estimate, no phone, no rpc), labels it estimated in the result,
    the headline and the report (never measured), and ends with the signed APK holding the compiled model."""
    import zipfile

    from tests.test_android_apk import _tools_or_skip
    from tests.test_search import cli, write_config

    _tools_or_skip()
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", target="android-arm64", threads=4,
                       latency={"source": "estimate", "cpu": "snapdragon-865"}, android={"apk": True})
    r = cli("run", "-c", cfg, cache=tmp_path / "cache", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    label = "estimated (static model of CPU snapdragon-865)"
    res = json.loads((tmp_path / "run" / "compiled" / "android-arm64" / "latency.json").read_text())
    assert res["latency"] == label and "measured_ms" not in res
    # the compiled network's own kernels estimated (estimate_final), not the table's prediction of them
    assert 0 < res["estimated_ms"] <= res["budget_ms"] == 50.0 and res["within_budget"] and res["predicted_ms"] > 0
    assert f"latency on android-arm64: {label}" in r.stdout and "measured" not in r.stdout.split("latency on")[1]
    report = (tmp_path / "run" / "report.html").read_text()
    assert "nothing was measured on a device" in report and "Measured latency of the compiled model" not in report
    apk = tmp_path / "run" / "android" / "srprune-demo.apk"
    with zipfile.ZipFile(apk) as z:
        names = z.namelist()
    assert "lib/arm64-v8a/libsrmodel.so" in names and "classes.dex" in names
