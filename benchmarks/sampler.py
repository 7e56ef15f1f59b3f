"""Is training input-bound? Time the patch sampler against an FSRCNN-sized training step.

Typical config: x2, batch 16, LR patch 48, builtin train split. The sampler runs
in the training process (no worker processes), so its time per batch adds to
each step; it should be a small fraction of the step. Prints median/min/max
over repeats of both, batches/s and patches/s, and that fraction.

    .venv/bin/python benchmarks/sampler.py [--batch 16 --patch 48 --scale 2 --repeats 7 --iters 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn

from srprune.data import PatchSampler, load_dataset


def fsrcnn(scale: int, d: int = 56, s: int = 12, m: int = 4) -> nn.Module:
    """FSRCNN (Dong et al. 2016) layer shapes: feature, shrink, m maps, expand, deconvolution."""
    layers: list[nn.Module] = [nn.Conv2d(3, d, 5, padding=2), nn.PReLU(d), nn.Conv2d(d, s, 1), nn.PReLU(s)]
    for _ in range(m):
        layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
    layers += [nn.Conv2d(s, d, 1), nn.PReLU(d),
               nn.ConvTranspose2d(d, 3, 9, stride=scale, padding=4, output_padding=scale - 1)]
    return nn.Sequential(*layers)


def timed(fn: Callable[[], None], iters: int, repeats: int, warmup: int) -> list[float]:
    """Seconds per call, one figure per repeat of `iters` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        out.append((time.perf_counter() - t0) / iters)
    return out


def describe(label: str, secs: list[float], batch: int) -> None:
    med, lo, hi = statistics.median(secs), min(secs), max(secs)
    print(f"{label:<28} {med * 1e3:8.3f} ms/batch (min {lo * 1e3:.3f}, max {hi * 1e3:.3f})  "
          f"{1 / med:9.1f} batches/s  {batch / med:10.0f} patches/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="builtin")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=48, help="LR patch side")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--iters", type=int, default=10, help="train steps per repeat (sampler: 20x as many)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    pairs = load_dataset(args.dataset, args.scale, "train")
    print(f"loaded {len(pairs)} {args.dataset} train images x{args.scale} in {time.perf_counter() - t0:.2f} s; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, "
          f"LR patch {args.patch}, {args.repeats} repeats x {args.iters} iterations")
    sampler = PatchSampler(pairs, args.scale, args.patch, args.batch, seed=0)
    samp = timed(lambda: next(sampler), args.iters * 20, args.repeats, warmup=20)
    describe("sampler (augment)", samp, args.batch)

    torch.manual_seed(0)
    model = fsrcnn(args.scale)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lr_b, hr_b = next(sampler)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.l1_loss(model(lr_b), hr_b)
        loss.backward()
        opt.step()

    train = timed(step, args.iters, args.repeats, warmup=5)
    describe("FSRCNN train step (fwd+bwd)", train, args.batch)

    def both() -> None:
        nonlocal lr_b, hr_b
        lr_b, hr_b = next(sampler)
        step()

    combined = timed(both, args.iters, args.repeats, warmup=5)
    describe("sampler + train step", combined, args.batch)
    share = statistics.median(samp) / statistics.median(train)
    print(f"sampler time = {100 * share:.1f}% of an FSRCNN step: "
          f"{'not input-bound' if share < 0.1 else 'INPUT-BOUND'} at this config")


if __name__ == "__main__":
    main()
