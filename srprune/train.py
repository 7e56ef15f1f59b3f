"""Training of a single SR network: L1 loss, Adam, cosine schedule, exact resume (srcommon.training's loop).

The training state (weights, optimizer, schedule, sampler and RNG states, step)
is checkpointed atomically every `checkpoint_every` steps, so a run killed at
any moment continues from its last checkpoint and ends with the same weights
as an uninterrupted run (same thread count, CPU).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from srcommon.atomic import save_torch, write_text
from srcommon.devices import Placement
from srcommon.owned import OwnedFolder, check_replaceable
from srcommon.training import Hooks, LoopSettings, TrainLoop, read_checkpoint
from srprune.errors import InputError
from srprune.evaluate import mean_score, score_pairs

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "srprune-train-state"
TRAIN_FILES = (CHECKPOINT, "train.log", "train_config.json")  # what `train` writes into its run folder


@dataclass
class TrainConfig:
    """Everything that determines a training run (written to the run folder)."""

    steps: int = 2000
    batch_size: int = 16
    patch_size: int = 48  # LR patch side
    lr: float = 1e-3
    min_lr_ratio: float = 0.01  # cosine schedule ends at lr * min_lr_ratio
    seed: int = 0
    val_every: int = 250
    checkpoint_every: int = 100
    threads: int | None = None
    extra: dict = field(default_factory=dict)  # model name/config/data: recorded, checked on resume


def setup_logger(run_dir: Path, name: str = "srprune.train") -> logging.Logger:
    """A logger that appends to RUN/train.log (the terminal shows the progress bar)."""
    logger = logging.getLogger(f"{name}.{run_dir.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(run_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    return logger


def one_line_reason(e: Exception) -> str:
    """The first line of an exception's text (torch's shape errors run over many lines)."""
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _load_state(path: Path, cfg: TrainConfig) -> dict:
    """Read a training checkpoint and check it belongs to this configuration."""
    state = read_checkpoint(path, CHECKPOINT_FORMAT, "srprune training checkpoint", InputError)
    missing = [k for k in ("config", "step", "model", "optimizer", "scheduler", "sampler", "torch_rng",
                                        "history")
               if k not in state]
    if missing or not isinstance(state["config"], dict):
        raise InputError(f"{path}: damaged training checkpoint (missing {', '.join(missing) or 'config'})")
    if state["config"] != asdict(cfg):
        changed = sorted(k for k in asdict(cfg) if state["config"].get(k) != asdict(cfg)[k])
        raise InputError(f"{path}: was written with a different configuration ({', '.join(changed)} differ); "
                         "use --force to start over")
    return state


def loop_settings(cfg: TrainConfig, where: Placement | None = None) -> LoopSettings:
    """The shared loop's settings for a training configuration (on the CPU unless `where` says otherwise)."""
    where = where or Placement("cpu")
    return LoopSettings(steps=cfg.steps, lr=cfg.lr, min_lr_ratio=cfg.min_lr_ratio, seed=cfg.seed,
                        val_every=cfg.val_every, checkpoint_every=cfg.checkpoint_every,
                        device=where.device, amp=where.amp)


def train(model: nn.Module, sampler, val_pairs: Sequence, scale: int, cfg: TrainConfig, run_dir: Path,
          resume: bool = False, stop_after: int | None = None, progress: bool = True,
          where: Placement | None = None) -> dict:
    """Train `model` in place on batches from `sampler`; return a summary dict.

    `where`: device, mixed precision and batch workers (default: the CPU, no workers); the model is back on
    the CPU when this returns (model files and the compiler read CPU tensors).

    `sampler` yields (lr, hr) float NCHW batches and has state_dict()/load_state_dict().
    `stop_after` ends the run early after that many steps of this call (used to
    test that an interrupted run resumes exactly). The loop is srcommon.training's.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    OwnedFolder(run_dir, "train").add(*TRAIN_FILES)  # what --force may replace later, recorded before writing
    log = setup_logger(run_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    where = where or Placement("cpu")
    loop = TrainLoop(model, loop_settings(cfg, where))
    sampler = where.batches(sampler)
    ckpt = run_dir / CHECKPOINT
    if resume and ckpt.exists():
        state = _load_state(ckpt, cfg)
        try:
            loop.load_state_dict(state)
            sampler.load_state_dict(state["sampler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:  # mis-shaped weights, damaged fields
            raise InputError(f"{ckpt}: damaged training checkpoint ({one_line_reason(e)})") from None
        log.info("resumed at step %d", loop.step)
    elif ckpt.exists():
        raise InputError(f"{ckpt} exists: pass --resume to continue it or --force to start over")
    write_text(run_dir / "train_config.json", json.dumps(asdict(cfg), indent=2) + "\n")

    def save_state() -> None:
        save_torch({"format": CHECKPOINT_FORMAT, "version": 1, "config": asdict(cfg), **loop.state_dict(),
                    "sampler": sampler.state_dict()}, ckpt)

    def validate(record: dict) -> dict:
        val = mean_score(score_pairs(model, val_pairs, scale))
        log.info("step %d loss %.5f val PSNR-Y %.4f SSIM-Y %.4f", record["step"], record["loss"], val.psnr, val.ssim)
        return {"val_psnr": val.psnr, "val_ssim": val.ssim}

    try:
        out = loop.run(sampler, Hooks(validate=validate, checkpoint=save_state), stop_after=stop_after,
                       progress=progress)
    finally:
        sampler.close()
        model.cpu()
    log.info("stopped at step %d after %.1f s of training in all", out["step"], out["total_seconds"])
    return {"step": out["step"], "done": out["done"], "seconds": out["total_seconds"], "history": out["history"]}


def train_model_file(model_spec: str, scale: int | None, data: str, val_data: str, out_dir: Path,
                     cfg: TrainConfig, resume: bool = False, force: bool = False, progress: bool = True,
                     stop_after: int | None = None, where: Placement | None = None) -> Path | None:
    """Train a registered architecture (or fine-tune a model file) and write OUT/model.pt.

    The run folder holds the resumable checkpoint, train.log and the final
    model file, whose meta records the training budget and validation scores.
    Returns None (and writes no model file) when `stop_after` ended the run early.
    """
    from srprune.data import PatchSampler, load_dataset
    from srprune.models import resolve_model
    from srprune.models.modelfile import save_model

    final = out_dir / "model.pt"
    if final.exists() and not force:
        raise InputError(f"{final} already exists (use --force to train again)")
    if force:  # --force removes only what srprune wrote here: refuse now, before any work, if more is there
        check_replaceable(out_dir, True)
    torch.manual_seed(cfg.seed)  # untrained weights are part of the seeded run
    net, _ = resolve_model(model_spec, scale)
    scale = net.scale
    train_pairs = load_dataset(data, scale, split="train")
    val_pairs = load_dataset(val_data, scale, split="val")
    OwnedFolder.claim(out_dir, "train", force=force).add(final.name)  # the inputs are good: now write
    cfg.extra = {"model": model_spec, "scale": scale, "data": data, "val_data": val_data}
    sampler = PatchSampler(train_pairs, scale, cfg.patch_size, cfg.batch_size, seed=cfg.seed)
    summary = train(net, sampler, val_pairs, scale, cfg, out_dir, resume=resume, progress=progress,
                    stop_after=stop_after, where=where)
    if not summary["done"]:
        return None
    last = summary["history"][-1] if summary["history"] else {}
    meta = {"train": asdict(cfg) | {"seconds": summary["seconds"]}, "val": last}
    save_model(final, net, meta=meta, force=True)
    return final
