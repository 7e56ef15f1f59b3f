"""benchmarks/peers.py's graph rewrites for converters are exact (PyTorch is the reference)."""

import pytest
import torch
from torch import nn

from benchmarks.peers import CroppedDeconv, peer_rewrites
from srprune.models import build_model, deploy


@pytest.mark.parametrize("k,stride,pad,out_pad", [(9, 2, 4, 1), (9, 3, 4, 2), (3, 1, 1, 0), (5, 2, 2, 1)])
def test_cropped_deconv_equals_padded_deconv(k: int, stride: int, pad: int, out_pad: int) -> None:
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(4, 3, k, stride=stride, padding=pad, output_padding=out_pad)
    x = torch.rand(1, 4, 7, 9)
    want = deconv(x)
    got = CroppedDeconv(deconv)(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,rewrite", [("fsrcnn", "padded deconv"), ("ecbsr", "repeat_interleave")])
def test_rewritten_networks_match(name: str, rewrite: str) -> None:
    torch.manual_seed(0)
    model = deploy(build_model(name, 2)).eval()
    x = torch.rand(1, 3, 12, 16)
    rewritten, done = peer_rewrites(model)
    assert any(d.startswith(rewrite) for d in done)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), model(x), rtol=0, atol=1e-5)
