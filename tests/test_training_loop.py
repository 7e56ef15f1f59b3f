"""The one training loop (srcommon.training): what a plain Adam + cosine + L1 loop computes, bit for bit; exact
resume from its state; hooks in their documented order. Plus the other one-home pieces of issue 17 items 3
and 8: PSNR-Y (srcommon.metrics) and the supernet's TrainSettings."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srcommon.training import Hooks, LoopSettings, TrainLoop, distilled_l1, freeze, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2))


def _batches(n: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    return [(torch.rand(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 16, 16, generator=gen)) for _ in range(n)]


def _reference(model: nn.Module, batches, steps: int, lr: float, min_lr_ratio: float, seed: int) -> list[float]:
    """The loop as every user wrote it before there was one: Adam, cosine to lr * ratio, L1."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * min_lr_ratio)
    losses = []
    for lr_b, hr_b in batches[:steps]:
        loss = F.l1_loss(model(lr_b), hr_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def _equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_loop_is_bit_identical_to_plain_adam_cosine_l1():
    ref, ours = _model(), _model()
    losses = _reference(ref, _batches(), 6, 3e-3, 0.1, seed=4)
    loop = TrainLoop(ours, LoopSettings(steps=6, lr=3e-3, min_lr_ratio=0.1, seed=4, history_every_step=True))
    out = loop.run(_batches(), progress=False)
    assert _equal(ref, ours) and out["done"] and out["step"] == 6
    assert [h["loss"] for h in out["history"]] == losses and out["loss"] == losses[-1]
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3 * 0.1)


def test_resume_from_state_is_exact():
    settings = LoopSettings(steps=6, lr=3e-3, seed=1, checkpoint_every=2)
    full = _model()
    TrainLoop(full, settings).run(_batches(), progress=False)
    part = _model()
    loop = TrainLoop(part, settings)
    saved = {}

    def checkpoint() -> None:
        buf = io.BytesIO()
        torch.save(loop.state_dict(), buf)
        saved["state"], saved["batches_used"] = buf.getvalue(), loop.step

    out = loop.run(_batches(), Hooks(checkpoint=checkpoint), stop_after=3, progress=False)
    assert out["step"] == 3 and not out["done"] and saved["batches_used"] == 2  # killed after step 3
    rest = _model(seed=9)  # another init: everything must come from the state
    again = TrainLoop(rest, settings)
    again.load_state_dict(torch.load(io.BytesIO(saved["state"]), weights_only=True))
    again.run(_batches()[saved["batches_used"]:], progress=False)
    assert again.step == 6 and _equal(full, rest)


def test_hooks_run_in_order_and_constant_rate_leaves_rng_alone():
    calls = []
    model = _model()
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    hooks = Hooks(before_step=lambda i: calls.append(("before", i)),
                  after_backward=lambda: calls.append(("grads", all(p.grad is not None for p in model.parameters()))),
                  after_step=lambda s: calls.append(("after", s)) or {"extra": s},
                  validate=lambda rec: calls.append(("val", rec["step"])) or {"val": 1.0},
                  checkpoint=lambda: calls.append(("ckpt",)))
    loop = TrainLoop(model, LoopSettings(steps=2, lr=1e-3, cosine=False, seed=None, val_every=1))
    assert torch.equal(torch.get_rng_state(), rng)  # seed=None: the caller's RNG is untouched
    out = loop.run(_batches(2), hooks, progress=False)
    assert calls == [("before", 0), ("grads", True), ("after", 1), ("val", 1), ("before", 1), ("grads", True),
                     ("after", 2), ("val", 2), ("ckpt",)]
    assert loop.scheduler is None and loop.optimizer.param_groups[0]["lr"] == 1e-3
    assert [set(h) for h in out["history"]] == [{"step", "loss", "extra", "val"}] * 2
    assert model.training  # put back in train mode after validation


def test_psnr_y_has_one_home():
    """srprune's metric (numpy images) and supernet's proxy metric (tensors) are the same function's numbers."""
    from srcommon.metrics import psnr_y, to_uint8_image
    from srprune.metrics import psnr
    from srprune.search.supernet_stage import protocol_psnr
    from supernet.proxy import psnr_y as proxy_metric

    gen = torch.Generator().manual_seed(0)
    sr, hr = torch.rand(3, 20, 24, generator=gen), torch.rand(3, 20, 24, generator=gen)
    expected = psnr(to_uint8_image(sr), to_uint8_image(hr), crop_border=2)
    assert psnr_y(sr, hr, 2) == protocol_psnr(sr, hr, 2) == proxy_metric(sr[None], hr[None], 2) == expected
    assert psnr_y(hr, hr, 2) == math.inf
    with pytest.raises(ValueError):
        psnr_y(sr, hr[:, :10], 2)


def test_train_settings_are_the_one_shape():
    """TrainSettings validates itself; the config reader's rules and defaults are derived from it; the defaults
    are what the shipped demo configs use."""
    import yaml

    from srprune.search.supernet_stage import TRAIN_KEYS, TRAIN_RULES
    from supernet.errors import SpaceError
    from supernet.settings import RULES, TrainSettings
    from tests.conftest import ROOT

    assert set(TRAIN_KEYS) == set(TRAIN_RULES) == set(RULES)
    assert TRAIN_KEYS["lr"] == 2e-3 and TRAIN_KEYS["checkpoint_every"] == 100
    for name in ("demo.yaml", "supernet-demo.yaml"):
        train = yaml.safe_load((ROOT / "configs" / name).read_text())["supernet"]["train"]
        assert train["lr"] == TRAIN_KEYS["lr"] and train["checkpoint_every"] == TRAIN_KEYS["checkpoint_every"]
        assert TrainSettings.from_dict(train).to_dict() == {**TRAIN_KEYS, **train, "scale": None}
    for bad in ({"lr": float("nan")}, {"steps": True}, {"kd_weight": 1.5}, {"sampling": "round-robin"},
                {"seed": -1}, {"checkpoint_every": 0}):
        with pytest.raises(SpaceError, match=next(iter(bad))):
            TrainSettings(**bad)
    with pytest.raises(SpaceError, match="unknown training setting 'epochs'"):
        TrainSettings.from_dict({"epochs": 3})


def test_distilled_l1_is_l1_plus_weighted_l1_to_the_frozen_teacher():
    torch.manual_seed(0)
    lr, hr = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 12, 12)
    student, teacher = nn.Upsample(scale_factor=2), freeze(nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 3, 1)))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    out = student(lr).requires_grad_(True)
    expected = (out - hr).abs().mean() + 0.3 * (out - teacher(lr)).abs().mean()  # the formula, by hand
    value = distilled_l1(out, hr, lr, teacher, 0.3)
    assert torch.allclose(value, expected)
    value.backward()
    assert all(p.grad is None for p in teacher.parameters())  # the teacher is not trained
    plain = (out - hr).abs().mean()
    assert torch.equal(distilled_l1(out, hr, lr, teacher, 0.0), plain)
    assert torch.equal(distilled_l1(out, hr, lr, None, 0.3), plain)
    assert freeze(None) is None


class _Foreign:
    """A pickled object of this class is what weights_only refuses."""


def test_read_checkpoint_refuses_unreadable_and_foreign_files_in_one_error(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"format": "fmt-a", "step": 3}, good)
    assert read_checkpoint(good, "fmt-a", "test checkpoint", ValueError)["step"] == 3
    with pytest.raises(ValueError, match=r"good.pt: not a test checkpoint$"):
        read_checkpoint(good, "fmt-b", "test checkpoint", ValueError)  # another format
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "fmt-a", "obj": _Foreign()}, pickled)
    for bad in (text, pickled, tmp_path / "missing.pt"):
        with pytest.raises(KeyError, match=rf"{bad.name}: not a readable test checkpoint \(\w+\)"):
            read_checkpoint(bad, "fmt-a", "test checkpoint", KeyError)
