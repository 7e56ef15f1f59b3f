"""After the search: fine-tune the winner, compile and measure it on the target, evaluate it.

- finetune: extract the chosen genome from the supernet (deployed), prune it gradually to its
  per-layer schemes and ratios while fine-tuning, distilling from the supernet's largest network;
  writes RUN/final/model.pt (an ordinary model file) and RUN/final/arch.json.
- deploy: compile it for the target with the numerics check (<= 1e-4 against PyTorch), write
  RUN/compiled/TARGET/, time the whole network (median of interleaved runs) and each layer alone,
  and record predicted vs measured in RUN/compiled/TARGET/latency.json.
- evaluate: PSNR-Y/SSIM-Y (project protocol) of the final model and bicubic on every eval dataset;
  RUN/eval/metrics.{json,md} plus crops for the report.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from srcommon.atomic import write_text
from srcommon.owned import OwnedFolder
from srprune.search.candidate import Candidate, extract_deployed, layer_breakdown, pruning_spec


def finetune_stage(cfg: dict[str, Any], run_dir: Path, chosen: dict[str, Any], *, progress: bool = True) -> dict:
    """Prune + fine-tune the chosen candidate; write final/model.pt and final/arch.json."""
    from srprune.data import PatchSampler, load_dataset
    from srprune.evaluate import mean_score, score_pairs
    from srprune.models.modelfile import save_model
    from srprune.pruning.finetune import FinetuneConfig, config_dict, finetune
    from srprune.pruning.pruner import Pruner
    from supernet.space import SearchSpace
    from supernet.train import supernet_from_checkpoint

    cand = Candidate.from_dict(chosen)
    scale = cand.genome.scale
    ckpt = run_dir / "supernet" / "checkpoint.pt"
    supernet = supernet_from_checkpoint(ckpt).eval()
    model = extract_deployed(supernet, cand.genome)
    teacher = extract_deployed(supernet, SearchSpace.from_dict(cfg["supernet"]["space"]).largest(scale))
    spec = pruning_spec({k: v for k, v in cand.prune.items() if v["ratio"] > 0})
    if not spec["layers"]:
        # A dense winner: the pruner's loop with a ratio-0 mask on one layer is plain fine-tuning.
        first = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and n != "head")
        spec = {"layers": {first: {"scheme": "unstructured", "ratio": 0.0}}}
    f = cfg["finetune"]
    fcfg = FinetuneConfig(steps=int(f["steps"]), batch_size=int(f["batch_size"]), patch_size=int(f["patch_size"]),
                          lr=float(f["lr"]), distill=float(f["distill"]), seed=int(f["seed"]))
    sampler = PatchSampler(load_dataset(cfg["data"], scale, split="train"), scale, fcfg.patch_size,
                           fcfg.batch_size, seed=fcfg.seed)
    val_pairs = load_dataset(cfg["val_data"], scale, split="val")
    before = mean_score(score_pairs(_masked(model, spec), val_pairs, scale))
    pruner = Pruner(model, spec)
    summary = finetune(pruner, sampler, fcfg, teacher=teacher if fcfg.distill > 0 else None, val_pairs=val_pairs,
                       scale=scale, progress=progress)
    pruned, pmeta = pruner.finalize()
    pruned.eval()
    val = summary["val"] or {}
    meta = {"search": {k: chosen[k] for k in ("proxy_psnr", "predicted_ms", "stage") if k in chosen},
            "candidate": cand.to_dict(), "pruning": pmeta,
            "finetune": {**config_dict(fcfg), "seconds": summary["seconds"], "final_loss": summary["loss"],
                         "teacher": "supernet largest"},
            "supernet": {"checkpoint": str(ckpt)},
            "val": {"data": cfg["val_data"], "before_finetune_psnr": before.psnr, "val_psnr": val.get("psnr"),
                    "val_ssim": val.get("ssim")}}
    out = run_dir / "final"
    out.mkdir(parents=True, exist_ok=True)
    save_model(out / "model.pt", pruned, meta=meta, force=True)
    write_text(out / "arch.json", json.dumps(cand.to_dict(), indent=1) + "\n")
    return {"val_psnr": val.get("psnr"), "val_ssim": val.get("ssim"), "before_finetune_psnr": before.psnr,
            "seconds": summary["seconds"]}


def _masked(model: torch.nn.Module, spec: dict) -> torch.nn.Module:
    """A copy with the final masks applied at once (what fine-tuning starts from, for the record)."""
    from srprune.pruning.pruner import copy_model
    from srprune.search.candidate import apply_masks

    m = copy_model(model)
    apply_masks(m, spec)
    return m.eval()


def deploy_stage(cfg: dict[str, Any], run_dir: Path, target: Any, out_hw: tuple[int, int], *, rounds: int = 25,
                 progress: bool = True) -> dict:
    """Compile final/model.pt for the target (numerics checked), write the artifact, measure its latency."""
    from compiler.artifact import write_artifact
    from compiler.build import compile_checked
    from compiler.latency.measure import build_layer, built_network, interleaved
    from srprune import __version__
    from srprune.data.cache import tuning_dir
    from srprune.latency import latency_prune, load_predictor, lr_size, make_runner, named_genome_layers
    from srprune.models.modelfile import load_model
    from srprune.progress import progress_bar
    from srprune.search.candidate import latency_ms

    model, info = load_model(run_dir / "final" / "model.pt")
    model.eval()
    cand = Candidate.from_dict(info["meta"]["candidate"])
    scale = cand.genome.scale
    h, w = lr_size(out_hw, scale)
    shape = (1, 3, h, w)
    compiled = compile_checked(model, shape, target, tuning_root=str(tuning_dir()))
    out = run_dir / "compiled" / target.name
    manifest = write_artifact(compiled, out, force=True,
                              meta={"model": "genome", "scale": scale, "config": model.arch["config"],
                                    "source": str(run_dir / "final" / "model.pt"), "output_size": [out_hw[1], out_hw[0]],
                                    "srprune": __version__})
    runner = make_runner(target, cfg["rpc"])
    predictor = load_predictor(run_dir, target.name, target.threads)
    net_timer = runner.timer(built_network(compiled))
    named = named_genome_layers(cand.genome, out_hw, latency_prune(cand.prune))
    modules = dict(model.named_modules())
    layer_timers = []
    for name, c in progress_bar(named, desc="layers", unit="layer", disable=not progress):
        # a pruned layer's sparse kernel is built from its weight: time the model's own
        weight = modules[name].weight.detach().numpy() if c.scheme != "dense" else None
        layer_timers.append(runner.timer(build_layer(c, target, weight=weight)))
    samples = interleaved([net_timer] + layer_timers, rounds)
    measured = statistics.median(samples[0])
    breakdown = layer_breakdown(predictor, cand, out_hw)
    for row, s in zip(breakdown, samples[1:]):
        row["measured_ms"] = statistics.median(s)
    budget = float(cfg["budget_ms"])
    result = {"target": target.name, "threads": target.threads, "output_size": [out_hw[1], out_hw[0]],
              "input_shape": list(shape), "budget_ms": budget, "predicted_ms": latency_ms(predictor, cand, out_hw),
              "measured_ms": measured, "min_ms": min(samples[0]), "max_ms": max(samples[0]),
              "samples_ms": samples[0], "rounds": rounds, "within_budget": measured <= budget,
              "budget_fill": measured / budget, "max_abs_diff": compiled.check["max_abs_diff"],
              "fused_convs": compiled.fused_convs, "library": manifest["library"], "layers": breakdown}
    write_text(OwnedFolder(out, "deploy").path("latency.json"), json.dumps(result, indent=1) + "\n")
    return result


def evaluate_stage(cfg: dict[str, Any], run_dir: Path, *, progress: bool = True) -> dict:
    """PSNR/SSIM of the final model and bicubic on every eval dataset; eval/metrics.{json,md} and crops."""
    from srprune.data import load_dataset
    from srprune.evaluate import format_table, mean_score, score_pairs, super_resolve
    from srprune.imageio import write_image
    from srprune.models import resolve_model
    from srprune.models.modelfile import load_model

    model, info = load_model(run_dir / "final" / "model.pt")
    model.eval()
    scale = int(model.arch["scale"])
    bicubic, _ = resolve_model("bicubic", scale)
    out = run_dir / "eval"
    (out / "crops").mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"scale": scale, "datasets": {}}
    md = [f"# Final model x{scale}: PSNR-Y / SSIM-Y (crop border {scale}, BT.601 Y, uint8 rounding)", "",
          "| dataset | images | bicubic PSNR | bicubic SSIM | final PSNR | final SSIM | gain dB |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    tables = []
    for spec in cfg["eval_data"]:
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
    pairs = load_dataset(cfg["eval_data"][0], scale, split="val")
    doc["crops"] = _write_crops(pairs[0], model, bicubic, scale, out / "crops", super_resolve, write_image)
    write_text(out / "metrics.json", json.dumps(doc, indent=1) + "\n")
    write_text(out / "metrics.md", "\n".join(md) + "\n\n" + "\n\n".join(tables) + "\n")
    return {k: {"bicubic": v["bicubic"]["psnr"], "final": v["final"]["psnr"]} for k, v in doc["datasets"].items()}


def _write_crops(pair: Any, model: torch.nn.Module, bicubic: torch.nn.Module, scale: int, folder: Path,
                 super_resolve, write_image, size: int = 128) -> dict[str, str]:
    """Same crop (the most textured window of the HR image) of bicubic, final and ground truth, as PNGs."""
    hr = pair.hr
    gray = hr.astype(np.float32).mean(axis=2)
    best, where = -1.0, (0, 0)
    step = max(size // 2, 8)
    for y in range(0, max(hr.shape[0] - size, 0) + 1, step):
        for x in range(0, max(hr.shape[1] - size, 0) + 1, step):
            v = float(gray[y:y + size, x:x + size].var())
            if v > best:
                best, where = v, (y, x)
    y, x = where
    files = {}
    for name, img in (("bicubic", super_resolve(bicubic, pair.lr)), ("final", super_resolve(model, pair.lr)),
                      ("ground truth", hr)):
        path = folder / f"{name.replace(' ', '_')}.png"
        write_image(path, np.ascontiguousarray(img[y:y + size, x:x + size]))
        files[name] = str(path.name)
    return {"image": pair.name, "y": y, "x": x, "size": size, "files": files}
