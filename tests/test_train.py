"""Training: exact resume after an interruption (in-process and after a real SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from srprune.models.modelfile import load_model
from srprune.train import CHECKPOINT, TrainConfig, train_model_file
from tests.conftest import ROOT, assert_one_line_error, srprune_subprocess

SMALL = dict(steps=6, batch_size=2, patch_size=12, lr=1e-3, seed=3, val_every=3, checkpoint_every=2, threads=1)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    model, _ = load_model(path)
    return model.state_dict()


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_interrupted_run_resumes_exactly(tmp_path):
    straight = train_model_file("espcn", 2, "builtin", "builtin", tmp_path / "a", TrainConfig(**SMALL), progress=False)
    # Interrupt after 3 steps (last checkpoint at step 2), then resume.
    stopped = train_model_file("espcn", 2, "builtin", "builtin", tmp_path / "b", TrainConfig(**SMALL), progress=False,
                               stop_after=3)
    assert stopped is None and not (tmp_path / "b" / "model.pt").exists()
    state = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    assert state["step"] == 2
    resumed = train_model_file("espcn", 2, "builtin", "builtin", tmp_path / "b", TrainConfig(**SMALL), resume=True,
                               progress=False)
    _assert_same(_weights(straight), _weights(resumed))
    # A different run's weights do differ (the comparison can fail).
    other = train_model_file("espcn", 2, "builtin", "builtin", tmp_path / "c", TrainConfig(**{**SMALL, "seed": 4}),
                             progress=False)
    assert any(not torch.equal(x, y) for x, y in zip(_weights(straight).values(), _weights(other).values()))


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    args = ["train", "fsrcnn", "--scale", "2", "--steps", "30", "--batch-size", "2", "--patch-size", "12",
            "--checkpoint-every", "1", "--val-every", "15", "--threads", "1", "--seed", "1"]
    ref = srprune_subprocess(*args, "-o", tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", "from srprune.cli import main; main()", *args, "-o", str(run)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / CHECKPOINT).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "model.pt").exists(), "the run finished before it could be killed"
    # Without --resume the existing checkpoint is not silently overwritten.
    refused = srprune_subprocess(*args, "-o", run)
    assert_one_line_error(refused, "--resume")
    resumed = srprune_subprocess(*args, "-o", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same(_weights(tmp_path / "ref" / "model.pt"), _weights(run / "model.pt"))
