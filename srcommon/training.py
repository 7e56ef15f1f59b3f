"""The one training loop: Adam, a cosine schedule, a loss (L1 unless a hook says otherwise), a progress bar,
a checkpoint hook and exact resume.

Why one loop: srprune's training of a network, pruning fine-tuning, the supernet's sandwich training and a
search candidate's short adaptation are the same loop with different hooks; quantisation-aware training
is added here once instead of four times. Why in srcommon: supernet must not import srprune, so the loop
lives below both. torch is imported at module level: only training code imports this module, and the rest
of srcommon stays torch-free (compiler tooling imports srcommon without loading torch).

Order of one step (every user's results depend on it, keep it): `before_step(i)` -> next batch (moved to
the parameters' device) -> zero_grad -> loss + backward (or the `backward` hook) -> `after_backward()`
-> optimizer step -> scheduler step -> step += 1 -> `after_step(step)` -> validation -> checkpoint.
The global torch RNG is seeded when the loop is made (unless `seed` is None) and is part of the
checkpoint, so a resumed run continues bit-identically (CPU, same thread count).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from srcommon.devices import autocast, check_amp, resolve_device
from srcommon.progress import progress_bar

Batch = Any  # (lr, hr) tensors for every user today
Record = dict[str, Any]


@dataclass(frozen=True)
class LoopSettings:
    """What the loop itself needs (each user keeps its own, larger settings and derives these)."""

    steps: int
    lr: float
    min_lr_ratio: float = 0.01  # the cosine schedule ends at lr * min_lr_ratio
    cosine: bool = True  # False: a constant learning rate (the candidate's few adaptation steps)
    seed: int | None = 0  # torch.manual_seed when the loop is made; None leaves the global RNG alone
    val_every: int = 0  # validate after every this many steps (0: only after the last)
    checkpoint_every: int = 0  # call the checkpoint hook every this many steps (0: only after the last)
    history_every_step: bool = False  # keep every step's record, or only the validated ones
    device: str | None = None  # auto|cpu|cuda[:N]|mps (srcommon.devices); None: where the model already is
    amp: str = "off"  # mixed precision: off, bf16 (GPU or CPU), fp16 (GPU; the loss is scaled)


@dataclass
class Hooks:
    """What differs between the users; every hook is optional.

    loss(batch, i) -> the loss tensor of 0-based step i; the loop calls backward (default: L1 of the model).
    backward(batch, i) -> {name: float}: runs forward and backward itself (several sub-networks per step),
    calling `loop.backward(loss)` (which scales the loss under fp16) instead of `loss.backward()`.
    before_step(i): before the batch is drawn (mask schedule).
    after_backward(): gradient surgery before the optimizer step (masking gradients, all-reduce).
    after_step(step) -> extra record entries or None: after the optimizer and schedule step (masks, sorting).
    validate(record) -> entries such as val PSNR, merged into the record; the model is put back in train mode.
    checkpoint(): write a checkpoint (contents: TrainLoop.state_dict() plus the user's own fields).
    """

    loss: Callable[[Batch, int], torch.Tensor] | None = None
    backward: Callable[[Batch, int], dict[str, float]] | None = None
    before_step: Callable[[int], None] | None = None
    after_backward: Callable[[], None] | None = None
    after_step: Callable[[int], Record | None] | None = None
    validate: Callable[[Record], Record | None] | None = None
    checkpoint: Callable[[], None] | None = None


class TrainLoop:
    """Adam + cosine over `params` (default: the model's), the step count, the history and elapsed time."""

    def __init__(self, model: nn.Module, settings: LoopSettings, params: Iterable[nn.Parameter] | None = None):
        self.model, self.settings = model, settings
        if settings.device is not None:  # before the optimizer exists: it holds the parameters it was given
            model.to(resolve_device(settings.device))
        self.device = next(model.parameters(), torch.empty(0)).device
        self.amp_dtype = check_amp(self.device, settings.amp)
        # fp16 underflows small gradients: scale the loss (bf16 has float32's range and needs no scaling)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.params = list(model.parameters() if params is None else params)
        self.optimizer = torch.optim.Adam(self.params, lr=settings.lr)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=settings.steps, eta_min=settings.lr * settings.min_lr_ratio)
            if settings.cosine else None)
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        self.step = 0
        self.history: list[Record] = []
        self.prior_seconds = 0.0  # training time of earlier (killed) processes of this run
        self._started: float | None = None

    def seconds(self) -> float:
        """Training time of the whole run so far, earlier processes included."""
        now = 0.0 if self._started is None else time.perf_counter() - self._started
        return self.prior_seconds + now

    def state_dict(self) -> dict[str, Any]:
        """The loop's part of a checkpoint: weights, optimizer, schedule, torch RNG, step, history, seconds."""
        state = {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "torch_rng": torch.get_rng_state(), "history": json.dumps(self.history),
                 "seconds": self.seconds()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's loop part; the caller checks the file and wraps errors in its own."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.history = json.loads(state["history"])
        self.prior_seconds = float(state.get("seconds", 0.0))

    def backward(self, loss: torch.Tensor) -> None:
        """loss.backward(), scaled under fp16 mixed precision: what a `backward` hook calls for each of its losses."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def l1(self, batch: Batch, step: int) -> torch.Tensor:
        """The default loss: L1 between the model's output and the ground truth."""
        lr, hr = batch
        return F.l1_loss(self.model(lr), hr)

    def run(self, batches: Iterable[Batch], hooks: Hooks | None = None, *, stop_after: int | None = None,
            progress: bool = True, desc: str = "train") -> dict[str, Any]:
        """Train until `steps` (or `stop_after` steps of this call: a simulated kill, no final checkpoint).

        Returns {"step", "done", "seconds" (this call), "total_seconds", "loss" (the last), "history"}.
        """
        hooks = hooks or Hooks()
        s = self.settings
        device = self.params[0].device if self.params else None
        start_step, self._started = self.step, time.perf_counter()
        last_loss: float | None = None
        bar = progress_bar(total=s.steps, initial=self.step, desc=desc, unit="step", disable=not progress)
        it = iter(batches)
        self.model.train()
        try:
            while self.step < s.steps and (stop_after is None or self.step - start_step < stop_after):
                if hooks.before_step is not None:
                    hooks.before_step(self.step)
                batch = _to_device(next(it), device)
                self.optimizer.zero_grad(set_to_none=True)
                if hooks.backward is not None:
                    with autocast(self.device, self.amp_dtype):
                        losses = hooks.backward(batch, self.step)
                else:
                    with autocast(self.device, self.amp_dtype):
                        loss = (hooks.loss or self.l1)(batch, self.step)
                    self.backward(loss)
                    losses = {"loss": loss.item()}
                if self.scaler is not None:
                    self.scaler.unscale_(self.optimizer)  # the hooks below see true gradients
                if hooks.after_backward is not None:
                    hooks.after_backward()
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                self.step += 1
                record: Record = {"step": self.step, **losses}
                last_loss = next(iter(losses.values()), None)
                if hooks.after_step is not None:
                    record.update(hooks.after_step(self.step) or {})
                bar.update(1)
                postfix = {"loss": f"{last_loss:.4f}"} if last_loss is not None else {}
                bar.set_postfix(**postfix)
                validated = False
                if hooks.validate is not None and ((s.val_every and self.step % s.val_every == 0)
                                                   or self.step == s.steps):
                    scores = hooks.validate(record) or {}
                    self.model.train()
                    record.update(scores)
                    validated = bool(scores)
                    bar.set_postfix(**postfix, **{k: f"{v:.2f}" for k, v in scores.items()
                                                  if isinstance(v, float)})
                if s.history_every_step or validated:
                    self.history.append(record)
                if hooks.checkpoint is not None and ((s.checkpoint_every and self.step % s.checkpoint_every == 0)
                                                     or self.step == s.steps):
                    hooks.checkpoint()
        finally:
            bar.close()
            elapsed = time.perf_counter() - self._started
            self.prior_seconds, self._started = self.prior_seconds + elapsed, None
        return {"step": self.step, "done": self.step >= s.steps, "seconds": elapsed,
                "total_seconds": self.prior_seconds, "loss": last_loss, "history": self.history}


def read_checkpoint(path: str | os.PathLike, fmt: str, what: str, error: type[Exception]) -> dict:
    """A training checkpoint written by srcommon.atomic.save_torch, loaded with weights_only (plain data and tensors:
    a file can never run code); an unreadable or foreign file is one `error` naming it and `what` it should be."""
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them: one line only
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise error(f"{path}: not a readable {what} ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise error(f"{path}: not a {what}")
    return state


def _to_device(batch: Batch, device: torch.device | None) -> Batch:
    """A batch's tensors on the parameters' device (the same objects when already there, as on CPU)."""
    if device is None or not isinstance(batch, (tuple, list)):
        return batch
    return type(batch)(t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in batch)


def freeze(teacher: nn.Module | None) -> nn.Module | None:
    """A distillation teacher in eval mode with no gradients (None stays None)."""
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    return teacher


def distilled_l1(out: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, teacher: nn.Module | None,
                 weight: float) -> torch.Tensor:
    """L1 to the HR patch plus `weight` x L1 to a frozen teacher's output on the same LR patch (no teacher or weight
    0: plain L1). Pruning fine-tuning distils from the dense model and QAT from the float one, the same way."""
    value = F.l1_loss(out, hr)
    if teacher is not None and weight > 0:
        with torch.no_grad():
            target = teacher(lr)
        value = value + weight * F.l1_loss(out, target)
    return value
