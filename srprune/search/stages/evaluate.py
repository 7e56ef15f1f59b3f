"""Stage `evaluate`: PSNR-Y/SSIM-Y (the project's protocol) of the final model and of bicubic.

On every eval dataset; writes RUN/eval/metrics.{json,md} plus crops for the report.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from srcommon.atomic import write_text
from srprune.search.config import RunConfig
from srprune.layout import RunLayout
from srprune.search.stages.base import Stage

if TYPE_CHECKING:
    from srprune.search.pipeline import Run


def run(run: "Run", fresh: bool) -> dict[str, Any]:
    """Evaluate final/model.pt; the summary is {dataset: {bicubic, final}} PSNR-Y."""
    return evaluate_final(run.config, run.layout, progress=run.progress)


def evaluate_final(cfg: RunConfig, layout: RunLayout, *, progress: bool = True) -> dict:
    """PSNR/SSIM of the final model and bicubic on every eval dataset; eval/metrics.{json,md} and crops."""
    from srprune.data import load_dataset
    from srprune.evaluate import format_table, mean_score, score_pairs, super_resolve
    from srprune.imageio import write_image
    from srprune.models import resolve_model
    from srprune.models.modelfile import load_model

    model, info = load_model(layout.final_model)
    model.eval()
    scale = int(model.arch["scale"])
    bicubic, _ = resolve_model("bicubic", scale)
    layout.crops.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"scale": scale, "datasets": {}}
    md = [f"# Final model x{scale}: PSNR-Y / SSIM-Y (crop border {scale}, BT.601 Y, uint8 rounding)", "",
          "| dataset | images | bicubic PSNR | bicubic SSIM | final PSNR | final SSIM | gain dB |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    tables = []
    for spec in cfg.eval_data:
        pairs = load_dataset(spec, scale, split="val")  # builtin: the val split; a DIV2K root: its val set
        res = {}
        for name, net in (("bicubic", bicubic), ("final", model)):
            scores = score_pairs(net, pairs, scale, progress=progress)
            mean = mean_score(scores)
            res[name] = {"psnr": mean.psnr, "ssim": mean.ssim, "images": [asdict(s) for s in scores]}
            tables.append(format_table(scores, f"{name} on {spec}"))
        doc["datasets"][str(spec)] = res
        b, f = res["bicubic"], res["final"]
        md.append(f"| {spec} | {len(pairs)} | {b['psnr']:.4f} | {b['ssim']:.4f} | {f['psnr']:.4f} | {f['ssim']:.4f} "
                  f"| {f['psnr'] - b['psnr']:+.3f} |")
    pairs = load_dataset(cfg.eval_data[0], scale, split="val")
    doc["crops"] = _write_crops(pairs, model, bicubic, scale, layout.crops, super_resolve, write_image)
    write_text(layout.metrics, json.dumps(doc, indent=1) + "\n")
    write_text(layout.metrics.with_suffix(".md"), "\n".join(md) + "\n\n" + "\n\n".join(tables) + "\n")
    return {k: {"bicubic": v["bicubic"]["psnr"], "final": v["final"]["psnr"]} for k, v in doc["datasets"].items()}


CROP_IMAGES = 3  # images of the first eval set shown in the report (each with CROPS windows)


def _write_crops(pairs: Any, model: torch.nn.Module, bicubic: torch.nn.Module, scale: int, folder: Path,
                 super_resolve, write_image, size: int = 128) -> list[dict]:
    """Per image (the first CROP_IMAGES): two windows with the most detail and the one where the model and
    bicubic differ most (srprune.crops), each as bicubic, final and ground-truth PNGs."""
    from srprune.crops import choose_crops

    out = []
    for n, pair in enumerate(list(pairs)[:CROP_IMAGES]):
        hr = pair.hr
        images = {"bicubic": super_resolve(bicubic, pair.lr), "final": super_resolve(model, pair.lr), "ground truth": hr}
        for k, crop in enumerate(choose_crops(hr, images["bicubic"], images["final"], size)):
            files = {}
            for name, img in images.items():
                path = folder / f"{n}-{k}-{name.replace(' ', '_')}.png"
                write_image(path, np.ascontiguousarray(img[crop.y:crop.y + crop.size, crop.x:crop.x + crop.size]))
                files[name] = str(path.name)
            out.append({"image": pair.name, "y": crop.y, "x": crop.x, "size": crop.size, "why": crop.why,
                        "files": files})
    return out


STAGE = Stage(
    name="evaluate",
    reads=("eval_data",),
    after=("finetune",),
    writes=lambda layout: [layout.eval],
    run=run,
    reads_model=True,
)
