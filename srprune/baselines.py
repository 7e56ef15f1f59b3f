"""Reference baselines: train reference models on scikit-image's photographs and compare them.

`srprune baselines` (and benchmarks/baselines.py): it trains
FSRCNN and the ECB-style model (ESPCN too when asked) at x2 on the `builtin` training split,
evaluates them and bicubic on the validation split by the benchmark protocol,
and writes RUN/eval/metrics.{json,md}. Each finished step is skipped on a
re-run; a killed training resumes from its checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from srcommon.atomic import write_text
from srprune.complexity import count_params, macs_for_output
from srprune.data import load_dataset
from srprune.evaluate import format_table, mean_score, score_pairs
from srprune.models import deploy, resolve_model
from srprune.models.modelfile import load_model
from srprune.train import CHECKPOINT, TrainConfig, train_model_file
from srcommon.progress import note

DEMO_MODELS = ("fsrcnn", "ecbsr")
# FSRCNN has no skip connection and needs about 3000 steps to pass bicubic here (docs/benchmarks.md).
DEMO_STEPS = 3000


def demo_config(steps: int, scale: int, seed: int, models: tuple[str, ...]) -> dict:
    """The resolved demo configuration (written to RUN/config.yaml)."""
    cfg = TrainConfig(steps=steps, batch_size=16, patch_size=32, lr=2e-3, seed=seed, val_every=max(steps // 4, 1))
    return {"scale": scale, "data": "builtin", "models": list(models), "train": asdict(cfg)}


def run_demo(out_dir: Path, steps: int = DEMO_STEPS, scale: int = 2, seed: int = 0, force: bool = False,
             models: tuple[str, ...] = DEMO_MODELS) -> dict:
    """Train and evaluate the baselines; return the metrics document."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = demo_config(steps, scale, seed, models)
    config_path = out_dir / "config.yaml"
    if config_path.exists() and not force and yaml.safe_load(config_path.read_text()) != config:
        note(f"note: {config_path} differs from this demo's settings; retraining (old results replaced)")
        force = True
    write_text(config_path, yaml.safe_dump(config, sort_keys=False))
    val_pairs = load_dataset("builtin", scale, split="val")
    results = {}
    specs = [("bicubic", None)] + [(name, out_dir / "train" / name) for name in models]
    for name, run in specs:
        started = time.perf_counter()
        if run is not None:
            done = (run / "model.pt").exists() and not force
            if not done:
                note(f"[demo] training {name} x{scale} for {steps} steps in {run}", stdout=True)
                cfg = TrainConfig(**{k: v for k, v in config["train"].items() if k != "extra"})
                train_model_file(name, scale, "builtin", "builtin", run, cfg,
                                 resume=(run / CHECKPOINT).exists() and not force, force=force)
            model, info = load_model(run / "model.pt")
            train_seconds = info["meta"]["train"]["seconds"]
        else:
            model, info = resolve_model(name, scale)
            train_seconds = 0.0
        deployed = deploy(model).eval()
        scores = score_pairs(deployed, val_pairs, scale)
        mean = mean_score(scores)
        results[name] = {"psnr": mean.psnr, "ssim": mean.ssim, "images": [asdict(s) for s in scores],
                         "params": count_params(deployed), "macs_720p": macs_for_output(deployed, scale),
                         "train_steps": 0 if run is None else steps, "train_seconds": train_seconds,
                         "eval_seconds": time.perf_counter() - started}
        note(f"[demo] {name:8s} PSNR-Y {mean.psnr:.4f} dB  SSIM-Y {mean.ssim:.4f}", stdout=True)
    doc = {"scale": scale, "data": "builtin (val split)", "config": config, "models": results}
    eval_dir = out_dir / "eval"
    eval_dir.mkdir(exist_ok=True)
    write_text(eval_dir / "metrics.json", json.dumps(doc, indent=2) + "\n")
    write_text(eval_dir / "metrics.md", metrics_markdown(doc))
    return doc


def metrics_markdown(doc: dict) -> str:
    """The demo's summary table plus per-image tables."""
    lines = [f"# Demo: reference models x{doc['scale']} on {doc['data']}", "",
             "| model | PSNR-Y (dB) | SSIM-Y | params | GMACs @720p | train steps | train s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in doc["models"].items():
        lines.append(f"| {name} | {r['psnr']:.4f} | {r['ssim']:.4f} | {r['params']:,} | {r['macs_720p'] / 1e9:.3f} "
                     f"| {r['train_steps']} | {r['train_seconds']:.0f} |")
    from srprune.evaluate import ImageScore

    for name, r in doc["models"].items():
        lines += ["", format_table([ImageScore(**s) for s in r["images"]], name)]
    return "\n".join(lines) + "\n"
