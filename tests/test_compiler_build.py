"""compile_model end to end: torch -> Relax -> our kernels -> TVM build, checked against PyTorch.

Small spatial sizes keep each compile to about a second; the numerics reference is always the
PyTorch module itself on fresh random input (a different seed from the compile-time check).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compiler.bench import PlainSR
from compiler.build import CompiledModel, compile_model, reference_output, verify
from compiler.errors import CompilerError
from compiler.importer import import_module
from compiler.rewrite import find_chains

TOL = 1e-4


def _check(model: nn.Module, shape: tuple[int, int, int, int], min_fused: int) -> CompiledModel:
    torch.manual_seed(0)
    compiled = compile_model(model, shape, "host")
    assert compiled.check["max_abs_diff"] <= TOL
    assert compiled.fused_convs >= min_fused
    x = np.random.default_rng(123).random(shape, dtype=np.float32)
    want = reference_output(model, x)
    got = compiled.run(x)
    assert got.shape == want.shape == compiled.output_shape
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    return compiled


def test_plain_network_with_global_skip_and_pixelshuffle() -> None:
    torch.manual_seed(1)
    compiled = _check(PlainSR(width=8, body=2).eval(), (1, 3, 10, 37), min_fused=4)
    assert compiled.output_shape == (1, 3, 20, 74)


def test_chain_detection_fuses_bias_relu_and_residual() -> None:
    torch.manual_seed(1)
    mod = import_module(PlainSR(width=8, body=2).eval(), (1, 3, 8, 8))
    from compiler.rewrite import fuse_convs

    folded, _ = fuse_convs(mod, 16)  # run once to make sure the rewrite itself succeeds
    chains = find_chains(__import__("tvm").relax.transform.FoldConstant()(mod)["main"])
    acts = [c.act for c in chains]
    assert acts == ["relu", "relu", "relu", "none"]
    assert all(c.bias is not None for c in chains)
    # the last body conv absorbs the global skip (b + h); no other chain has a residual
    assert [c.residual is not None for c in chains] == [False, False, True, False]
    assert "srconv" in folded.script()


@pytest.mark.parametrize("act", ["prelu_channel", "prelu_single", "relu"])
def test_activations_fused(act: str) -> None:
    layers = {"prelu_channel": nn.PReLU(6), "prelu_single": nn.PReLU(), "relu": nn.ReLU()}
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), layers[act]).eval()
    with torch.no_grad():
        for p in model[1].parameters():
            p.uniform_(0.05, 0.6)  # distinct, non-default slopes
    _check(model, (1, 3, 9, 23), min_fused=1)


def test_conv1x1_depthwise_and_unsupported_fall_back() -> None:
    """1x1 and depthwise convs use our kernels; a stride-2 conv and Tanh go through TVM's lowering."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 4, 3, stride=2, padding=1), nn.Tanh(),
    ).eval()
    _check(model, (1, 3, 12, 18), min_fused=2)


def _ecbsr(blocks: int, width: int) -> nn.Module:
    from srprune.models import build_model

    torch.manual_seed(4)
    model = build_model("ecbsr", 2, blocks=blocks, width=width).eval()
    with torch.no_grad():  # the reference initialises edge scales near zero; make every branch matter
        for m in model.modules():
            if isinstance(getattr(m, "scale", None), nn.Parameter):
                m.scale.uniform_(0.1, 0.3)
    return model


def test_ecbsr_deployed_form() -> None:
    from srprune.models import deploy

    plain = deploy(_ecbsr(blocks=1, width=8)).eval()
    compiled = _check(plain, (1, 3, 8, 20), min_fused=3)
    assert compiled.fused_convs == 3  # head, block, tail (+ the nearest-neighbour skip)


def _main_ops(model: nn.Module, shape: tuple[int, int, int, int], sparse: str = "auto") -> tuple[str, list[str]]:
    """(main's Relax text, kernel names) after the conv rewrite."""
    from compiler.pipeline import Phase, lower

    mod, _ = lower(model, shape, "host", sparse=sparse, stop_after=Phase.IMPORT_AND_REWRITE)
    return mod["main"].script(), [gv.name_hint for gv in mod.functions if gv.name_hint != "main"]


def test_tail_writes_the_shuffled_image_and_reads_the_repeated_input_in_place() -> None:
    """ECBSR x2/x3: the tail kernel applies PixelShuffle and the nearest-neighbour skip (the input repeated
    over scale^2 channels) in its write-back: neither the shuffle nor the repeated copy is left in the graph. The
    tail is the direct or the Winograd kernel, as the cost model chooses for the CPU's vectors (AVX-512: direct;
    AVX2: F(4x4) at x3): both fuse the shuffle."""
    from srprune.models import build_model, deploy

    for scale in (2, 3):
        torch.manual_seed(scale)
        plain = deploy(build_model("ecbsr", scale, blocks=1, width=8)).eval()
        text, kernels = _main_ops(plain, (1, 3, 7, 19))
        assert kernels[-1].endswith(f"_shuffle{scale}"), kernels
        for op in ("permute_dims", "broadcast_to", "expand_dims", "reshape"):
            assert op not in text, op
        _check(plain, (1, 3, 7, 19), min_fused=3)


def test_pixelshuffle_kept_separate_where_the_kernel_cannot_fuse_it() -> None:
    """A sparse tail kernel and a grouped conv have no fused shuffle: PixelShuffle stays a Relax op, still exact."""
    torch.manual_seed(7)
    net = PlainSR(width=8, body=1).eval()
    with torch.no_grad():
        net.tail.weight[:, ::2] = 0  # half the input channels pruned: a sparse kernel candidate
    text, kernels = _main_ops(net, (1, 3, 6, 21), sparse="sparse")
    assert "permute_dims" in text and not any("shuffle" in k for k in kernels)
    compiled = compile_model(net, (1, 3, 6, 21), "host", sparse="sparse")
    x = np.random.default_rng(5).random((1, 3, 6, 21), dtype=np.float32)
    np.testing.assert_allclose(compiled.run(x), reference_output(net, x), atol=TOL, rtol=0)

    from srprune.models import build_model, deploy

    ecb = deploy(build_model("ecbsr", 2, blocks=1, width=8)).eval()  # sparse tail: the repeated skip materialised
    compiled = compile_model(ecb, (1, 3, 6, 21), "host", sparse="sparse")
    np.testing.assert_allclose(compiled.run(x), reference_output(ecb, x), atol=TOL, rtol=0)

    grouped = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1, groups=3), nn.PixelShuffle(2)).eval()
    text, kernels = _main_ops(grouped, (1, 3, 6, 21))
    assert "permute_dims" in text and not any("shuffle" in k for k in kernels)
    _check(grouped, (1, 3, 6, 21), min_fused=1)


def test_ecbsr_training_form() -> None:
    """Multi-branch ECBs (1x1 -> pad-with-bias -> 3x3, Sobel/Laplacian depthwise): correct, partly fused."""
    _check(_ecbsr(blocks=0, width=4), (1, 3, 6, 9), min_fused=1)


def test_verify_refuses_a_model_that_differs() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).eval()
    compiled = compile_model(model, (1, 3, 6, 6))
    other = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).eval()
    with pytest.raises(CompilerError, match="differs from PyTorch"):
        verify(compiled, other)


def test_bad_input_raises_one_line_errors() -> None:
    model = nn.Conv2d(3, 3, 3, padding=1)
    with pytest.raises(CompilerError, match="unknown target 'pdp11'"):
        compile_model(model, (1, 3, 4, 4), "pdp11")
    with pytest.raises(CompilerError, match="input shape"):
        compile_model(model, (1, 3, 4), "host")
    with pytest.raises(CompilerError, match="nn.Module"):
        import_module("not a model", (1, 3, 4, 4))  # type: ignore[arg-type]
    compiled = compile_model(model, (1, 3, 4, 4))
    with pytest.raises(CompilerError, match="differs from the compiled"):
        compiled.run(np.zeros((1, 3, 5, 5), np.float32))
    arm = compile_model(model, (1, 3, 4, 4), "linux-arm64")
    assert arm.check == {}
    with pytest.raises(CompilerError, match="cross-compiled"):
        arm.run(np.zeros((1, 3, 4, 4), np.float32))


def test_graph_macs_matches_formula() -> None:
    from compiler.bench import graph_macs

    h, w = 10, 14
    # head 3->8, two 8->8 body convs, tail 8->12: H*W*(Cin*Cout*9) summed
    want = h * w * 9 * (3 * 8 + 2 * 8 * 8 + 8 * 12)
    assert graph_macs(PlainSR(width=8, body=2).eval(), (1, 3, h, w)) == want
    depthwise = nn.Conv2d(6, 6, 3, padding=1, groups=6)
    assert graph_macs(depthwise, (2, 6, h, w)) == 2 * h * w * 6 * 9


def test_supernet_subnetwork_with_depthwise_and_residual_cells() -> None:
    """A standalone supernet sub-network (deployed) with depthwise-separable and residual cells."""
    from supernet.space import SearchSpace
    from supernet.standalone import build_genome_net

    space, rng = SearchSpace(), np.random.default_rng(0)
    for _ in range(100):
        genome = space.sample(rng, 2)
        blocks = {c.block for c in genome.cells}
        if {"dws", "res"} <= blocks:
            break
    else:
        pytest.skip("the search space has no genome with both dws and res cells")
    torch.manual_seed(6)
    net = build_genome_net(2, genome.to_dict(), deployed=True).eval()
    _check(net, (1, 3, 8, 13), min_fused=3)


def test_tail_and_skip_convs_meeting_in_one_add_both_run_on_our_kernels() -> None:
    """GenomeNet's tail conv and fixed bicubic skip conv share one add; neither may fall to the naive conv."""
    from supernet.standalone import GenomeNet

    genome = {"scale": 2, "head": 8, "activation": "relu", "cells": [{"block": "conv", "width": 8, "layers": []}]}
    net = GenomeNet(genome).deploy().eval()
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    compiled = compile_model(net, (1, 3, 12, 16), "host")
    assert compiled.fused_convs == convs == 4
    assert compiled.check["max_abs_diff"] <= 1e-4
    _, kernels = _main_ops(net, (1, 3, 12, 16))
    assert sum(k.endswith("_shuffle2") for k in kernels) == 1  # the tail (with the skip as residual) writes the image


def test_graph_macs_include_transposed_convs_like_srprune_complexity() -> None:
    from compiler.bench import graph_macs
    from srprune.complexity import macs_for_output
    from srprune.models import build_model, deploy

    model = deploy(build_model("fsrcnn", 2)).eval()
    assert graph_macs(model, (1, 3, 360, 640)) == macs_for_output(model, 2, (720, 1280))
