"""Gradual pruning then fine-tuning with fixed masks, optionally distilling from the dense model.

The loop is srcommon.training's (the one training loop) with hooks: the mask schedule before a step,
distillation and group lasso in the loss, pruned weights' gradients zeroed after backward and the
masks re-applied after every optimizer step. No checkpoint: a run is short and starts over.

Schedule (Zhu & Gupta 2017): `updates` mask updates spread over the first `prune_steps` steps,
the k-th at ratio * (1 - (1 - k/updates)^3); the last one reaches the target ratio and the
remaining steps fine-tune with the masks fixed. prune_steps = 0 prunes once, before step 1.
Optionally (`group_lasso` > 0) the gradual phase adds a group-lasso penalty on each layer's
pruning units (block columns, kernels, channels), the regularised route to structured sparsity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from srcommon.devices import Placement
from srcommon.training import Hooks, LoopSettings, TrainLoop, distilled_l1, freeze
from srprune.errors import InputError
from srprune.evaluate import mean_score, score_pairs
from srprune.pruning.pruner import Pruner


@dataclass
class FinetuneConfig:
    """The pruning + fine-tuning budget (recorded in the pruned model's meta)."""

    steps: int = 500
    batch_size: int = 16
    patch_size: int = 32  # LR patch side
    lr: float = 5e-4
    min_lr_ratio: float = 0.01
    prune_steps: int | None = None  # gradual phase length; None: half of steps
    updates: int = 8  # mask updates in the gradual phase
    distill: float = 0.0  # weight of L1(student, dense teacher) added to L1(student, HR)
    group_lasso: float = 0.0  # weight of the sum of unit norms, during the gradual phase only
    seed: int = 0
    threads: int | None = None

    def check(self) -> "FinetuneConfig":
        """Raise InputError on a nonsensical budget."""
        for key in ("steps", "batch_size", "patch_size", "updates"):
            value = getattr(self, key)
            minimum = 0 if key == "steps" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InputError(f"fine-tuning: {key} must be an integer >= {minimum}, got {value!r}")
        if self.prune_steps is not None and not 0 <= self.prune_steps <= self.steps:
            raise InputError(f"fine-tuning: prune_steps must be in [0, steps={self.steps}], got {self.prune_steps}")
        if not self.lr > 0 or self.distill < 0 or self.group_lasso < 0:
            raise InputError("fine-tuning: lr must be > 0, distill and group_lasso >= 0")
        return self

    def schedule(self) -> dict[int, float]:
        """Step index (0-based, before that step) -> progress of the mask update done there."""
        phase = self.steps // 2 if self.prune_steps is None else self.prune_steps
        if phase == 0 or self.steps == 0:
            return {0: 1.0}
        k_total = min(self.updates, phase)
        plan: dict[int, float] = {}
        for k in range(1, k_total + 1):
            plan[(k - 1) * phase // k_total] = 1.0 - (1.0 - k / k_total) ** 3
        return plan


def finetune(pruner: Pruner, sampler, cfg: FinetuneConfig, teacher: nn.Module | None = None,
             val_pairs: Sequence | None = None, scale: int | None = None,
             on_step: Callable[[int, nn.Module], None] | None = None, progress: bool = True,
             where: Placement | None = None) -> dict:
    """Prune `pruner.model` in place on the schedule of `cfg` and fine-tune it; return a summary.

    `where`: device, mixed precision and batch workers (default: the CPU); the model (and the teacher) are
    back on the CPU when this returns.

    `on_step(step, model)` is called after every optimizer step with the masks applied (tests use
    it to check that pruned weights are exactly zero throughout).
    """
    cfg.check()
    model = pruner.model
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    schedule = cfg.schedule()
    last_update = max(schedule)
    if cfg.steps == 0:
        torch.manual_seed(cfg.seed)  # as a run with steps seeds before its first mask update
        pruner.update(1.0)
        return {"steps": 0, "seconds": 0.0, "loss": None, "val": None}
    freeze(teacher)
    where = where or Placement("cpu")
    loop = TrainLoop(model, LoopSettings(steps=cfg.steps, lr=cfg.lr, min_lr_ratio=cfg.min_lr_ratio,
                                         seed=cfg.seed, device=where.device, amp=where.amp))
    pruner.to(loop.device)
    if teacher is not None:
        teacher.to(loop.device)

    def before_step(step: int) -> None:
        if step in schedule:
            pruner.update(schedule[step])

    def loss(batch, step: int) -> torch.Tensor:
        lr_batch, hr_batch = batch
        value = distilled_l1(model(lr_batch), hr_batch, lr_batch, teacher, cfg.distill)
        if cfg.group_lasso > 0 and step < last_update:
            value = value + cfg.group_lasso * pruner.group_lasso()
        return value

    def after_step(step: int) -> None:
        pruner.apply()
        if on_step is not None:
            on_step(step, model)

    batches = where.batches(sampler)
    try:
        out = loop.run(batches, Hooks(loss=loss, before_step=before_step, after_backward=pruner.mask_grads,
                                      after_step=after_step), progress=progress, desc="prune+finetune")
    finally:
        batches.close()
        model.cpu()
        pruner.to(torch.device("cpu"))
        if teacher is not None:
            teacher.cpu()
    model.eval()
    summary = {"steps": cfg.steps, "seconds": out["seconds"], "loss": out["loss"], "val": None}
    if val_pairs:
        val = mean_score(score_pairs(model, val_pairs, scale or model.scale))
        summary["val"] = {"psnr": val.psnr, "ssim": val.ssim}
    return summary


def config_dict(cfg: FinetuneConfig) -> dict:
    """Plain data of a config, for meta."""
    return asdict(cfg)
