"""Prune a model end to end: deploy, validate the spec, gradual pruning + fine-tuning, compact, save."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from srcommon.devices import Placement
from srprune.errors import InputError
from srprune.pruning.finetune import FinetuneConfig, config_dict, finetune
from srprune.pruning.pruner import Pruner, copy_model
from srprune.pruning.spec import PruneSpec


def prune_model(model: nn.Module, spec: PruneSpec | dict, cfg: FinetuneConfig | None = None, sampler=None,
                val_pairs: Sequence | None = None, progress: bool = True,
                where: Placement | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Prune (and fine-tune, if cfg.steps > 0) the deployed form of `model`.

    Returns (pruned model, meta) where meta = {"spec", "layers", "finetune"} is what the model file
    stores as meta["pruning"]. `model` is not modified. With cfg.distill > 0 the unpruned deployed
    model is the teacher.
    """
    from srprune.models.registry import deploy

    cfg = (cfg or FinetuneConfig(steps=0)).check()
    if cfg.steps > 0 and sampler is None:
        raise InputError("fine-tuning needs training data (a patch sampler)")
    work = copy_model(deploy(model))
    teacher = copy_model(work) if cfg.distill > 0 else None
    pruner = Pruner(work, spec)
    summary = finetune(pruner, sampler, cfg, teacher=teacher, val_pairs=val_pairs,
                       scale=getattr(work, "scale", None), progress=progress, where=where)
    pruned, meta = pruner.finalize()
    pruned.eval()
    meta["finetune"] = {**config_dict(cfg), "seconds": summary["seconds"], "final_loss": summary["loss"]}
    return pruned, meta


def prune_model_file(model_spec: str, spec: PruneSpec | dict, out: str | os.PathLike, cfg: FinetuneConfig,
                     scale: int | None = None, data: str = "builtin", val_data: str = "builtin",
                     force: bool = False, progress: bool = True,
                     where: Placement | None = None) -> tuple[Path, dict[str, Any]]:
    """`srprune prune`: load MODEL, prune it by `spec`, fine-tune on `data`, write an ordinary model file.

    The file's meta holds "pruning" (spec, per-layer structure, budget), "source" (where the dense
    model came from) and "val" (PSNR-Y/SSIM-Y on `val_data` after pruning). Returns (path, meta).
    """
    from srprune.outputs import check_writable
    from srprune.data import PatchSampler, load_dataset
    from srprune.evaluate import mean_score, score_pairs
    from srprune.models.modelfile import save_model
    from srprune.models.resolve import resolve_model

    target = check_writable(out, force)
    model, info = resolve_model(model_spec, scale)
    scale = info.scale
    sampler = None
    if cfg.steps > 0:
        sampler = PatchSampler(load_dataset(data, scale, split="train"), scale, cfg.patch_size, cfg.batch_size,
                               seed=cfg.seed)
    val_pairs = load_dataset(val_data, scale, split="val") if val_data else []
    pruned, pmeta = prune_model(model, spec, cfg, sampler, progress=progress, where=where)
    meta: dict[str, Any] = {"pruning": pmeta, "source": {"model": model_spec, "name": info.name,
                                                         "source": info.source, "data": data}}
    if val_pairs:
        val = mean_score(score_pairs(pruned, val_pairs, scale))
        meta["val"] = {"data": val_data, "val_psnr": val.psnr, "val_ssim": val.ssim}
    save_model(target, pruned, meta=meta, force=force)
    return target, meta
