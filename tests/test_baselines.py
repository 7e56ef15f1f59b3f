"""The demo job: writes its tables, the bicubic row follows the protocol, a re-run skips finished work."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import data

from srprune.baselines import run_demo
from srprune.imresize import imresize, mod_crop, to_uint8
from srprune.metrics import psnr


def test_demo_writes_tables_and_skips_finished_steps(tmp_path):
    doc = run_demo(tmp_path, steps=2, models=("espcn",))
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"bicubic", "espcn"}
    assert "| espcn |" in (tmp_path / "eval" / "metrics.md").read_text()
    # The bicubic row is the protocol computed independently on the two validation images.
    expected = []
    for name in ("astronaut", "chelsea"):
        hr = mod_crop(getattr(data, name)(), 2)
        expected.append(psnr(to_uint8(imresize(to_uint8(imresize(hr, 0.5)), 2)), hr, 2))
    assert doc["models"]["bicubic"]["psnr"] == pytest.approx(np.mean(expected), abs=1e-3)  # float32 model vs float64 numpy
    model_file = tmp_path / "train" / "espcn" / "model.pt"
    stamp = model_file.stat().st_mtime_ns
    again = run_demo(tmp_path, steps=2, models=("espcn",))
    assert model_file.stat().st_mtime_ns == stamp  # not retrained
    assert again["models"]["espcn"]["psnr"] == pytest.approx(doc["models"]["espcn"]["psnr"])
