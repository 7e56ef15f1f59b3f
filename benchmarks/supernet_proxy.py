"""Stage-1 check: train the supernet briefly on the builtin images, then measure what stage 2 relies on.

1. Short sandwich training (builtin train split, x2 by default), resumable from WORK/supernet.pt.
2. Validation PSNR-Y (builtin val: astronaut, chelsea) of the largest and smallest sub-networks
   against MATLAB bicubic, with the project protocol (srprune.metrics).
3. Proxy rate: random genomes scored per minute with the shared weights on the val set.
4. Proxy quality: Spearman rank correlation between the proxy PSNR of N random genomes and their
   PSNR after separate fine-tuning (each extracted, then trained alone for --finetune-steps).

    .venv/bin/python benchmarks/supernet_proxy.py --work /tmp/sn --train-steps 1500 --genomes 20

Prints a summary and writes WORK/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from tqdm import tqdm

from srprune.data import PatchSampler, load_dataset
from srprune.imresize import imresize, to_uint8
from srprune.metrics import psnr
from supernet.complexity import genome_macs, genome_params
from supernet.model import SuperNet
from supernet.proxy import proxy_psnr
from supernet.space import SearchSpace
from supernet.standalone import extract
from supernet.train import train_supernet


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float().div(255.0)


def metric(sr: torch.Tensor, hr: torch.Tensor, crop: int) -> float:
    """srprune's protocol PSNR-Y (uint8 rounding, BT.601 Y, crop = scale)."""
    def u8(t):
        return (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return psnr(u8(sr), u8(hr), crop_border=crop)


def finetune(model: torch.nn.Module, sampler: PatchSampler, steps: int, lr: float) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    for _ in range(steps):
        lr_b, hr_b = next(sampler)
        loss = F.l1_loss(model(lr_b), hr_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--genomes", type=int, default=20)
    ap.add_argument("--finetune-steps", type=int, default=150)
    ap.add_argument("--finetune-lr", type=float, default=5e-4)
    ap.add_argument("--rate-genomes", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--space", type=str, default="{}", help="search space fields as JSON (default space otherwise)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    s = args.scale
    space = SearchSpace.from_dict({"scales": [s], **json.loads(args.space)})
    train_pairs = load_dataset("builtin", s, split="train")
    val_pairs = load_dataset("builtin", s, split="val")
    val = [(to_tensor(p.lr), to_tensor(p.hr)) for p in val_pairs]
    bicubic = statistics.mean(psnr(to_uint8(imresize(p.lr, scale=s)), p.hr, crop_border=s) for p in val_pairs)

    torch.manual_seed(args.seed)
    net = SuperNet(space)
    sampler = PatchSampler(train_pairs, s, args.patch, args.batch, seed=args.seed)
    ckpt = args.work / "supernet.pt"
    t0 = time.perf_counter()
    summary = train_supernet(net, sampler, args.train_steps, scale=s, lr=args.lr, seed=args.seed,
                             checkpoint=ckpt, checkpoint_every=100, resume=True, val_every=500,
                             validate=lambda n, g: proxy_psnr(n, g, val, metric=metric))
    train_s = time.perf_counter() - t0
    net.eval()
    big, small = space.largest(s), space.smallest(s)
    res = {"space": space.to_dict(), "train": {"steps": args.train_steps, "batch": args.batch, "patch": args.patch,
                                               "lr": args.lr, "seconds_this_call": round(train_s, 1),
                                               "threads": args.threads},
           "bicubic_psnr": bicubic,
           "largest": {"psnr": proxy_psnr(net, big, val, metric=metric), "params": genome_params(big),
                       "macs_720p": genome_macs(big), "genome": big.to_dict()},
           "smallest": {"psnr": proxy_psnr(net, small, val, metric=metric), "params": genome_params(small),
                        "macs_720p": genome_macs(small), "genome": small.to_dict()}}
    print(f"trained {summary['step']} steps ({train_s:.0f} s this call); bicubic {bicubic:.3f} dB, "
          f"largest {res['largest']['psnr']:.3f} dB, smallest {res['smallest']['psnr']:.3f} dB")

    rng = np.random.default_rng(args.seed + 1)
    rate_genomes = [space.sample(rng, s) for _ in range(args.rate_genomes)]
    t0 = time.perf_counter()
    for g in rate_genomes:
        proxy_psnr(net, g, val)
    rate = len(rate_genomes) / (time.perf_counter() - t0) * 60
    res["proxy_rate"] = {"genomes_per_minute": rate, "threads": args.threads,
                         "val": "builtin val (astronaut 512x512, chelsea 300x450 HR), full images"}
    print(f"proxy: {rate:.1f} genomes/min on {args.threads} thread(s)")

    genomes = [space.sample(rng, s) for _ in range(args.genomes)]
    rows = []
    for g in tqdm(genomes, desc="fine-tune"):
        proxy = proxy_psnr(net, g, val, metric=metric)
        model, _ = extract(net, g)
        ft_sampler = PatchSampler(train_pairs, s, args.patch, args.batch, seed=args.seed + 7)
        finetune(model, ft_sampler, args.finetune_steps, args.finetune_lr)
        with torch.no_grad():
            tuned = statistics.mean(metric(model(lr[None])[0], hr, s) for lr, hr in val)
        rows.append({"genome": g.to_dict(), "proxy_psnr": proxy, "finetuned_psnr": tuned,
                     "macs_720p": genome_macs(g), "params": genome_params(g)})
    rho = spearmanr([r["proxy_psnr"] for r in rows], [r["finetuned_psnr"] for r in rows]).statistic
    res["spearman"] = {"rho": float(rho), "genomes": len(rows), "finetune_steps": args.finetune_steps,
                       "finetune_lr": args.finetune_lr, "rows": rows}
    print(f"Spearman(proxy, fine-tuned) over {len(rows)} genomes: {rho:.3f}")
    tmp = args.work / ".results.json.tmp"
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, args.work / "results.json")


if __name__ == "__main__":
    main()
