"""PSNR/SSIM evaluation of a model on image pairs, following the benchmark protocol.

The SR output is clamped, rounded to uint8 and then compared with the HR
image on the Y channel with crop_border = scale (srprune.metrics).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from srcommon.progress import progress_bar

from srcommon.atomic import write_text
from srcommon.metrics import to_uint8_image
from srprune.errors import InputError
from srprune.metrics import psnr, ssim


@dataclass
class ImageScore:
    """PSNR/SSIM of one image (Y channel unless stated otherwise)."""

    name: str
    psnr: float
    ssim: float


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """RGB uint8 HxWx3 -> float32 1x3xHxW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div_(255.0)


def to_image(x: torch.Tensor) -> np.ndarray:
    """float 1x3xHxW in [0, 1] -> RGB uint8 HxWx3, rounded as the protocol stores SR results (the rounding's one
    home is srcommon.metrics, which the supernet's proxy PSNR uses too)."""
    return to_uint8_image(x[0])


@torch.no_grad()
def super_resolve(model: nn.Module, lr: np.ndarray) -> np.ndarray:
    """Run the model on one LR image and return the rounded uint8 SR image."""
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device  # a model training on a GPU is validated there
    return to_image(model(to_tensor(lr).to(device)).cpu())


def score_pairs(model: nn.Module, pairs: Sequence, scale: int, progress: bool = False,
                save_dir: str | os.PathLike | None = None) -> list[ImageScore]:
    """Score a model on pairs with `.name`, `.lr` and `.hr` (uint8 RGB); optionally save SR images."""
    from srprune.imageio import write_image

    scores = []
    for pair in progress_bar(pairs, desc="eval", unit="img", disable=not progress):
        sr = super_resolve(model, pair.lr)
        if sr.shape != pair.hr.shape:
            raise InputError(f"{pair.name}: model output {sr.shape[1]}x{sr.shape[0]} does not match HR "
                             f"{pair.hr.shape[1]}x{pair.hr.shape[0]} (is the model for x{scale}?)")
        scores.append(ImageScore(pair.name, psnr(sr, pair.hr, scale), ssim(sr, pair.hr, scale)))
        if save_dir is not None:
            write_image(Path(save_dir) / f"{Path(pair.name).stem}.png", sr, force=True)
    return scores


def mean_score(scores: Iterable[ImageScore]) -> ImageScore:
    """Mean PSNR and SSIM over images (the literature averages per image, not over pixels)."""
    scores = list(scores)
    if not scores:
        raise InputError("no images to evaluate")
    finite = [s.psnr for s in scores if math.isfinite(s.psnr)]
    return ImageScore("mean", float(np.mean(finite)) if finite else math.inf,
                      float(np.mean([s.ssim for s in scores])))


def format_table(scores: Sequence[ImageScore], title: str = "") -> str:
    """A Markdown table of per-image scores followed by the mean."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| image | PSNR-Y (dB) | SSIM-Y |", "| --- | ---: | ---: |"]
    for s in list(scores) + [mean_score(scores)]:
        name = f"**{s.name}**" if s.name == "mean" else s.name
        lines.append(f"| {name} | {s.psnr:.4f} | {s.ssim:.4f} |")
    return "\n".join(lines) + "\n"


def write_json(path: str | os.PathLike, scores: Sequence[ImageScore], extra: dict | None = None) -> None:
    """Write {images: [{name, psnr, ssim}], mean: {...}, ...extra} atomically."""
    doc = {"images": [asdict(s) for s in scores], "mean": asdict(mean_score(scores))}
    doc.update(extra or {})
    write_text(path, json.dumps(doc, indent=2) + "\n")
