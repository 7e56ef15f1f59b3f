"""Post-training quantisation (calibration) and quantisation-aware fine-tuning, and `srprune quantize`'s file I/O.

PTQ: the deployed model's plan runs in float over the calibration images while observers record every uint8
tensor (min-max or percentile), then weights become int8 per output channel and the model the integer
"quantized" architecture. QAT continues from there: fake quantisation (straight-through) in the one training
loop (srcommon.training.TrainLoop, as pruning fine-tuning uses it), ranges moved by EMA, pruning masks held
(pruned weights get no gradient and are re-zeroed after each step, so they quantise to exact int8 zeros).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from srcommon.progress import note, progress_bar
from srprune.errors import InputError
from srprune.quant.plan import PlanNet
from srprune.quant.qmodel import NAME, PRECISIONS, QuantizedSR
from srprune.quant.ranges import check_method


@dataclass
class QuantConfig:
    """How to quantise (recorded in the quantised model's meta)."""

    precision: str = "int8"
    method: str = "minmax"  # minmax | percentile
    percentile: float = 99.99
    calib_images: int = 32  # at most this many calibration images (the first, sorted by name)
    qat_steps: int = 0  # 0: post-training quantisation only
    batch_size: int = 16
    patch_size: int = 32
    lr: float = 1e-4
    distill: float = 0.0  # weight of L1 to the float model's output during QAT
    seed: int = 0

    def check(self) -> "QuantConfig":
        """InputError on an unknown precision or method, or a nonsensical budget."""
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r} (known: {', '.join(PRECISIONS)})")
        check_method(self.method, self.percentile)
        for key in ("calib_images", "batch_size", "patch_size"):
            if int(getattr(self, key)) < 1:
                raise InputError(f"quantize: {key} must be >= 1")
        if self.qat_steps < 0 or not self.lr > 0 or self.distill < 0:
            raise InputError("quantize: qat_steps and distill must be >= 0 and lr > 0")
        return self


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight in [-127, 127], float32 scale per output channel): compiler.quant_spec.quantize_weight's rule."""
    from compiler.quant_spec import quantize_weight as contract_rule

    q, scale = contract_rule(w.detach().float().cpu().numpy())
    return torch.from_numpy(q), torch.from_numpy(scale)


@torch.no_grad()
def calibrate(net: PlanNet, images: Sequence[np.ndarray | torch.Tensor], progress: bool = True) -> None:
    """Record every uint8 tensor's range over `images` (uint8 HxWx3 LR images, or LR float batches NCHW as the
    search's fixed calibration batches are) and fix the observers."""
    from srprune.evaluate import to_tensor

    if not len(images):
        raise InputError("no calibration images")
    net.eval()
    net.mode = "calibrate"
    for img in progress_bar(images, desc="calibrate", unit="img", disable=not progress):
        net(img if isinstance(img, torch.Tensor) else to_tensor(img))
    net.finish_calibration()
    net.mode = "fake"


def convert(net: PlanNet) -> QuantizedSR:
    """The integer model of a calibrated (or QAT-trained) PlanNet, with its layers' precisions (int8 / fp32)."""
    from compiler.quant_spec import quantize_bias
    from srprune.models.registry import build_model

    if "fp16" in net.precisions:
        raise InputError("fp16 layers have no reference model yet (the \"quantized\" architecture's layers are "
                         "int8 or fp32)")
    plan, model = net.plan, net.net
    arch = getattr(model, "arch", None) or {"name": type(model).__name__, "config": {}}
    specs = []
    for n, layer in enumerate(plan.layers):
        c = layer.conv
        specs.append({"name": layer.name, "precision": net.precisions[n], "act": layer.act, "in": c.in_channels,
                      "out": c.out_channels, "k": c.kernel_size[0], "groups": c.groups, "src": layer.src,
                      "residual": layer.residual, "tail": layer.tail})
    colors = plan.layers[0].conv.in_channels
    q = build_model(NAME, plan.scale, base={"name": arch["name"], "config": arch["config"]}, layers=specs,
                    skip=plan.skip, colors=colors)
    with torch.no_grad():
        for n, obs in enumerate(net.observers):
            if q.codes[n + 1]:  # a tensor an int8 layer reads (the same rule as PlanNet's)
                scale, zero = obs.qparams()
                q.tensor_scale[n + 1], q.tensor_zero[n + 1] = scale, zero
        for n, (layer, qlayer) in enumerate(zip(plan.layers, q.layers)):
            if net.precisions[n] == "fp32":
                _copy_float(layer, qlayer)
                continue
            w_q, s_w = quantize_weight(layer.conv.weight)
            qlayer.weight.copy_(w_q)
            qlayer.weight_scale.copy_(s_w)
            bias = layer.conv.bias if layer.conv.bias is not None else torch.zeros(w_q.shape[0])
            s_x = q.qparams(layer.src).scale
            qlayer.bias.copy_(torch.from_numpy(quantize_bias(bias.detach().double().numpy(), s_x, s_w.numpy())))
            if layer.act == "prelu":
                slope = layer.act_module.weight.detach().float()
                qlayer.act_param.copy_(slope.expand(w_q.shape[0]) if slope.numel() == 1 else slope)
        if q.skip == "bicubic":
            q.skip_weight.copy_(plan.skip_weight)
    return q.eval()


def _copy_float(layer, qlayer) -> None:
    """An fp32 layer of a mixed model: its float weights, bias and PReLU slopes as they are."""
    c = layer.conv
    qlayer.weight.copy_(c.weight.detach())
    qlayer.bias.copy_(c.bias.detach() if c.bias is not None else torch.zeros_like(qlayer.bias))
    if layer.act == "prelu":
        slope = layer.act_module.weight.detach().float()
        qlayer.act_param.copy_(slope.expand(qlayer.bias.shape[0]) if slope.numel() == 1 else slope)


def pruning_masks(model: nn.Module, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """{conv name: nonzero mask} of the layers a pruned model file records (meta["pruning"]["layers"])."""
    layers = ((meta or {}).get("pruning") or {}).get("layers") or {}
    masks = {}
    for name, entry in layers.items():
        if isinstance(entry, dict) and entry.get("scheme") == "channel":  # removed channels, nothing masked
            continue
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(mod, nn.Conv2d):
            masks[name] = (mod.weight != 0).to(mod.weight.dtype)
    return masks


def qat(net: PlanNet, sampler, cfg: QuantConfig, masks: dict[str, torch.Tensor] | None = None,
        teacher: nn.Module | None = None, progress: bool = True, fake: bool = True) -> dict[str, Any]:
    """Quantisation-aware fine-tuning of a calibrated PlanNet in place on the one training loop.

    `fake=False` fine-tunes the float model with the same loop, budget and masks (the fair reference for QAT).
    """
    from srcommon.training import Hooks, LoopSettings, TrainLoop, distilled_l1, freeze

    masks = masks or {}
    convs = {name: net.net.get_submodule(name) for name in masks}
    net.mode = "fake" if fake else "float"
    freeze(teacher)
    loop = TrainLoop(net, LoopSettings(steps=cfg.qat_steps, lr=cfg.lr, seed=cfg.seed))

    def loss(batch, step: int) -> torch.Tensor:
        lr_batch, hr_batch = batch
        return distilled_l1(net(lr_batch), hr_batch, lr_batch, teacher, cfg.distill)

    def mask_grads() -> None:
        for name, mask in masks.items():
            if convs[name].weight.grad is not None:
                convs[name].weight.grad.mul_(mask)

    @torch.no_grad()
    def reapply(step: int) -> None:
        for name, mask in masks.items():
            convs[name].weight.mul_(mask)

    out = loop.run(sampler, Hooks(loss=loss, after_backward=mask_grads, after_step=reapply), progress=progress,
                   desc="qat")
    net.eval()
    return {"steps": cfg.qat_steps, "seconds": out["seconds"], "final_loss": out["loss"]}


def quantize_model(model: nn.Module, calib_images: Sequence[np.ndarray], cfg: QuantConfig, sampler=None,
                   meta: dict[str, Any] | None = None, progress: bool = True,
                   precisions: dict[str, str] | None = None) -> tuple[QuantizedSR, dict]:
    """PTQ (+ QAT when cfg.qat_steps > 0) of the deployed form of `model`; returns (quantised model, its meta).

    `model` is not modified; `meta` is the source file's meta (pruning masks are read from it); `precisions`
    ({layer: int8 | fp32}, absent = fp32) quantises only some layers (a searched mixed network), None all.
    """
    from srprune.models.registry import deploy
    from srprune.pruning.pruner import copy_model

    cfg.check()
    if cfg.qat_steps > 0 and sampler is None:
        raise InputError("quantisation-aware training needs training data (a patch sampler)")
    work = copy_model(deploy(model)).eval()
    teacher = copy_model(work) if cfg.qat_steps > 0 and cfg.distill > 0 else None
    net = PlanNet(work, cfg.method, cfg.percentile, precisions=precisions)
    masks = pruning_masks(work, meta or {})
    calibrate(net, list(calib_images)[: cfg.calib_images], progress=progress)
    summary = None
    if cfg.qat_steps > 0:
        torch.manual_seed(cfg.seed)
        summary = qat(net, sampler, cfg, masks, teacher, progress=progress)
    q = convert(net)
    qmeta = {**asdict(cfg), "calib_count": min(len(calib_images), cfg.calib_images), "qat": summary,
             "masked_layers": sorted(masks), "weight_bytes": q.weight_bytes()}
    return q, qmeta


def quantize_model_file(model_spec: str, calib: str, out: str | os.PathLike, cfg: QuantConfig,
                        scale: int | None = None, data: str = "builtin", val_data: str | None = "builtin",
                        force: bool = False, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """`srprune quantize`: quantise MODEL with calibration images from `calib`; QAT on `data`; write OUT.

    meta: "quantization" (config, calibration, QAT summary), "source", "pruning" (kept from the source) and
    "val" (PSNR-Y/SSIM-Y of the integer model and of the float model on `val_data`).
    """
    from srprune.data import PatchSampler, load_dataset
    from srprune.evaluate import mean_score, score_pairs
    from srprune.models import deploy, resolve_model, save_model
    from srprune.outputs import check_writable

    cfg.check()
    target = check_writable(out, force)
    model, info = resolve_model(model_spec, scale)
    try:
        calib_pairs = load_dataset(calib, info.scale, split="train")
    except InputError as exc:
        raise InputError(f"--calib {calib}: {exc}") from None
    if not calib_pairs:
        raise InputError(f"--calib {calib}: no calibration images")
    sampler = None
    if cfg.qat_steps > 0:
        sampler = PatchSampler(load_dataset(data, info.scale, split="train"), info.scale, cfg.patch_size,
                               cfg.batch_size, seed=cfg.seed)
    used = min(len(calib_pairs), cfg.calib_images)
    note(f"quantising {info.name} x{info.scale} to {cfg.precision} ({cfg.method}, {used} calibration "
         f"images{f', {cfg.qat_steps} QAT steps' if cfg.qat_steps else ''})")
    q, qmeta = quantize_model(model, [p.lr for p in calib_pairs], cfg, sampler, info.meta, progress)
    meta: dict[str, Any] = {"quantization": {**qmeta, "calib": calib, "data": data if cfg.qat_steps else None},
                            "source": {"model": model_spec, "name": info.name, "source": info.source}}
    if (info.meta or {}).get("pruning"):
        meta["pruning"] = info.meta["pruning"]
    if val_data:
        pairs = load_dataset(val_data, info.scale, split="val")
        val = mean_score(score_pairs(q, pairs, info.scale))
        ref = mean_score(score_pairs(deploy(model).eval(), pairs, info.scale))
        meta["val"] = {"data": val_data, "val_psnr": val.psnr, "val_ssim": val.ssim, "fp32_psnr": ref.psnr,
                       "fp32_ssim": ref.ssim}
    save_model(target, q, meta=meta, force=force)
    return target, meta
