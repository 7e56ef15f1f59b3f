"""Tiled inference equals untiled inference for every reference model."""

from __future__ import annotations

import pytest
import torch

from srprune.models import build_model, deploy, list_models
from srprune.upscale import receptive_radius, upscale_tensor


@pytest.mark.parametrize("name", ["bicubic", "fsrcnn", "espcn", "ecbsr"])
@pytest.mark.parametrize("scale", [2, 3])
def test_tiled_equals_untiled(name, scale):
    assert name in list_models()
    torch.manual_seed(0)
    model = deploy(build_model(name, scale)).eval()
    x = torch.rand(1, 3, 37, 50)
    with torch.no_grad():
        whole = model(x)
    tiled = upscale_tensor(model, x, scale, tile=16)
    assert tiled.shape == whole.shape == (1, 3, 37 * scale, 50 * scale)
    assert (tiled - whole).abs().max().item() <= 1e-4


def test_too_small_overlap_would_differ():
    """The radius matters: a model whose reach exceeds a forced small overlap gives a different result."""
    torch.manual_seed(0)
    model = deploy(build_model("fsrcnn", 2)).eval()
    radius = receptive_radius(model, 2)
    assert radius >= 4
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        whole = model(x)
    # Monkey-free check: tiles with no context at all (overlap 0 and radius forced to 0) differ.
    from srprune import upscale as up

    tiles = []
    for y0 in range(0, 40, 16):
        row = [model(x[:, :, y0:y0 + 16, x0:x0 + 16]) for x0 in range(0, 40, 16)]
        tiles.append(torch.cat(row, dim=3))
    naive = torch.cat(tiles, dim=2)
    assert (naive - whole).abs().max().item() > 1e-3
    assert (up.upscale_tensor(model, x, 2, tile=16) - whole).abs().max().item() <= 1e-4
