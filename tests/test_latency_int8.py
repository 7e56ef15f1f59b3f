"""int8 and fp16 entries of the latency table: the code their builds emit, checked against the integer reference on
the very inputs they are timed with; the table, the predictor's per-precision arithmetic and the CLI's refusals."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from compiler.errors import CompilerError
from compiler.int8.isa import choose_isa
from compiler.int8.kernel import make_plan, spec_for
from compiler.int8.network import quantize_image, reference_skip
from compiler.latency.config import LayerConfig
from compiler.latency.measure import build_layer, int8_qconv
from compiler.latency.predict import Predictor
from compiler.latency.runners import LocalRunner
from compiler.latency.table import load_table, open_table
from compiler.quant_spec import reference_conv
from compiler.targets import get_target
from srprune.latency import named_genome_layers, space_layers
from supernet.space import SearchSpace
from tests.conftest import assert_one_line_error, run_built

H, W = 6, 20


@pytest.fixture(scope="module")
def host():
    return get_target("host", 1)


@pytest.mark.parametrize("cfg", [
    LayerConfig("conv", 8, 16, H, W, act="relu", residual=True, precision="int8"),
    LayerConfig("conv", 3, 8, H, W, act="prelu", precision="int8"),  # the head: 3 channels in one padded group
    LayerConfig("conv", 16, 16, H, W, groups=16, precision="int8"),  # depthwise, as its block-diagonal form
    LayerConfig("conv", 8, 8, H, W, k=1, pad=0, precision="int8"),
], ids=["residual", "head-prelu", "depthwise", "1x1"])
def test_int8_conv_entry_is_the_int8_kernel_on_its_timed_inputs(host, cfg):
    """The timed code is the int8 kernel (the form and plan the int8 build picks) and computes the integer
    reference's output, bit for bit, on the uint8 inputs it is timed with."""
    built = build_layer(cfg, host)
    isa = choose_isa(host)
    layer = built.extra["qconv"]
    plan = make_plan(spec_for(layer, 1, H, W), layer.weight, isa)  # the int8 network's choice for this layer
    assert built.extra["kernel"] == f"int8-{isa.name}" + ("-sparse" if plan.sparse else "")
    assert (cfg.groups > 1) == plan.sparse  # a depthwise conv keeps only its diagonal columns
    x = built.inputs[0]
    assert x.dtype == np.uint8 and built.out_dtype == "uint8"
    want = reference_conv(x, layer, built.inputs[-1] if cfg.residual else None)
    got = run_built(built)
    np.testing.assert_array_equal(got, want)
    assert 0 < np.mean((want > 0) & (want < 255))  # not all saturated: the check sees real values
    assert all(t > 0 for t in LocalRunner(1).time(built, 2))


def test_int8_tail_is_the_networks_ends(host):
    """The int8 tail entry runs what the int8 network runs at its ends: the input quantised to uint8, the bicubic
    skip on it, and the tail conv with the skip, PixelShuffle and clamp fused; its output equals the reference."""
    cfg = LayerConfig("tail", 8, 12, H, W, scale=2, precision="int8")
    built = build_layer(cfg, host)
    assert built.vm and built.extra["kernel"].startswith("int8-")
    image, trunk = built.inputs[:2]
    layer = built.extra["qconv"]
    y = reference_conv(trunk, layer) + reference_skip(quantize_image(image), built.extra["skip_weight"])
    want = torch.nn.functional.pixel_shuffle(torch.from_numpy(y.astype(np.float32)), 2).clamp(0, 1).numpy()
    np.testing.assert_allclose(run_built(built), want, rtol=0, atol=1e-6)
    assert all(t > 0 for t in LocalRunner(1).time(built, 2))


def test_int8_adapter_has_no_kernel(host):
    with pytest.raises(CompilerError, match="no adapter kernel"):
        build_layer(LayerConfig("adapter", 8, 12, H, W, k=1, pad=0, bias=False, precision="int8"), host)


def test_pruned_int8_entry_is_the_sparse_kernel_on_the_pruners_weight(host):
    """A pruned int8 layer quantises the pruner's weight (its zeros stay exact) and runs the plan the int8 build
    makes of it: the sparse kernel where whole (4-channel group, tap) columns of a tile are zero, the dense one
    where they are not (the pruner's 4x8 blocks at 50% leave none)."""
    from srprune.search.latency_stage import pruned_weight

    isa = choose_isa(host)
    cfg = LayerConfig("conv", 16, 16, H, W, act="relu", scheme="block", ratio=0.75, block=(4, 8), precision="int8")
    built = build_layer(cfg, host, weight=pruned_weight(cfg))
    layer = built.extra["qconv"]
    assert 1 - np.count_nonzero(layer.weight) / layer.weight.size == pytest.approx(0.75, abs=0.05)
    assert built.extra["kernel"] == f"int8-{isa.name}-sparse"
    np.testing.assert_array_equal(run_built(built), reference_conv(built.inputs[0], layer))
    half = replace(cfg, ratio=0.5)
    assert build_layer(half, host, weight=pruned_weight(half)).extra["kernel"] == f"int8-{isa.name}"
    with pytest.raises(CompilerError, match="needs its weight"):
        build_layer(cfg, host)


def test_int8_qconv_keeps_pruned_zeros_and_is_seeded():
    cfg = LayerConfig("conv", 8, 8, H, W, precision="int8")
    w = np.random.default_rng(0).standard_normal((8, 8, 3, 3)).astype(np.float32)
    w[:, :4, 1, 1] = 0
    q = int8_qconv(cfg, 0, w)
    assert not q.weight[:, :4, 1, 1].any() and np.abs(q.weight).max(axis=(1, 2, 3)).tolist() == [127] * 8
    assert np.array_equal(int8_qconv(cfg, 3).weight, int8_qconv(cfg, 3).weight)


def test_fp16_layers_build_for_the_fp16_target_only(host):
    """fp16 entries are the fp16 build's kernels (float16 tensors between them); they run on arm64 only, so only
    their build is checked here. A pruned fp16 layer the cost model keeps dense is its fp16 dense twin."""
    fp16 = get_target("android-arm64-fp16", 1)
    cfg = LayerConfig("conv", 8, 16, H, W, act="relu", residual=True, precision="fp16")
    built = build_layer(cfg, fp16)
    assert built.extra["kernel"] == "direct" and built.out_dtype == "float16"
    assert built.inputs[0].dtype == np.float16 and built.inputs[-1].dtype == np.float16
    from srprune.search.latency_stage import pruned_weight

    for ratio, kernel in ((0.25, "direct"), (0.75, "sparse")):  # the fp16 sparse kernel, or the fp16 dense twin
        pruned = replace(cfg, scheme="block", ratio=ratio, block=(4, 8))
        got = build_layer(pruned, fp16, weight=pruned_weight(pruned))
        assert got.extra["kernel"] == kernel and got.out_dtype == "float16" and got.inputs[0].dtype == np.float16
    with pytest.raises(CompilerError, match="no fp16 kernels"):
        build_layer(cfg, host)


def test_int8_builds_for_arm64_dot_forms():
    """Cross builds pick the target's form: sdot with +dotprod, the NEON fallback without."""
    cfg = LayerConfig("conv", 8, 8, H, W, precision="int8")
    assert build_layer(cfg, get_target("android-arm64-dotprod", 1)).extra["kernel"] == "int8-sdot"
    assert build_layer(cfg, get_target("android-arm64", 1)).extra["kernel"] == "int8-neon"


# --- table and predictor ---------------------------------------------------------------------------------------


def test_table_round_trips_int8_entries(tmp_path):
    path = tmp_path / "table.json"
    table = open_table(path, "host", 1)
    dense = LayerConfig("conv", 8, 8, H, W, act="relu")
    table.add(dense, [2.0, 2.2], kernel="direct")
    table.add(replace(dense, precision="int8"), [0.5, 0.6], kernel="int8-vnni")
    table.save()
    back = load_table(path)
    e = back.entries[replace(dense, precision="int8").key()]
    assert e.config.precision == "int8" and e.kernel == "int8-vnni" and e.samples_ms == [0.5, 0.6]
    raw = json.loads(path.read_text())["entries"]
    assert "precision" not in raw[dense.key()]["config"]  # fp32 entries read and write as before the field


def _table(tmp_path, rows):
    table = open_table(tmp_path / "t.json", "host", 1)
    for cfg, ms in rows:
        table.add(cfg, [ms])
    return table


def test_int8_sparse_factor_comes_from_the_int8_dense_twin(tmp_path):
    """By hand: fp32 pruned/dense = 6/10, int8 pruned/dense = 3.6/4. An int8 layer at twice the pixels, pruned at
    half the measured ratio: 4 ms x 4 (pixels) x (1 + 0.9) / 2 (factor interpolated) = 15.2 ms."""
    d32 = LayerConfig("conv", 16, 16, 10, 10, act="relu")
    b32 = replace(d32, scheme="block", ratio=0.5, block=(4, 8))
    d8, b8 = replace(d32, precision="int8"), replace(b32, precision="int8")
    pred = Predictor(_table(tmp_path, [(d32, 10.0), (b32, 6.0), (d8, 4.0), (b8, 3.6)]))
    assert pred.sparse_factor(b8) == pytest.approx(0.9) and pred.sparse_factor(b32) == pytest.approx(0.6)
    big = replace(b8, h=20, w=20, ratio=0.25)
    assert pred.layer_ms(big) == (pytest.approx(15.2), "sparse-factor")
    assert pred.layer_ms(replace(big, precision="fp32"))[0] == pytest.approx(40 * 0.8)
    adapter = LayerConfig("adapter", 8, 16, 10, 10, k=1, pad=0, bias=False, precision="int8")
    assert pred.layer_ms(adapter) == (0.0, "fused")


def test_a_precision_the_table_lacks_is_one_line(tmp_path):
    pred = Predictor(_table(tmp_path, [(LayerConfig("conv", 8, 8, 10, 10), 1.0)]))
    with pytest.raises(CompilerError, match=r"no int8 layers; build them with `srprune latency build "
                                            r"--precisions fp32,int8`"):
        pred.layer_ms(LayerConfig("conv", 8, 8, 10, 10, precision="int8"))


def test_space_and_genome_layers_in_precisions():
    space = SearchSpace.from_dict({"num_cells": 2, "widths": [8, 16], "blocks": ["conv", "res", "skip"],
                                   "scales": [2]})
    fp32 = space_layers(space, (24, 40))
    both = space_layers(space, (24, 40), ("fp32", "int8"))
    adapters = [c for c in fp32 if c.op == "adapter"]
    assert adapters and len(both) == 2 * len(fp32) - len(adapters)
    assert {c.key() for c in both if c.precision == "fp32"} == {c.key() for c in fp32}
    genome = {"scale": 2, "head": 8, "activation": "relu",
              "cells": [{"block": "res", "width": 16, "layers": [8]}, {"block": "conv", "width": 16, "layers": []}]}
    named = dict(named_genome_layers(genome, (24, 40), precision={"cells.0.c2": "int8", "tail": "int8"}))
    assert named["cells.0.skip"].precision == "int8"  # the adapter takes its consumer's precision
    assert [named[n].precision for n in ("head", "cells.0.c1", "cells.0.c2", "cells.1.conv", "tail")] == \
        ["fp32", "fp32", "int8", "fp32", "int8"]
    assert {c.precision for _, c in named_genome_layers(genome, (24, 40), precision="int8")} == {"int8"}


# --- CLI ---------------------------------------------------------------------------------------------------------

COMMON = ["--target", "host", "--threads", "1", "--size", "32x16"]


@pytest.mark.parametrize("value,fragment", [("fp32,int4", "unknown precision 'int4'"), ("fp16", "no fp16 kernels"),
                                            (",", "at least one")])
def test_build_refuses_bad_precisions_before_any_work(run_cli, tmp_path, value, fragment):
    run = tmp_path / "run"
    r = run_cli("latency", "build", "--run", run, "--precisions", value, *COMMON)
    assert_one_line_error(r, fragment, alone=True)
    assert not run.exists()


def test_build_with_int8_times_int8_entries(run_cli, tmp_path):
    """`--precisions fp32,int8` on a tiny space: both precisions' layers and pruned kernels are in the table, and
    an all-int8 genome is predicted from int8 entries only."""
    from srprune.latency import genome_layers

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"supernet": {"space": {"num_cells": 1, "widths": [8], "blocks": ["conv", "skip"],
                                                      "scales": [2]}},
                               "search": {"schemes": ["dense", "block"], "blocks": [[4, 8]], "ratios": [0.75]}}))
    run = tmp_path / "run"
    r = run_cli("latency", "build", "--run", run, "--config", cfg, "--precisions", "fp32,int8", "--repeat", "1",
                "--calibrate", "0", *COMMON)
    assert r.code == 0, r.err
    table = load_table(run / "latency" / "host" / "table.json")
    kernels = {e.config.key(): e.kernel for e in table.entries.values() if e.config.precision == "int8"}
    assert any(k.startswith("tail:") for k in kernels) and any(":block" in k for k in kernels)
    assert all(v.startswith("int8-") for v in kernels.values())
    genome = {"scale": 2, "head": 8, "activation": "relu", "cells": [{"block": "conv", "width": 8, "layers": []}]}
    parts = Predictor(table).breakdown(genome_layers(genome, (16, 32), precision="int8"))
    assert [p["source"] for p in parts] == ["table"] * 3
    r = run_cli("latency", "predict", json.dumps(genome), "--run", run, "--precision", "int8", "--json", *COMMON)
    assert r.code == 0, r.err
    assert json.loads(r.out)["predicted_ms"] == pytest.approx(sum(p["ms"] for p in parts))


def test_a_precision_for_a_layer_the_network_lacks_is_refused():
    from srprune.errors import InputError

    genome = {"scale": 2, "head": 8, "activation": "relu", "cells": [{"block": "conv", "width": 8, "layers": []}]}
    with pytest.raises(InputError, match="cells.5.conv"):
        named_genome_layers(genome, (16, 32), precision={"cells.5.conv": "int8"})
