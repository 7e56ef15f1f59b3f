"""Accuracy of the four pruning schemes at 50% and 75% against the dense model, same fine-tuning budget.

Trains a dense ECBSR (training form) on the built-in images, deploys it, then from the same
deployed weights runs (a) dense fine-tuning and (b) pruning + fine-tuning for every scheme and
ratio with the same step budget, and scores all on the built-in validation images (PSNR-Y/SSIM-Y,
protocol of srprune.evaluate). Writes the table to docs/benchmarks.md (section pruning_accuracy).

    .venv/bin/python benchmarks/pruning_accuracy.py                 # the recorded budget (~15 min, 1 thread)
    .venv/bin/python benchmarks/pruning_accuracy.py --dense-model /tmp/dense.pt   # keep/reuse the dense model
    .venv/bin/python benchmarks/pruning_accuracy.py --dense-steps 50 --steps 20 --no-doc   # smoke run

Budget (recorded run): dense ECBSR-M4C16 x2, 2000 steps (~8 min), then 11 runs of 1000 steps (~10 min).
With 500 fine-tuning steps 50% block 4x8 lost 0.21-0.28 dB against dense+FT (not the <= 0.15 dB target).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import machine, update_section  # noqa: E402
from srprune.data import PatchSampler, load_dataset  # noqa: E402
from srprune.evaluate import mean_score, score_pairs  # noqa: E402
from srprune.models.modelfile import load_model, save_model  # noqa: E402
from srprune.models.registry import build_model, deploy  # noqa: E402
from srprune.pruning import FinetuneConfig, prune_model  # noqa: E402
from srprune.train import TrainConfig, train  # noqa: E402
from srcommon.owned import OwnedFolder  # noqa: E402


def specs(ratio: float, blocks: list[tuple[int, int]], schemes: list[str]) -> dict[str, dict]:
    """One spec per scheme (and block size) at `ratio` (pattern entries = ceil(9 * (1 - ratio)))."""
    out = {"unstructured": {"scheme": "unstructured", "ratio": ratio}}
    for rows, cols in blocks:
        out[f"block {rows}x{cols}"] = {"scheme": "block", "ratio": ratio, "block": [rows, cols]}
    out["pattern"] = {"scheme": "pattern", "ratio": ratio}
    out["channel"] = {"scheme": "channel", "ratio": ratio}
    return {k: v for k, v in out.items() if v["scheme"] in schemes}


def conv_weights(model: nn.Module) -> tuple[int, int]:
    """(nonzero, total) conv weights of a deployed model."""
    nz = total = 0
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            nz += int(torch.count_nonzero(mod.weight))
            total += mod.weight.numel()
    return nz, total


def main(argv: list[str] | None = None) -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--dense-steps", type=int, default=2000, help="training steps of the dense baseline")
    ap.add_argument("--steps", type=int, default=1000, help="fine-tuning steps of every variant (dense included)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared 2-core machine")
    ap.add_argument("--distill", type=float, default=0.0)
    ap.add_argument("--ratios", default="0.5,0.75")
    ap.add_argument("--work", type=Path, default=Path("/tmp/srprune-pruning-bench"))
    ap.add_argument("--dense-model", type=Path, default=None,
                    help="reuse this dense model file if it exists (else train and save it there)")
    ap.add_argument("--schemes", default="unstructured,block,pattern,channel", help="subset to run")
    ap.add_argument("--block", default="4x8,2x8", help="block sizes ROWSxCOLS of the block scheme, comma-separated")
    ap.add_argument("--prune-steps", type=int, default=None, help="gradual phase length (default: half)")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    train_pairs = load_dataset("builtin", args.scale, split="train")
    val_pairs = load_dataset("builtin", args.scale, split="val")

    def sampler(seed: int) -> PatchSampler:
        return PatchSampler(train_pairs, args.scale, args.patch_size, args.batch_size, seed=seed)

    if args.dense_model is not None and args.dense_model.exists():
        reused = True
        net, info = load_model(args.dense_model)
        args.dense_steps = info["meta"].get("train", {}).get("steps", "?")
        print(f"reusing dense model {args.dense_model} ({args.dense_steps} training steps)", flush=True)
    else:
        reused = False
        torch.manual_seed(0)
        net = build_model("ecbsr", args.scale, blocks=args.blocks, width=args.width)
        tcfg = TrainConfig(steps=args.dense_steps, batch_size=args.batch_size, patch_size=args.patch_size,
                           lr=1e-3, seed=0, val_every=args.dense_steps, checkpoint_every=args.dense_steps,
                           threads=args.threads)
        # only what an earlier run of this benchmark wrote there is removed (args.work is the user's folder)
        OwnedFolder.claim(args.work / "dense", "benchmarks/pruning_accuracy", force=True)
        train(net, sampler(0), val_pairs, args.scale, tcfg, args.work / "dense")
        if args.dense_model is not None:
            save_model(args.dense_model, net, meta={"train": {"steps": args.dense_steps}}, force=True)
    dense = deploy(net).eval()
    base = mean_score(score_pairs(dense, val_pairs, args.scale))
    print(f"dense after {args.dense_steps} steps: {base.psnr:.4f} dB / {base.ssim:.4f}", flush=True)

    ft = dict(steps=args.steps, batch_size=args.batch_size, patch_size=args.patch_size, lr=5e-4,
              distill=args.distill, seed=1, threads=args.threads, prune_steps=args.prune_steps)
    blocks = [tuple(int(b) for b in size.split("x")) for size in args.block.split(",")]
    rows = []
    # Dense reference: the same fine-tuning budget with a spec that prunes nothing.
    ref_model, _ = prune_model(dense, {"scheme": "unstructured", "ratio": 0.0}, FinetuneConfig(**ft), sampler(1))
    ref = mean_score(score_pairs(ref_model, val_pairs, args.scale))
    nz, total = conv_weights(ref_model)
    rows.append(("dense + same FT", "-", ref.psnr, ref.ssim, nz / total, "none"))
    print(f"dense fine-tuned: {ref.psnr:.4f} dB", flush=True)
    for ratio in [float(r) for r in args.ratios.split(",")]:
        for label, spec in specs(ratio, blocks, args.schemes.split(",")).items():
            model, meta = prune_model(dense, spec, FinetuneConfig(**ft), sampler(1))
            s = mean_score(score_pairs(model, val_pairs, args.scale))
            nz, _ = conv_weights(model)
            layers = ", ".join(n.replace(".conv", "") for n in meta["layers"])
            rows.append((label, f"{ratio:.2f}", s.psnr, s.ssim, nz / total, layers))
            print(f"{label} {ratio}: {s.psnr:.4f} dB ({s.psnr - ref.psnr:+.4f}), kept {nz / total:.3f}", flush=True)

    minutes = (time.perf_counter() - started) / 60
    phase = args.steps // 2 if args.prune_steps is None else args.prune_steps
    flags = " ".join(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--no-doc")
    lines = [
        "## Pruning schemes: accuracy at the same fine-tuning budget",
        "",
        f"ECBSR-M{args.blocks}C{args.width} x{args.scale}, trained dense for {args.dense_steps} steps "
        f"(batch {args.batch_size}, LR patch {args.patch_size}, L1, Adam 1e-3 cosine) on the built-in training "
        f"images, deployed, then every row fine-tuned for {args.steps} steps (Adam 5e-4 cosine; pruned rows: "
        f"gradual cubic pruning over the first {phase} steps, masks fixed after; distillation weight "
        f"{args.distill}). "
        "PSNR-Y/SSIM-Y on the built-in validation images (MATLAB bicubic LR, crop = scale). "
        "`kept` = nonzero conv weights / dense conv weights (channel pruning also removes the next layer's inputs). "
        "A default block spec leaves layers it does not tile dense (the 16x27 head); default channel pruning "
        "leaves the tail (pinned by the skip and PixelShuffle).",
        "",
        f"Machine: {machine(args.threads)}; whole run {minutes:.1f} min"
        + (" (dense model reused from an earlier run of this script with the same settings; its training "
           "is not counted)" if reused else "") + ". "
        f"Command: `.venv/bin/python benchmarks/pruning_accuracy.py{' ' + flags if flags else ''}`.",
        "",
        "`vs dense`: against the dense model as trained (before the extra steps); `vs dense+FT`: against the "
        "dense model given the same extra fine-tuning steps (the stricter comparison, since the small dense "
        "model is still improving).",
        "",
        "| scheme | ratio | PSNR-Y (dB) | vs dense (dB) | vs dense+FT (dB) | SSIM-Y | kept | pruned layers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| dense (as trained) | - | {base.psnr:.4f} | +0.0000 | {base.psnr - ref.psnr:+.4f} | {base.ssim:.4f} "
        f"| 1.000 | none |",
    ]
    for label, ratio, p, s, kept, layers in rows:
        lines.append(f"| {label} | {ratio} | {p:.4f} | {p - base.psnr:+.4f} | {p - ref.psnr:+.4f} | {s:.4f} "
                     f"| {kept:.3f} | {layers} |")
    block50 = [(label, p) for label, ratio, p, *_ in rows if label.startswith("block") and ratio == "0.50"]
    if block50:
        lines += ["", "Target (issue 6), 50% block sparsity loses <= 0.15 dB PSNR-Y:"]
    for label, p in block50:
        lost = [base.psnr - p, ref.psnr - p]
        verdict = ["met" if x <= 0.15 else "NOT met" for x in lost]
        lines.append(f"- {label}: {lost[0]:.3f} dB lost vs the dense model ({verdict[0]}), {lost[1]:.3f} dB vs "
                     f"the dense model fine-tuned as long ({verdict[1]}).")
    md = "\n".join(lines)
    print(md)
    if not args.no_doc:
        update_section("pruning_accuracy", md)


if __name__ == "__main__":
    main()
