"""Supernet training: sandwich steps learn, exact resume after a kill, 2-process data parallel, proxy PSNR."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from supernet.errors import SpaceError
from supernet.model import SuperNet
from supernet.proxy import proxy_psnr, psnr_y
from supernet.space import SearchSpace
from supernet.train import TrainSettings, load_checkpoint, supernet_from_checkpoint, train_supernet

ROOT = Path(__file__).resolve().parents[1]
SPACE = SearchSpace(num_cells=2, widths=(4, 8), scales=(2,), activation="prelu", min_depth=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smooth_images(gen: torch.Generator, n: int, size: int) -> torch.Tensor:
    """Random smooth colour images in [0, 1]: upsampled noise, so there is something to learn."""
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


class Batches:
    """A seeded, resumable (lr, hr) iterator (the interface srprune's PatchSampler has)."""

    def __init__(self, seed: int, n: int = 2, size: int = 16) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.n, self.size = n, size

    def __iter__(self):
        return self

    def __next__(self):
        hr = smooth_images(self.gen, self.n, self.size)
        return F.avg_pool2d(hr, 2), hr

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


def _net(seed: int = 0) -> SuperNet:
    torch.manual_seed(seed)
    return SuperNet(SPACE)


def test_sandwich_steps_decrease_loss():
    net = _net()
    out = train_supernet(net, Batches(0, n=4), TrainSettings(steps=40, lr=3e-3), progress=False)
    hist = out["history"]
    first = np.mean([h["loss_largest"] for h in hist[:3]])
    last = np.mean([h["loss_largest"] for h in hist[-5:]])
    first_s = np.mean([h["loss_smallest"] for h in hist[:3]])
    last_s = np.mean([h["loss_smallest"] for h in hist[-5:]])
    assert last < 0.7 * first, (first, last)
    assert last_s < 0.7 * first_s, (first_s, last_s)


@pytest.mark.parametrize("sort_every,sampling", [(0, "fixed"), (2, "fixed"), (0, "fair")])
def test_resume_after_kill_is_exact(tmp_path, sort_every, sampling):
    ckpt_a, ckpt_b = tmp_path / "a.pt", tmp_path / "b.pt"
    net_a = _net()
    settings = TrainSettings(steps=6, checkpoint_every=2, sort_every=sort_every, sampling=sampling)
    full = train_supernet(net_a, Batches(3), settings, checkpoint=ckpt_a, progress=False)
    assert [("sorted_trunk_moved" in h) for h in full["history"]] == [False, bool(sort_every)] * 2 + [False] * 2
    # killed after step 3: the last checkpoint is step 2, so step 3 is redone after the restart
    net_b = _net()
    part = train_supernet(net_b, Batches(3), settings, checkpoint=ckpt_b, stop_after=3, progress=False)
    assert part["step"] == 3 and not part["done"]
    assert load_checkpoint(ckpt_b)["step"] == 2
    with pytest.raises(SpaceError, match="exists"):
        train_supernet(_net(), Batches(3), settings, checkpoint=ckpt_b, progress=False)
    net_c = _net(seed=123)  # different init: everything must come from the checkpoint
    rest = train_supernet(net_c, Batches(99), settings, checkpoint=ckpt_b, resume=True, progress=False)
    assert rest["done"]
    for (k, a), (_, c) in zip(net_a.state_dict().items(), net_c.state_dict().items()):
        assert torch.equal(a, c), k
    assert [h["loss_largest"] for h in full["history"]] == [h["loss_largest"] for h in rest["history"]]
    restored = supernet_from_checkpoint(ckpt_b)
    for (k, a), (_, c) in zip(net_a.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, c), k


def test_fair_sampling_trains_every_block_type_equally():
    """"fair": over whole rounds every cell deals each block type equally often to the random sub-networks, and
    the sandwich's largest and smallest take every real block in turn; "fixed" gives the largest one block."""
    from supernet.train import _sandwich

    space = SearchSpace(num_cells=3, widths=(4, 8), scales=(2,))  # 6 block types, skip included
    kinds = len(space.blocks)
    settings = TrainSettings(steps=30, scale=2, num_random=2, sampling="fair")
    steps = kinds * 5  # 60 deals per cell = 10 full rounds of the deck
    deals = [_sandwich(space, settings, t) for t in range(steps)]
    for cell in range(space.num_cells):
        counts = {b: 0 for b in space.blocks}
        for _, _, dealt in deals:
            for blocks in dealt:
                counts[blocks[cell]] += 1
        assert set(counts.values()) == {steps * settings.num_random // kinds}, counts
    real = space.real_blocks
    teachers = [largest.cells[0].block for largest, _, _ in deals[:len(real)]]
    smallest = [small.cells[0].block for _, small, _ in deals[:len(real)]]
    assert sorted(teachers) == sorted(smallest) == sorted(real)
    assert all(c.width == space.max_width for largest, _, _ in deals for c in largest.cells)
    fixed = TrainSettings(steps=30, scale=2, num_random=2)
    assert {_sandwich(space, fixed, t)[0].cells[0].block for t in range(steps)} == {space.largest(2).cells[0].block}
    with pytest.raises(SpaceError, match="sampling"):
        TrainSettings(steps=1, scale=2, sampling="round-robin")


def test_resume_refuses_other_settings(tmp_path):
    ckpt = tmp_path / "c.pt"
    train_supernet(_net(), Batches(0), TrainSettings(steps=2), checkpoint=ckpt, progress=False)
    with pytest.raises(SpaceError, match="lr"):
        train_supernet(_net(), Batches(0), TrainSettings(steps=2, lr=0.1), checkpoint=ckpt, resume=True,
                       progress=False)
    with pytest.raises(SpaceError, match="sort_every"):
        train_supernet(_net(), Batches(0), TrainSettings(steps=2, sort_every=1), checkpoint=ckpt, resume=True,
                       progress=False)
    with pytest.raises(SpaceError, match="scale 3"):
        train_supernet(_net(), Batches(0), TrainSettings(steps=2, scale=3), progress=False)
    # val_every and checkpoint_every change no weight: a resume may change them
    out = train_supernet(_net(), Batches(0), TrainSettings(steps=2, val_every=1, checkpoint_every=7),
                         checkpoint=ckpt, resume=True, progress=False)
    assert out["done"] and out["step"] == 2


def test_validation_is_logged_for_largest_and_smallest():
    calls = []

    def validate(net, genome):
        calls.append(genome.to_json())
        return 30.0 + len(calls)

    out = train_supernet(_net(), Batches(0), TrainSettings(steps=4, val_every=2), validate=validate, progress=False)
    assert [("val_largest" in h, "val_smallest" in h) for h in out["history"]] == [(False, False), (True, True)] * 2
    assert calls[0] == SPACE.largest(2).to_json() and calls[1] == SPACE.smallest(2).to_json()


WORKER = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from supernet.model import SuperNet
from supernet.space import SearchSpace
from supernet.train import TrainSettings, init_distributed, train_supernet
sys.path.insert(0, {tests!r})
from test_supernet_train import Batches, SPACE
rank, world = init_distributed()
torch.manual_seed(0)
net = SuperNet(SPACE)
train_supernet(net, Batches(10 + rank), TrainSettings(steps=3, checkpoint_every=2), checkpoint={ckpt!r},
               progress=False)
torch.save(net.state_dict(), {out!r} + f"/rank{{rank}}.pt")
"""


def test_two_process_data_parallel_matches_one_process_on_the_joint_batch(tmp_path):
    ckpt = tmp_path / "ddp.pt"
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT), tests=str(ROOT / "tests"), ckpt=str(ckpt), out=str(tmp_path)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    state = load_checkpoint(ckpt)
    assert state["world_size"] == 2 and len(state["data"]) == 2 and state["step"] == 3

    class Joint:
        """The two ranks' batches side by side: what averaging the ranks' gradients must equal."""

        def __init__(self):
            self.a, self.b = Batches(10), Batches(11)

        def __iter__(self):
            return self

        def __next__(self):
            (la, ha), (lb, hb) = next(self.a), next(self.b)
            return torch.cat([la, lb]), torch.cat([ha, hb])

    ref = _net()
    train_supernet(ref, Joint(), TrainSettings(steps=3), progress=False)
    for k, v in ref.state_dict().items():
        assert torch.allclose(r0[k], v, atol=1e-5, rtol=0), (k, (r0[k] - v).abs().max())
    assert any(not torch.equal(v, _net().state_dict()[k]) for k, v in r0.items())  # it did train


def test_proxy_psnr_matches_skimage():
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio

    net = _net()
    gen = torch.Generator().manual_seed(4)
    pairs = []
    for _ in range(2):
        hr = smooth_images(gen, 1, 24)[0]
        pairs.append((F.avg_pool2d(hr[None], 2)[0], hr))
    g = SPACE.sample(np.random.default_rng(0))
    ours = proxy_psnr(net, g, pairs)
    ref = []
    with torch.no_grad():
        for lr, hr in pairs:
            sr = net(lr[None], g)[0]
            to8 = lambda t: (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()  # noqa: E731
            ys, yh = rgb2ycbcr(to8(sr))[..., 0], rgb2ycbcr(to8(hr))[..., 0]
            ref.append(peak_signal_noise_ratio(yh[2:-2, 2:-2], ys[2:-2, 2:-2], data_range=255))
    assert math.isclose(ours, float(np.mean(ref)), abs_tol=1e-6)
    assert psnr_y(pairs[0][1], pairs[0][1], 2) == math.inf
    assert net.training  # proxy restores the mode
