"""Params and MACs against the papers' formulas and published counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from srprune.complexity import count_macs, count_params, macs_for_output
from srprune.errors import InputError
from srprune.models import build_model


def fsrcnn_weights(d: int, s: int, m: int, c: int) -> int:
    """FSRCNN's parameter count as the paper writes it (weights only): 25d + sd + 9ms^2 + ds + 81d, times c
    for the first and last layers on c colour channels."""
    return 25 * d * c + s * d + 9 * m * s * s + d * s + 81 * d * c


@pytest.mark.parametrize("d,s,m,published", [(56, 12, 4, 12464), (32, 5, 1, 3937)])
def test_fsrcnn_weights_match_published_counts(d, s, m, published):
    # Dong et al. 2016 report 12,464 parameters for FSRCNN(56,12,4) and 3,937 for FSRCNN-s(32,5,1)
    # on the Y channel; they count convolution weights only.
    assert fsrcnn_weights(d, s, m, 1) == published
    model = build_model("fsrcnn", 3, d=d, s=s, m=m, colors=1)
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() == 4)
    assert weights == published
    biases = d + s + m * s + d + 1
    prelu = d + s + m * s + d
    assert count_params(model) == published + biases + prelu


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_macs_match_paper_formula(scale):
    # The paper's complexity O{(25d + sd + 9ms^2 + ds + 81d) S_LR}: every layer, the deconvolution
    # included, costs its weight count per LR pixel. On RGB the first and last layers see c=3.
    h, w = 11, 13
    model = build_model("fsrcnn", scale)
    assert count_macs(model, (h, w)) == fsrcnn_weights(56, 12, 4, 3) * h * w
    assert count_params(model) == fsrcnn_weights(56, 12, 4, 3) + (56 + 12 + 48 + 56 + 3) + (56 + 12 + 48 + 56)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_per_layer_formula(scale):
    h, w = 10, 7
    layers = [(3, 64, 5), (64, 32, 3), (32, 3 * scale * scale, 3)]  # (Cin, Cout, k)
    model = build_model("espcn", scale)
    assert count_macs(model, (h, w)) == sum(h * w * ci * co * k * k for ci, co, k in layers)
    assert count_params(model) == sum(ci * co * k * k + co for ci, co, k in layers)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_ecbsr_counts_deployed_form(scale):
    blocks, width, h, w = 4, 16, 9, 8
    layers = [(3, width)] + [(width, width)] * blocks + [(width, 3 * scale * scale)]
    model = build_model("ecbsr", scale)
    macs = sum(h * w * ci * co * 9 for ci, co in layers)
    params = sum(ci * co * 9 + co for ci, co in layers) + width * (blocks + 1)  # + PReLU slopes
    assert count_macs(model, (h, w)) == macs
    assert count_params(model) == params
    # the training form is much bigger; asking for it explicitly counts it
    assert count_params(model, deployed=False) > 3 * params
    assert count_macs(model, (h, w), deployed=False) > macs


def test_other_layer_types():
    # grouped conv: H*W*Cout*(Cin/groups)*k*k; linear on the last axis: in*out per row; a strided
    # transposed conv: every input pixel scatters into Cout*k*k outputs.
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.Linear(6, 5),
                          nn.ConvTranspose2d(8, 2, 4, stride=2))
    h, w = 7, 6
    want = h * w * 8 * 2 * 9 + (8 * h) * 5 * 6 + (h * 5) * 2 * 16 * 8
    assert count_macs(model, (h, w), channels=4) == want
    assert count_params(model) == (8 * 2 * 9 + 8) + (6 * 5 + 5) + (8 * 2 * 16 + 2)


def test_bicubic_has_no_macs_or_params():
    model = build_model("bicubic", 4)
    assert count_macs(model, (16, 16)) == 0 and count_params(model) == 0


def test_counting_leaves_model_usable():
    model = build_model("espcn", 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (360, 640))
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model(torch.rand(1, 3, 4, 4)).shape == (1, 3, 8, 8)


def test_macs_for_720p_output():
    # x2 and x4 divide 1280x720 exactly; x3 floors the input to 426x240 (output 1278x720).
    per_pixel = fsrcnn_weights(56, 12, 4, 3)
    for scale, (ih, iw) in {2: (360, 640), 3: (240, 426), 4: (180, 320)}.items():
        assert macs_for_output(build_model("fsrcnn", scale), scale) == per_pixel * ih * iw
    assert macs_for_output(build_model("fsrcnn", 2), 2, out_hw=(64, 96)) == per_pixel * 32 * 48


def test_bad_arguments():
    model = build_model("espcn", 2)
    with pytest.raises(InputError, match="model is for x2, not x3"):
        macs_for_output(model, 3)
    with pytest.raises(InputError, match="input_hw must be two positive integers"):
        count_macs(model, (0, 5))
    with pytest.raises(InputError, match="out_hw must be two positive integers"):
        macs_for_output(model, 2, out_hw=(720,))
    with pytest.raises(InputError, match="scale must be a positive integer"):
        macs_for_output(model, 2.5)
