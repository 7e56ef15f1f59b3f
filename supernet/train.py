"""Training of the shared weights: sandwich rule with in-place distillation, exact resume, multi-process.

Each step runs, on one batch, the largest sub-network (L1 to the ground truth), then the smallest
and `num_random` random ones, each trained towards (1 - kd_weight) * L1(ground truth) +
kd_weight * L1(largest's output, detached): BigNAS's sandwich rule and in-place distillation.
Their gradients add up; one optimizer step follows.

Multi-process (torchrun; gloo on CPU, nccl on GPU): every rank draws the same sub-networks (same
seeded generator) on its own batches, and the summed gradients are averaged over ranks with one
all-reduce per step, which is what DistributedDataParallel does. The DDP wrapper itself is not
used because several sub-networks with different unused parameters run per step. Rank 0 writes
the checkpoint, which holds every rank's data-iterator state, so the format is the same for one
process or many.

The checkpoint (model, optimizer, schedule, generator states, data states, step, history) is
written atomically (temp file + os.replace) and a resumed run is bit-identical on CPU to an
uninterrupted one, provided the batch iterator has state_dict()/load_state_dict().
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from srcommon.atomic import save_torch
from supernet.errors import CheckpointError, SpaceError
from supernet.model import SuperNet
from supernet.sorting import TRUNK, sort_channels
from supernet.space import Genome, SearchSpace

CHECKPOINT_FORMAT = "supernet-train-state"
log = logging.getLogger("supernet.train")

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]
Validate = Callable[[SuperNet, Genome], float]


@dataclass
class TrainSettings:
    """Everything besides data that determines a training run (recorded and checked on resume)."""

    steps: int
    scale: int
    lr: float = 1e-3
    min_lr_ratio: float = 0.01  # cosine schedule ends at lr * min_lr_ratio
    num_random: int = 2
    kd_weight: float = 0.5
    seed: int = 0
    sort_every: int = 0  # sort channels by importance every this many steps (0: never)
    # "fixed": the sandwich's largest and smallest are the costliest / cheapest block everywhere, every step, and
    # the random sub-networks draw blocks independently. "fair": the largest and smallest take each block type in
    # turn (step by step) and the random sub-networks deal each cell's blocks from a shuffled deck, so every
    # block type gets the same number of updates (with "fixed", the largest's block gets about 4x the others').
    sampling: str = "fixed"

    def __post_init__(self) -> None:
        for key in ("steps", "scale", "num_random", "seed", "sort_every"):
            v, low = getattr(self, key), (1 if key in ("steps", "scale") else 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise SpaceError(f"training setting {key} must be an integer >= {low}, got {v!r}")
        if not 0.0 <= float(self.kd_weight) <= 1.0:
            raise SpaceError(f"training setting kd_weight must be in [0, 1], got {self.kd_weight!r}")
        if self.sampling not in ("fixed", "fair"):
            raise SpaceError(f"training setting sampling must be 'fixed' or 'fair', got {self.sampling!r}")
        if not float(self.lr) > 0:
            raise SpaceError(f"training setting lr must be > 0, got {self.lr!r}")


def init_distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group from torchrun's environment when WORLD_SIZE > 1.

    On GPU machines each process takes the GPU of its LOCAL_RANK (nccl); on CPU, gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce the gradients that exist (the same set on every rank) in one flat buffer."""
    with_grad = [p for p in params if p.grad is not None]
    if world == 1 or not with_grad:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in with_grad])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in with_grad:
        n = p.grad.numel()
        p.grad.copy_(flat[offset: offset + n].view_as(p.grad))
        offset += n


# Fields every checkpoint holds, with their types (what `save` below writes).
CHECKPOINT_FIELDS = {"space": dict, "step": int, "model": dict, "settings": dict, "world_size": int,
                     "optimizer": dict, "scheduler": dict, "history": str}


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and validate a supernet training checkpoint (weights_only: plain data and tensors).

    Every way a file can be wrong (unreadable, foreign, missing or mistyped fields, a space that
    does not parse) is one CheckpointError naming the file, as for srprune's model files.
    """
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them: one line only
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"{path}: not a readable supernet checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a supernet training checkpoint")
    for key, kind in CHECKPOINT_FIELDS.items():
        if isinstance(state.get(key), bool) or not isinstance(state.get(key), kind):
            got = "missing" if key not in state else f"a {type(state[key]).__name__}"
            raise CheckpointError(f"{path}: damaged supernet checkpoint: {key!r} must be of type {kind.__name__}, "
                                  f"is {got}")
    if state["step"] < 0:
        raise CheckpointError(f"{path}: damaged supernet checkpoint: step {state['step']} is negative")
    try:
        SearchSpace.from_dict(state["space"])
    except SpaceError as e:
        raise CheckpointError(f"{path}: damaged supernet checkpoint: its space is invalid ({e})") from None
    return state


def check_weights(path: str | os.PathLike, net: torch.nn.Module, weights: dict) -> None:
    """Refuse weights that do not fit `net`: missing, unexpected or wrongly shaped tensors, in one line."""
    expected = net.state_dict()
    bad = [k for k in expected if not isinstance(weights.get(k), torch.Tensor) or weights[k].shape != expected[k].shape]
    extra = [k for k in weights if k not in expected]
    if bad or extra:
        first = bad[0] if bad else extra[0]
        detail = (f"{first} {tuple(weights[first].shape)} vs {tuple(expected[first].shape)}"
                  if first in expected and isinstance(weights.get(first), torch.Tensor) else first)
        raise CheckpointError(f"{path}: supernet weights do not match its space ({len(bad)} missing or "
                              f"mis-shaped, {len(extra)} unexpected; e.g. {detail})")


def _check_optimizer(path: str | os.PathLike, optimizer: torch.optim.Optimizer) -> None:
    """Adam's moments must have their parameter's shape (a mismatch would only fail at the next step)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise CheckpointError(f"{path}: damaged supernet checkpoint: optimizer {name} has shape "
                                          f"{tuple(value.shape)} for a parameter of shape {tuple(p.shape)}")


def supernet_from_checkpoint(path: str | os.PathLike) -> SuperNet:
    """Rebuild the trained supernet (space + weights) from a checkpoint."""
    state = load_checkpoint(path)
    net = SuperNet(SearchSpace.from_dict(state["space"]))
    check_weights(path, net, state["model"])
    net.load_state_dict(state["model"])
    return net


def train_supernet(supernet: SuperNet, batches: Batches, steps: int, *, scale: int | None = None,
                   lr: float = 1e-3, min_lr_ratio: float = 0.01, num_random: int = 2, kd_weight: float = 0.5,
                   seed: int = 0, checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 50,
                   resume: bool = False, validate: Validate | None = None, val_every: int = 0,
                   stop_after: int | None = None, progress: bool = True, sort_every: int = 0,
                   sampling: str = "fixed") -> dict:
    """Train `supernet` in place on (lr, hr) batches; return {"step", "done", "seconds", "history"}.

    `validate(supernet, genome) -> PSNR` is called for the largest and smallest sub-networks every
    `val_every` steps (0: only at the end) on rank 0. `stop_after` ends this call after that many
    steps without a final checkpoint (a simulated kill). With `resume`, an existing `checkpoint` is continued exactly.
    `sort_every` > 0 sorts every channel group by importance (supernet.sorting) after every that many steps
    (weights and Adam moments together; the largest network's function is unchanged), not after the last.
    `sampling`: which sub-networks each step trains ("fixed" or "fair", see TrainSettings).
    """
    space = supernet.space
    settings = TrainSettings(steps, scale if scale is not None else space.scales[0], lr, min_lr_ratio,
                             num_random, kd_weight, seed, sort_every, sampling)
    if settings.scale not in space.scales:
        raise SpaceError(f"scale {settings.scale} is not a scale the supernet was built for "
                         f"({', '.join(map(str, space.scales))})")
    rank, world = init_distributed()
    params = list(supernet.parameters())
    if world > 1:
        for p in params:  # identical start on every rank
            dist.broadcast(p.data, src=0)
    optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr * min_lr_ratio)
    arch_rng = np.random.Generator(np.random.PCG64(seed))
    torch.manual_seed(seed)
    step, history = 0, []
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        if not resume:
            raise SpaceError(f"{path} exists: resume it or remove it to start over")
        state = load_checkpoint(path)
        _check_resumable(state, space, settings, world, path)
        check_weights(path, supernet, state["model"])
        try:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            arch_rng.bit_generator.state = state["arch_rng"]
            torch.set_rng_state(state["torch_rng"])
            data_state = state["data"][rank]
            history = json.loads(state["history"])
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: damaged supernet checkpoint: its training state cannot be restored "
                                  f"({type(e).__name__})") from None
        _check_optimizer(path, optimizer)
        supernet.load_state_dict(state["model"])
        if data_state is not None and hasattr(batches, "load_state_dict"):
            batches.load_state_dict(data_state)
        step = int(state["step"])
        log.info("resumed at step %d", step)

    def save() -> None:
        data_state = batches.state_dict() if hasattr(batches, "state_dict") else None
        data_states = [data_state]
        if world > 1:
            data_states = [None] * world
            dist.all_gather_object(data_states, data_state)
        if rank == 0 and path is not None:
            save_torch({"format": CHECKPOINT_FORMAT, "version": 1, "space": space.to_dict(),
                         "settings": asdict(settings), "world_size": world, "step": step,
                         "model": supernet.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "arch_rng": arch_rng.bit_generator.state,
                         "torch_rng": torch.get_rng_state(), "data": data_states,
                         "history": json.dumps(history)}, path)
        if world > 1:
            dist.barrier()

    val_largest, val_smallest = space.largest(settings.scale), space.smallest(settings.scale)
    start, started = step, time.perf_counter()
    # live on a terminal; in a log file (nohup, CI) one redraw every 30 s instead of one per step
    bar = tqdm(total=steps, initial=step, desc="supernet", unit="step", disable=not progress or rank != 0,
               dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 30.0)
    supernet.train()
    it = iter(batches)
    while step < steps and (stop_after is None or step - start < stop_after):
        lr_b, hr_b = next(it)
        ref = params[0]
        lr_b, hr_b = lr_b.to(ref.device), hr_b.to(ref.device)
        optimizer.zero_grad(set_to_none=True)
        largest, smallest, random_blocks = _sandwich(space, settings, step)
        teacher = supernet(lr_b, largest)
        loss_big = F.l1_loss(teacher, hr_b)
        loss_big.backward()
        target = teacher.detach()
        students = [smallest] + [space.sample(arch_rng, settings.scale, blocks) for blocks in random_blocks]
        loss_small = None
        for g in students:
            out = supernet(lr_b, g)
            loss = (1 - kd_weight) * F.l1_loss(out, hr_b) + kd_weight * F.l1_loss(out, target)
            loss.backward()
            loss_small = loss if loss_small is None else loss_small
        _average_gradients(params, world)
        optimizer.step()
        scheduler.step()
        step += 1
        record = {"step": step, "loss_largest": loss_big.item(),
                  "loss_smallest": loss_small.item() if loss_small is not None else None}
        if sort_every and step % sort_every == 0 and step < steps:
            moved = int((sort_channels(supernet, optimizer)[TRUNK] != torch.arange(space.max_width)).sum())
            record["sorted_trunk_moved"] = moved
            log.info("step %d: sorted channels by importance (%d trunk channels moved)", step, moved)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss_largest']:.4f}")
        if validate is not None and rank == 0 and ((val_every and step % val_every == 0) or step == steps):
            record["val_largest"] = float(validate(supernet, val_largest))
            record["val_smallest"] = float(validate(supernet, val_smallest))
            supernet.train()
            log.info("step %d loss %.5f val PSNR largest %.3f smallest %.3f", step, record["loss_largest"],
                     record["val_largest"], record["val_smallest"])
            bar.set_postfix(loss=f"{record['loss_largest']:.4f}", big=f"{record['val_largest']:.2f}",
                            small=f"{record['val_smallest']:.2f}")
        history.append(record)
        if step % checkpoint_every == 0 or step == steps:
            save()
    bar.close()
    return {"step": step, "done": step >= steps, "seconds": time.perf_counter() - started, "history": history}


def _sandwich(space: SearchSpace, settings: TrainSettings, step: int) -> tuple[Genome, Genome, list]:
    """(largest, smallest, blocks of each random sub-network or None to draw them) for 0-based `step`.

    "fair" sampling is a function of the step alone (decks seeded by seed, cell and round), so a resumed
    run deals exactly the blocks the uninterrupted run would have.
    """
    if settings.sampling == "fixed":
        return (space.largest(settings.scale), space.smallest(settings.scale), [None] * settings.num_random)
    real, kinds = space.real_blocks, len(space.blocks)
    largest = space.largest(settings.scale, real[step % len(real)])
    smallest = space.smallest(settings.scale, real[(step + len(real) // 2) % len(real)])
    dealt = []
    for j in range(settings.num_random):
        deal = step * settings.num_random + j
        rounds, pos = divmod(deal, kinds)
        dealt.append([space.blocks[int(np.random.default_rng([settings.seed, cell, rounds]).permutation(kinds)[pos])]
                      for cell in range(space.num_cells)])
    return largest, smallest, dealt


def _check_resumable(state: dict, space: SearchSpace, settings: TrainSettings, world: int, path: Path) -> None:
    """A checkpoint continues only the run that wrote it (same space, settings, process count)."""
    if state["space"] != space.to_dict():
        changed = sorted(k for k, v in space.to_dict().items() if state["space"].get(k) != v)
        raise SpaceError(f"{path}: written for another search space ({', '.join(changed)} differ)")
    mine, defaults = asdict(settings), asdict(TrainSettings(steps=1, scale=2))
    changed = sorted(k for k in mine if state["settings"].get(k, defaults[k]) != mine[k])
    if changed:
        raise SpaceError(f"{path}: written with other training settings ({', '.join(changed)} differ)")
    if state["world_size"] != world:
        raise SpaceError(f"{path}: written by {state['world_size']} process(es), resumed with {world}")
