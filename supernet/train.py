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

The loop (Adam, cosine schedule, progress bar, checkpoint timing, exact resume) is srcommon.training's,
shared with srprune's training; this module adds the sandwich step, the all-reduce and the checkpoint's
supernet fields. The checkpoint (model, optimizer, schedule, generator states, data states, step,
history) is written atomically (temp file + os.replace) and a resumed run is bit-identical on CPU to an
uninterrupted one, provided the batch iterator has state_dict()/load_state_dict().
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from srcommon.atomic import save_torch
from srcommon.training import Hooks, LoopSettings, TrainLoop, read_checkpoint
from supernet.errors import CheckpointError, SpaceError
from supernet.model import SuperNet
from supernet.settings import TrainSettings
from supernet.sorting import TRUNK, sort_channels
from supernet.space import Genome, SearchSpace

CHECKPOINT_FORMAT = "supernet-train-state"
log = logging.getLogger("supernet.train")

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]
Validate = Callable[[SuperNet, Genome], float]


def init_distributed(device: torch.device | None = None) -> tuple[int, int]:
    """(rank, world size); starts the process group from torchrun's environment when WORLD_SIZE > 1.

    Training on CUDA (`device`, default: CUDA when present), each process takes the GPU of its LOCAL_RANK
    (nccl); on the CPU, gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        cuda = torch.cuda.is_available() if device is None else device.type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        # Torn down before the interpreter's own teardown: left to static destructors, gloo's threads sometimes
        # ended a finished rank with "terminate called without an active exception" (SIGABRT; seen under load).
        atexit.register(dist.destroy_process_group)
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
    state = read_checkpoint(path, CHECKPOINT_FORMAT, "supernet training checkpoint", CheckpointError)
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


def train_supernet(supernet: SuperNet, batches: Batches, settings: TrainSettings, *,
                   checkpoint: str | os.PathLike | None = None, resume: bool = False,
                   validate: Validate | None = None, stop_after: int | None = None, progress: bool = True,
                   amp: str = "off") -> dict:
    """Train `supernet` in place on (lr, hr) batches; return {"step", "done", "seconds", "history"}.

    It trains where its parameters are (move it first: srcommon.devices.resolve_device), with `amp` mixed
    precision (srcommon.devices.check_amp).
    `validate(supernet, genome) -> PSNR` is called for the largest and smallest sub-networks every
    `settings.val_every` steps (0: only at the end) on rank 0. `stop_after` ends this call after that many
    steps without a final checkpoint (a simulated kill). With `resume`, an existing `checkpoint` is continued
    exactly. `settings.sort_every` > 0 sorts every channel group by importance (supernet.sorting) after every
    that many steps (weights and Adam moments together; the largest network's function is unchanged), not
    after the last. The loop is srcommon.training's; this function adds the sandwich step, the all-reduce,
    the sorting and the checkpoint's supernet fields.
    """
    space = supernet.space
    if settings.scale is None:
        settings = replace(settings, scale=space.scales[0])
    if settings.scale not in space.scales:
        raise SpaceError(f"scale {settings.scale} is not a scale the supernet was built for "
                         f"({', '.join(map(str, space.scales))})")
    rank, world = init_distributed(next(supernet.parameters()).device)
    params = list(supernet.parameters())
    if world > 1:
        for p in params:  # identical start on every rank
            dist.broadcast(p.data, src=0)
    loop = TrainLoop(supernet, LoopSettings(steps=settings.steps, lr=float(settings.lr),
                                            min_lr_ratio=float(settings.min_lr_ratio), seed=settings.seed,
                                            val_every=settings.val_every,
                                            checkpoint_every=settings.checkpoint_every, history_every_step=True,
                                            amp=amp),
                     params)
    arch_rng = np.random.Generator(np.random.PCG64(settings.seed))
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        if not resume:
            raise SpaceError(f"{path} exists: resume it or remove it to start over")
        _resume(path, loop, arch_rng, batches, space, settings, rank, world)

    def save() -> None:
        data_state = batches.state_dict() if hasattr(batches, "state_dict") else None
        data_states = [data_state]
        if world > 1:
            data_states = [None] * world
            dist.all_gather_object(data_states, data_state)
        if rank == 0 and path is not None:
            save_torch({"format": CHECKPOINT_FORMAT, "version": 1, "space": space.to_dict(),
                        "settings": settings.to_dict(), "world_size": world, **loop.state_dict(),
                        "arch_rng": arch_rng.bit_generator.state, "data": data_states}, path)
        if world > 1:
            dist.barrier()

    kd = float(settings.kd_weight)

    def sandwich(batch, step: int) -> dict[str, float]:
        lr_b, hr_b = batch
        largest, smallest, random_blocks = _sandwich(space, settings, step)
        teacher = supernet(lr_b, largest)
        loss_big = F.l1_loss(teacher, hr_b)
        loop.backward(loss_big)
        target = teacher.detach()
        students = [smallest] + [space.sample(arch_rng, settings.scale, blocks) for blocks in random_blocks]
        loss_small = None
        for g in students:
            out = supernet(lr_b, g)
            loss = (1 - kd) * F.l1_loss(out, hr_b) + kd * F.l1_loss(out, target)
            loop.backward(loss)
            loss_small = loss if loss_small is None else loss_small
        return {"loss_largest": loss_big.item(), "loss_smallest": loss_small.item() if loss_small is not None else None}

    def sort(step: int) -> dict | None:
        if not (settings.sort_every and step % settings.sort_every == 0 and step < settings.steps):
            return None
        moved = int((sort_channels(supernet, loop.optimizer)[TRUNK] != torch.arange(space.max_width)).sum())
        log.info("step %d: sorted channels by importance (%d trunk channels moved)", step, moved)
        return {"sorted_trunk_moved": moved}

    val_largest, val_smallest = space.largest(settings.scale), space.smallest(settings.scale)

    def validation(record: dict) -> dict:
        scores = {"val_largest": float(validate(supernet, val_largest)),
                  "val_smallest": float(validate(supernet, val_smallest))}
        log.info("step %d loss %.5f val PSNR largest %.3f smallest %.3f", record["step"], record["loss_largest"],
                 scores["val_largest"], scores["val_smallest"])
        return scores

    hooks = Hooks(backward=sandwich, after_backward=lambda: _average_gradients(params, world), after_step=sort,
                  validate=validation if validate is not None and rank == 0 else None, checkpoint=save)
    out = loop.run(batches, hooks, stop_after=stop_after, progress=progress and rank == 0, desc="supernet")
    if world > 1:
        # Ranks leave together: gloo sends the last all-reduce's data from background threads, and a rank that tore
        # its process group down while its peer was still receiving sometimes ended with SIGABRT ("terminate called
        # without an active exception") under load, after the last step of a --stop-after run.
        dist.barrier()
    return {"step": out["step"], "done": out["done"], "seconds": out["seconds"], "history": out["history"]}


def _resume(path: Path, loop: TrainLoop, arch_rng: np.random.Generator, batches: Batches, space: SearchSpace,
            settings: TrainSettings, rank: int, world: int) -> None:
    """Continue from a checkpoint: every way it can be wrong or foreign is one line naming the file."""
    state = load_checkpoint(path)
    _check_resumable(state, space, settings, world, path)
    check_weights(path, loop.model, state["model"])
    try:
        loop.load_state_dict(state)
        arch_rng.bit_generator.state = state["arch_rng"]
        data_state = state["data"][rank]
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: damaged supernet checkpoint: its training state cannot be restored "
                              f"({type(e).__name__})") from None
    _check_optimizer(path, loop.optimizer)
    if data_state is not None and hasattr(batches, "load_state_dict"):
        batches.load_state_dict(data_state)
    log.info("resumed at step %d", loop.step)


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
    mine, defaults = settings.resume_view(), TrainSettings(scale=settings.scale).resume_view()
    changed = sorted(k for k in mine if state["settings"].get(k, defaults[k]) != mine[k])
    if changed:
        raise SpaceError(f"{path}: written with other training settings ({', '.join(changed)} differ)")
    if state["world_size"] != world:
        raise SpaceError(f"{path}: written by {state['world_size']} process(es), resumed with {world}")
