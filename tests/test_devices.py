"""Training devices, mixed precision and batch workers (srcommon/devices.py), on the CPU.

What a GPU would add (CUDA placement, fp16 loss scaling) cannot run here; what is checked: the choice of
device and its one-line refusals on every training command, bf16 autocast on the CPU against a hand-written
step, and batches assembled in worker processes being exactly the sampler's (so results and resume do not
depend on the number of workers).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from srcommon.devices import BatchPrefetcher, DeviceError, Placement, check_amp, resolve_device
from srcommon.training import LoopSettings, TrainLoop
from tests.conftest import assert_one_line_error


def test_device_words():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    for bad, fragment in [("gpu", "expected one of auto, cpu, cuda, cuda:N, mps"), ("cuda:x", "expected one of"),
                          ("cuda:99", "not available")]:
        with pytest.raises(DeviceError, match=fragment):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="sees no CUDA GPU"):
            resolve_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(DeviceError, match="mps is not available"):
            resolve_device("mps")


def test_amp_rules():
    cpu = torch.device("cpu")
    assert check_amp(cpu, "off") is None and check_amp(cpu, "bf16") == torch.bfloat16
    with pytest.raises(DeviceError, match="fp16 needs a GPU"):
        check_amp(cpu, "fp16")
    assert check_amp(torch.device("cuda", 0), "fp16") == torch.float16  # no GPU needed to decide


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1))


def test_bf16_autocast_on_cpu_is_one_hand_written_autocast_adam_step():
    torch.manual_seed(1)
    batch = (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    net = _net()
    TrainLoop(net, LoopSettings(steps=1, lr=1e-2, cosine=False, seed=None, device="cpu", amp="bf16")).run(
        [batch], progress=False)
    ref = _net()
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.l1_loss(ref(batch[0]), batch[1])
    loss.backward()
    opt.step()
    for a, b in zip(net.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    plain = _net()  # in float32 the step differs: autocast was really on
    TrainLoop(plain, LoopSettings(steps=1, lr=1e-2, cosine=False, seed=None, device="cpu")).run([batch], progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(net.parameters(), plain.parameters()))


def _sampler(seed: int = 5):
    from srprune.data import PatchSampler, load_dataset

    return PatchSampler(load_dataset("builtin", 2, split="train"), 2, 12, 3, seed=seed)


def test_worker_batches_and_their_state_are_the_samplers():
    plain, fetched = _sampler(), BatchPrefetcher(_sampler(), workers=2)
    for _ in range(5):
        (a_lr, a_hr), (b_lr, b_hr) = next(plain), next(fetched)
        assert torch.equal(a_lr, b_lr) and torch.equal(a_hr, b_hr)
    assert fetched.sampler.batches > 5  # the workers drew ahead ...
    state = fetched.state_dict()
    assert state["batches"] == 5 and state == plain.state_dict()  # ... but the state is that of the 5 handed out
    resumed = BatchPrefetcher(_sampler(), workers=2)
    resumed.load_state_dict(state)
    nxt = next(plain)
    assert all(torch.equal(x, y) for x, y in zip(next(resumed), nxt))
    fetched.close()
    resumed.close()


def test_training_with_workers_gives_the_same_model(tmp_path):
    from srprune.models.modelfile import load_model
    from srprune.train import TrainConfig, train_model_file

    cfg = dict(steps=4, batch_size=2, patch_size=12, lr=1e-3, seed=3, val_every=4, checkpoint_every=2, threads=1)
    a = train_model_file("espcn", 2, "builtin", "builtin", tmp_path / "a", TrainConfig(**cfg), progress=False)
    b = train_model_file("espcn", 2, "builtin", "builtin", tmp_path / "b", TrainConfig(**cfg), progress=False,
                         where=Placement("cpu", "off", 2))
    wa, wb = load_model(a)[0].state_dict(), load_model(b)[0].state_dict()
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("args, fragment", [
    (["--device", "cuda:99"], "device cuda:99 is not available"),
    (["--device", "tpu"], "expected one of auto, cpu, cuda, cuda:N, mps"),
    (["--device", "cpu", "--amp", "fp16"], "fp16 needs a GPU"),
])
def test_every_training_command_refuses_an_absent_device_in_one_line(run_cli, tmp_path, args, fragment):
    cfg = tmp_path / "sn.yaml"
    cfg.write_text("supernet:\n  space: {num_cells: 2, widths: [4], scales: [2]}\n  train: {steps: 1}\n")
    commands = [["train", "espcn", "--scale", "2", "-o", tmp_path / "t"],
                ["prune", "espcn", "--scale", "2", "--spec", '{"scheme": "channel", "ratio": 0.5}',
                 "-o", tmp_path / "p.pt"],
                ["supernet", "train", "-c", cfg, "-o", tmp_path / "sn"]]
    for command in commands:
        r = run_cli(*command, *args)
        assert_one_line_error(r, fragment, alone=True)
        assert not (tmp_path / "t" / "model.pt").exists() and not (tmp_path / "p.pt").exists()


@pytest.mark.parametrize("changes, fragment", [
    ("device: cuda:99", "config: device cuda:99 is not available"),
    ("amp: fp16\ndevice: cpu", "fp16 needs a GPU"),
    ("amp: fp8", "amp must be one of off, bf16, fp16"),
    ("data_workers: -1", "data_workers must be an integer"),
])
def test_run_config_device_is_checked_before_any_work(run_cli, tmp_path, changes, fragment):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\nbudget_ms: 40\n{changes}\n")
    r = run_cli("run", "-c", cfg)
    assert_one_line_error(r, fragment.replace("config:", ""), alone=True)
    assert not (tmp_path / "run").exists()


def test_unquoted_amp_off_in_yaml_means_off(tmp_path):
    from srprune.search.config import RunConfig, load

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\nbudget_ms: 40\namp: off\ndevice: cpu\ndata_workers: 2\n")
    run = RunConfig.from_dict(load(cfg))
    assert run.placement.amp == "off" and run.placement.device == "cpu" and run.placement.workers == 2
