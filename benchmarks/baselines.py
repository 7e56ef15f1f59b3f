"""Reference models vs bicubic on the built-in validation images, with their training budget.

Runs the demo (srprune.demo) into a run folder and records its table in
docs/benchmarks.md. Usage: python benchmarks/baselines.py [--steps N] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import machine, update_section  # noqa: E402
from srprune.baselines import run_demo  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-baselines"))
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--conditions", default="", help="one sentence on the machine's load during training, for the docs")
    args = ap.parse_args()
    doc = run_demo(args.out, steps=args.steps, force=args.force, models=("fsrcnn", "espcn", "ecbsr"))
    bic = doc["models"]["bicubic"]["psnr"]
    t = doc["config"]["train"]
    lines = ["## Reference models vs bicubic (built-in validation images, x2)", "",
             f"Machine: {machine()}. Command: `python benchmarks/baselines.py --steps {args.steps}`. {args.conditions}",
             f"Training budget per model: {t['steps']} steps of batch {t['batch_size']}, LR patch {t['patch_size']}, "
             f"Adam lr {t['lr']} with a cosine schedule, L1 loss, seed {t['seed']}, on the built-in training split.", "",
             "| model | PSNR-Y (dB) | vs bicubic (dB) | SSIM-Y | params | GMACs @720p | train time (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in doc["models"].items():
        lines.append(f"| {name} | {r['psnr']:.4f} | {r['psnr'] - bic:+.4f} | {r['ssim']:.4f} | {r['params']:,} "
                     f"| {r['macs_720p'] / 1e9:.3f} | {r['train_seconds']:.0f} |")
    text = "\n".join(lines)
    print(text)
    update_section("baselines", text)


if __name__ == "__main__":
    main()
