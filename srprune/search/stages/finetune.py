"""Stage `finetune`: prune the chosen candidate gradually to its per-layer schemes and ratios while fine-tuning.

The chosen genome is extracted from the supernet (deployed form) and distilled from the supernet's largest
network; writes RUN/final/model.pt (an ordinary model file) and RUN/final/arch.json. A candidate with int8 layers
then takes `finetune.qat_steps` quantisation-aware steps on the one training loop (srprune.quant.quantize: its
int8 layers fake-quantised, ranges calibrated on the training images first, pruning masks held, distilled from
the pruned float model) and final/model.pt is the "quantized" model with its per-layer precision (int8 / fp32).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import torch

from srcommon.atomic import write_text
from srprune.search.candidate import Candidate, extract_deployed, pruning_spec
from srprune.search.config import RunConfig
from srprune.layout import RunLayout
from srprune.search.stages.base import Stage

if TYPE_CHECKING:
    from srprune.search.pipeline import Run


def run(run: "Run", fresh: bool) -> dict[str, Any]:
    """Fine-tune search/chosen.json's candidate into final/."""
    chosen = json.loads(run.layout.chosen.read_text())
    return finetune_chosen(run.config, run.layout, chosen, progress=run.progress)


def finetune_chosen(cfg: RunConfig, layout: RunLayout, chosen: dict[str, Any], *, progress: bool = True) -> dict:
    """Prune + fine-tune the chosen candidate; write final/model.pt and final/arch.json."""
    from srprune.data import PatchSampler, load_dataset
    from srprune.evaluate import mean_score, score_pairs
    from srprune.models.modelfile import save_model
    from srprune.pruning.finetune import config_dict, finetune
    from srprune.pruning.layers import prunable_layers
    from srprune.pruning.pruner import Pruner
    from supernet.space import SearchSpace
    from supernet.train import supernet_from_checkpoint

    cand = Candidate.from_dict(chosen)
    scale = cand.genome.scale
    ckpt = layout.supernet_checkpoint
    supernet = supernet_from_checkpoint(ckpt).eval()
    model = extract_deployed(supernet, cand.genome)
    teacher = extract_deployed(supernet, SearchSpace.from_dict(cfg.supernet.space).largest(scale))
    spec = pruning_spec({k: v for k, v in cand.prune.items() if v["ratio"] > 0})
    if not spec["layers"]:
        # A dense winner: the pruner's loop with a ratio-0 mask on one layer is plain fine-tuning (a prunable
        # layer: the first conv after the head may be a depthwise one, which the pruner refuses).
        first = next(n for n in prunable_layers(model) if n != "head")
        spec = {"layers": {first: {"scheme": "unstructured", "ratio": 0.0}}}
    fcfg = cfg.finetune.finetune_config()
    sampler = PatchSampler(load_dataset(cfg.data, scale, split="train"), scale, fcfg.patch_size,
                           fcfg.batch_size, seed=fcfg.seed)
    val_pairs = load_dataset(cfg.val_data, scale, split="val")
    before = mean_score(score_pairs(_masked(model, spec), val_pairs, scale))
    pruner = Pruner(model, spec)
    summary = finetune(pruner, sampler, fcfg, teacher=teacher if fcfg.distill > 0 else None, val_pairs=val_pairs,
                       scale=scale, progress=progress, where=cfg.placement)
    pruned, pmeta = pruner.finalize()
    pruned.eval()
    val = summary["val"] or {}
    qmeta = None
    if cand.precision:
        pruned, qmeta = _quantise(cfg, pruned, scale, pmeta, cand.precision, sampler, progress)
        score = mean_score(score_pairs(pruned, val_pairs, scale))
        qmeta["float_val_psnr"] = val.get("psnr")
        val = {"psnr": score.psnr, "ssim": score.ssim}
    meta = {"search": {k: chosen[k] for k in ("proxy_psnr", "predicted_ms", "stage") if k in chosen},
            "candidate": cand.to_dict(), "pruning": pmeta,
            "finetune": {**config_dict(fcfg), "seconds": summary["seconds"], "final_loss": summary["loss"],
                         "teacher": "supernet largest"},
            "supernet": {"checkpoint": str(ckpt)}, **({"quantization": qmeta} if qmeta else {}),
            "val": {"data": cfg.val_data, "before_finetune_psnr": before.psnr, "val_psnr": val.get("psnr"),
                    "val_ssim": val.get("ssim")}}
    layout.final.mkdir(parents=True, exist_ok=True)
    save_model(layout.final_model, pruned, meta=meta, force=True)
    write_text(layout.final / "arch.json", json.dumps(cand.to_dict(), indent=1) + "\n")
    return {"val_psnr": val.get("psnr"), "val_ssim": val.get("ssim"), "before_finetune_psnr": before.psnr,
            "seconds": summary["seconds"]}


def _quantise(cfg: RunConfig, pruned: torch.nn.Module, scale: int, pmeta: dict, precision: dict[str, str],
              sampler: Any, progress: bool) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The pruned model with its int8 layers quantised (calibration on the training images, then
    `finetune.qat_steps` QAT steps on the fine-tuning's patches); returns (quantized model, its meta)."""
    from srprune.data import load_dataset
    from srprune.quant.quantize import QuantConfig, quantize_model

    f = cfg.finetune
    qcfg = QuantConfig(qat_steps=f.qat_steps, batch_size=f.batch_size, patch_size=f.patch_size,
                       distill=float(f.distill), seed=f.seed)
    calib = [p.lr for p in load_dataset(cfg.data, scale, split="train")]
    q, qmeta = quantize_model(pruned, calib, qcfg, sampler, {"pruning": pmeta}, progress=progress,
                              precisions=precision)
    return q, {**qmeta, "precision": dict(precision)}


def _masked(model: torch.nn.Module, spec: dict) -> torch.nn.Module:
    """A copy with the final masks applied at once (what fine-tuning starts from, for the record)."""
    from srprune.pruning.pruner import copy_model
    from srprune.search.candidate import apply_masks

    m = copy_model(model)
    apply_masks(m, spec)
    return m.eval()


STAGE = Stage(
    name="finetune",
    reads=("data", "val_data", "finetune"),
    after=("ratios",),
    writes=lambda layout: [layout.final],
    run=run,
    reads_files=lambda layout: [layout.chosen],
)
