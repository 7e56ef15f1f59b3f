"""Training steps/s with the batches assembled in the training process vs in worker processes (`--workers`).

Runs the real training loop (srcommon.training.TrainLoop: Adam + cosine + L1, FSRCNN by default) on batches of
the real patch sampler, once per worker count, on the device given (`--device cpu` here; `cuda` on a GPU
machine, where the model step is fast and the sampler's share of each step is what workers remove). The
batches are the same for every worker count (tests/test_devices.py), so only the speed differs. Prints
steps/s (median of the repeats) and the speed-up over 0 workers; `--json` writes the figures.

    .venv/bin/python benchmarks/data_loading.py [--device cpu] [--workers 0,2,4] [--steps 60] [--repeats 3]
        [--model fsrcnn] [--batch 16] [--patch 48] [--threads N] [--json FILE]

Tiny check (seconds): --steps 3 --repeats 1 --batch 2 --patch 12 --workers 0,1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srcommon.devices import BatchPrefetcher, resolve_device  # noqa: E402
from srcommon.training import LoopSettings, TrainLoop  # noqa: E402


def steps_per_second(model_name: str, scale: int, sampler_args: tuple, workers: int, device: str, steps: int,
                     amp: str) -> float:
    """One timed training run of `steps` (after 3 warm-up steps that start the workers and the allocator)."""
    from srprune.data import PatchSampler
    from srprune.models import build_model

    torch.manual_seed(0)
    model = build_model(model_name, scale)
    pairs, patch, batch = sampler_args
    batches = BatchPrefetcher(PatchSampler(pairs, scale, patch, batch, seed=0), workers,
                              pin_memory=resolve_device(device).type == "cuda")
    loop = TrainLoop(model, LoopSettings(steps=steps + 3, lr=1e-3, device=device, amp=amp, seed=0))
    try:
        loop.run(batches, stop_after=3, progress=False)
        if loop.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loop.run(batches, progress=False)
        if loop.device.type == "cuda":
            torch.cuda.synchronize()
        return steps / (time.perf_counter() - t0)
    finally:
        batches.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="off")
    ap.add_argument("--workers", default="0,2,4", help="comma-separated worker counts (0 = no worker processes)")
    ap.add_argument("--model", default="fsrcnn")
    ap.add_argument("--dataset", default="builtin")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=48, help="LR patch side")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the training process")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from srprune.data import load_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    counts = [int(w) for w in args.workers.split(",")]
    pairs = load_dataset(args.dataset, args.scale, "train")
    device = resolve_device(args.device)
    print(f"{args.model} x{args.scale} on {device} (amp {args.amp}), batch {args.batch}, LR patch {args.patch}, "
          f"{args.steps} steps x {args.repeats} repeats, {torch.get_num_threads()} torch threads, "
          f"{len(pairs)} {args.dataset} images")
    results = {}
    for w in counts:
        runs = [steps_per_second(args.model, args.scale, (pairs, args.patch, args.batch), w, str(device), args.steps,
                                 args.amp) for _ in range(args.repeats)]
        results[w] = {"median": statistics.median(runs), "min": min(runs), "max": max(runs)}
        base = results[counts[0]]["median"]
        print(f"workers {w:>2}: {results[w]['median']:8.2f} steps/s (min {results[w]['min']:.2f}, "
              f"max {results[w]['max']:.2f})  x{results[w]['median'] / base:.2f} vs {counts[0]} workers", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "args": {k: str(v) for k, v in vars(args).items()},
                                         "steps_per_s": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
