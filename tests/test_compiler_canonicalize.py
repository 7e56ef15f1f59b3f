"""The pre-rewrite canonical forms: deconvolution as sub-pixel conv, decomposed PReLU fused again."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compiler.build import compile_model
from compiler.canonicalize import canonicalize, subpixel_weight
from compiler.importer import import_module
from compiler.rewrite import find_chains


def _ops(mod) -> list[str]:
    return [str(b.value.op.name) for block in mod["main"].body.blocks for b in block.bindings
            if hasattr(b.value, "op") and hasattr(b.value.op, "name")]


@pytest.mark.parametrize("k, s, p, op", [(9, 2, 4, 1), (4, 2, 1, 0), (3, 3, 0, 0), (5, 3, 1, 2), (9, 4, 4, 3),
                                         (2, 2, 0, 0)])
def test_subpixel_weight_equals_transposed_conv(k, s, p, op):
    """Conv with the sub-pixel weight + PixelShuffle == torch's ConvTranspose2d (independent reference)."""
    torch.manual_seed(k * 10 + s)
    deconv = nn.ConvTranspose2d(4, 3, k, s, p, op, bias=False)
    x = torch.rand(1, 4, 7, 6)
    want = deconv(x).detach()
    w2, (jy0, jx0) = subpixel_weight(deconv.weight.detach().numpy(), (s, s), (p, p))
    ho, wo = want.shape[-2:]
    yn, xn = -(-ho // s), -(-wo // s)
    kh, kw = w2.shape[2:]
    pad = (-jx0, xn + jx0 + kw - 1 - 6, -jy0, yn + jy0 + kh - 1 - 7)  # left, right, top, bottom
    y = nn.functional.conv2d(nn.functional.pad(x, pad), torch.from_numpy(w2))
    got = nn.functional.pixel_shuffle(y, s)[..., :ho, :wo]
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 1e-5


@pytest.mark.parametrize("k, s, p, op", [(9, 2, 4, 1), (4, 2, 1, 0), (5, 3, 1, 2)])
def test_deconv_compiles_to_our_conv_kernel_and_matches_torch(k, s, p, op):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(8, 3, k, s, p, op)).eval()
    mod, rewritten = canonicalize(import_module(model, (1, 3, 9, 10)))
    assert rewritten == 1 and "relax.nn.conv2d_transpose" not in _ops(mod)
    compiled = compile_model(model, (1, 3, 9, 10), "host")
    assert compiled.fused_convs == 2  # the deconvolution runs in our kernel too
    assert compiled.check["max_abs_diff"] <= 1e-4


def test_decomposed_prelu_is_fused_into_the_conv():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.PReLU(8), nn.Conv2d(8, 8, 1), nn.PReLU()).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.linspace(-0.5, 0.5, 8))
    mod = import_module(model, (1, 3, 9, 11))
    assert "relax.where" in _ops(mod)  # torch.export decomposes PReLU; the rewrite needs nn.prelu
    mod, rewritten = canonicalize(mod)
    assert rewritten == 2 and "relax.where" not in _ops(mod)
    assert [c.act for c in find_chains(mod["main"])] == ["prelu", "prelu"]
    compiled = compile_model(model, (1, 3, 9, 11), "host")
    assert compiled.check["max_abs_diff"] <= 1e-4


def test_where_that_is_not_prelu_is_left_alone():
    class Clamp(nn.Module):
        def forward(self, x):  # where(x > 0, x, 2 * y): not PReLU (other tensor in the negative branch)
            y = x.flip(-1)
            return torch.where(x > 0, x, 2.0 * y)

    mod, rewritten = canonicalize(import_module(Clamp().eval(), (1, 2, 4, 5)))
    assert rewritten == 0
    compiled = compile_model(Clamp().eval(), (1, 2, 4, 5), "host")
    assert compiled.check["max_abs_diff"] <= 1e-6


def test_fsrcnn_has_no_default_lowered_conv_left():
    from srprune.models import build_model, deploy

    model = deploy(build_model("fsrcnn", 3, d=16, s=8, m=2)).eval()
    convs = sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())
    compiled = compile_model(model, (1, 3, 8, 9), "host")
    assert compiled.fused_convs == convs
    assert compiled.output_shape == (1, 3, 24, 27)
    assert np.isfinite(compiled.check["max_abs_diff"]) and compiled.check["max_abs_diff"] <= 1e-4


def test_replicate_padding_takes_use_clip_mode_and_keep_their_values():
    """TVM warns on every compile about take's "fast" mode; the in-bounds takes of replicate padding switch to "clip"."""
    class Replicate(nn.Module):
        def forward(self, x):  # noqa: D102
            return nn.functional.pad(x, (2, 2, 2, 2), mode="replicate") * 2.0

    mod, rewritten = canonicalize(import_module(Replicate().eval(), (1, 3, 6, 7)))
    modes = [str(b.value.attrs.mode) for block in mod["main"].body.blocks for b in block.bindings
             if hasattr(b.value, "op") and getattr(b.value.op, "name", "") == "relax.take"]
    assert modes and set(modes) == {"clip"} and rewritten == len(modes)
    compiled = compile_model(Replicate().eval(), (1, 3, 6, 7), "host")
    assert compiled.check["max_abs_diff"] == 0.0
