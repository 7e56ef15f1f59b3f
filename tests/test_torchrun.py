"""The README's torchrun command: `torchrun --nproc_per_node 2 srprune supernet train` (gloo on the CPU).

Two processes train a tiny supernet for a few steps; a second pair, stopped after its first checkpoint and
resumed with `--resume`, must end with the same checkpoint (weights, optimizer, step) as the uninterrupted pair.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

CONFIG = """
supernet:
  space: {num_cells: 2, widths: [4, 8], blocks: [conv, res, skip], scales: [2]}
  train: {steps: 4, batch_size: 2, patch_size: 12, val_every: 4, checkpoint_every: 2}
"""


def _torchrun(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    launcher = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    cmd = [launcher] if launcher else [sys.executable, "-m", "torch.distributed.run"]
    script = tmp_path / "srprune_entry.py"  # what .venv/bin/srprune is, with this checkout on the path
    script.write_text("from srprune.cli import main\nmain()\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([*cmd, "--standalone", "--nproc_per_node", "2", str(script), *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


@pytest.mark.slow
def test_torchrun_two_processes_train_and_resume(tmp_path):
    cfg = tmp_path / "sn.yaml"
    cfg.write_text(CONFIG)
    base = ["supernet", "train", "-c", str(cfg), "--threads", "1", "--device", "cpu"]
    straight = _torchrun(tmp_path, *base, "-o", str(tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    stopped = _torchrun(tmp_path, *base, "-o", str(tmp_path / "b"), "--stop-after", "3")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    ckpt_b = tmp_path / "b" / "supernet" / "checkpoint.pt"
    assert torch.load(ckpt_b, weights_only=False)["step"] == 2  # the last checkpoint before the stop
    resumed = _torchrun(tmp_path, *base, "-o", str(tmp_path / "b"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(tmp_path / "a" / "supernet" / "checkpoint.pt", weights_only=False)
    b = torch.load(ckpt_b, weights_only=False)
    assert a["world_size"] == b["world_size"] == 2 and a["step"] == b["step"] == 4
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    exp_a = a["optimizer"]["state"][0]["exp_avg_sq"]
    assert torch.equal(exp_a, b["optimizer"]["state"][0]["exp_avg_sq"])
    assert (tmp_path / "a" / "supernet" / "summary.json").exists()
