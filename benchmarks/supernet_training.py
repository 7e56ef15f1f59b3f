"""Stage-1 check of the supernet training: do its largest and smallest sub-networks beat bicubic?

Reads a finished `srprune supernet train` run (e.g. from configs/supernet-demo.yaml), extracts the
largest and smallest sub-networks as standalone models, deploys them (plain convs) and measures
PSNR-Y/SSIM-Y on the built-in validation images with srprune's protocol, against MATLAB bicubic.
The validation curve logged during training and the wall time of the run are reported too.

    .venv/bin/srprune supernet train -c configs/supernet-demo.yaml --threads 1
    .venv/bin/python benchmarks/supernet_training.py --run runs/supernet-demo --config configs/supernet-demo.yaml \
        --threads 1 [--note "..."] [--no-doc]

Prints a summary and writes the docs/benchmarks.md section `supernet_training`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, update_section  # noqa: E402
from srprune.data import load_dataset  # noqa: E402
from srprune.evaluate import to_image, to_tensor  # noqa: E402
from srprune.imresize import imresize, to_uint8  # noqa: E402
from srprune.metrics import psnr, ssim  # noqa: E402
from supernet.complexity import genome_macs, genome_params  # noqa: E402
from supernet.standalone import extract  # noqa: E402
from supernet.train import load_checkpoint, supernet_from_checkpoint  # noqa: E402


def scores(outputs: list, pairs: list, scale: int) -> tuple[float, float]:
    """Mean PSNR-Y and SSIM-Y of uint8 outputs against the HR images."""
    p = statistics.mean(psnr(o, x.hr, crop_border=scale) for o, x in zip(outputs, pairs))
    s = statistics.mean(ssim(o, x.hr, crop_border=scale) for o, x in zip(outputs, pairs))
    return p, s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="run folder holding supernet/checkpoint.pt")
    ap.add_argument("--config", type=str, default="configs/supernet-demo.yaml", help="config it was trained with")
    ap.add_argument("--threads", type=int, required=True, help="torch threads the training used")
    ap.add_argument("--note", type=str, default="", help="conditions of the run (load, interruptions)")
    ap.add_argument("--compare", type=Path, default=None,
                    help="a second finished run of the same config with one setting changed (e.g. sort_every: 0)")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    state, summary, rows, history = evaluate_run(args.run)
    settings, space = state["settings"], state["space"]
    bic = rows["bicubic"][0]
    for kind in ("largest", "smallest"):
        print(f"{kind}: PSNR-Y {rows[kind][0]:.3f} dB ({rows[kind][0] - bic:+.3f} vs bicubic {bic:.3f})")
    md = report(args, settings, space, summary, rows, history)
    if args.compare is not None:
        md += "\n\n" + compare_report(args, settings, rows, history, *evaluate_run(args.compare))
    if not args.no_doc:
        update_section("supernet_training", md)


def evaluate_run(run: Path) -> tuple[dict, dict, dict, list]:
    """(checkpoint state, summary, PSNR/SSIM rows of bicubic/largest/smallest, logged validation curve)."""
    ckpt = run / "supernet" / "checkpoint.pt"
    state = load_checkpoint(ckpt)
    settings = state["settings"]
    if state["step"] < settings["steps"]:
        raise SystemExit(f"{ckpt}: training not finished (step {state['step']} of {settings['steps']})")
    summary = json.loads((run / "supernet" / "summary.json").read_text())
    net = supernet_from_checkpoint(ckpt).eval()
    s = int(settings["scale"])
    pairs = load_dataset("builtin", s, split="val")
    rows = {"bicubic": scores([to_uint8(imresize(p.lr, scale=s)) for p in pairs], pairs, s) + (None, None)}
    for kind, genome in (("largest", net.space.largest(s)), ("smallest", net.space.smallest(s))):
        model = extract(net, genome)[0].deploy().eval()
        with torch.no_grad():
            outs = [to_image(model(to_tensor(p.lr))) for p in pairs]
        rows[kind] = scores(outs, pairs, s) + (genome_params(genome), genome_macs(genome))
        rows[kind + "_genome"] = genome.to_json()
    history = [h for h in json.loads(state["history"]) if "val_largest" in h]
    return state, summary, rows, history


def compare_report(args, settings: dict, rows: dict, history: list, other_state: dict, other_summary: dict,
                   other_rows: dict, other_history: list) -> str:
    """A table of the two runs side by side (same config but the settings that differ)."""
    other = other_state["settings"]
    diff = ", ".join(f"{k}: {settings.get(k)} vs {other.get(k)}" for k in sorted(set(settings) | set(other))
                     if settings.get(k) != other.get(k)) or "none"
    lines = [f"Ablation: this run vs `{args.compare}` (settings that differ: {diff}; wall time "
             f"{other_summary['seconds_last_call'] / 60:.1f} min; with other step counts the cosine lr schedules "
             "differ, so equal steps are not equal stages of training). PSNR-Y (dB), - where a run has no such step:", "",
             "| step | largest | smallest | largest (other) | smallest (other) |", "| ---: | ---: | ---: | ---: | ---: |"]
    theirs = {h["step"]: h for h in other_history}
    for h in history:
        o = theirs.get(h["step"], {})
        theirs_text = " | ".join(f"{o[k]:.3f}" if k in o else "-" for k in ("val_largest", "val_smallest"))
        lines.append(f"| {h['step']} | {h['val_largest']:.3f} | {h['val_smallest']:.3f} | {theirs_text} |")
    lines.append(f"| final, deployed | {rows['largest'][0]:.3f} | {rows['smallest'][0]:.3f} | "
                 f"{other_rows['largest'][0]:.3f} | {other_rows['smallest'][0]:.3f} |")
    return "\n".join(lines)


def report(args, settings: dict, space: dict, summary: dict, rows: dict, history: list) -> str:
    """The docs/benchmarks.md section."""
    from srprune.cli.supernet_cmd import read_config

    train = read_config(Path(args.config))["train"]
    batch, patch = train["batch_size"], train["patch_size"]
    bic = rows["bicubic"][0]
    minutes = summary["seconds_last_call"] / 60
    lines = [
        "## Supernet training: largest and smallest sub-networks vs bicubic",
        "",
        f"Config `{args.config}`: space {space['num_cells']} cells, widths {space['widths']}, blocks "
        f"{', '.join(space['blocks'])}, {space['activation']}, x{settings['scale']}. Budget: **{settings['steps']} "
        f"sandwich steps** (largest + smallest + {settings['num_random']} random sub-networks per step, in-place "
        f"distillation weight {settings['kd_weight']}, Adam lr {settings['lr']:g} cosine to x{settings['min_lr_ratio']:g}, "
        + (f"channels sorted by importance every {settings['sort_every']} steps" if settings.get("sort_every")
           else "no channel sorting") + f"), batches of {batch} "
        f"LR patches of {patch}x{patch} px from the built-in training images; seed {settings['seed']}.",
        "",
        f"Machine: {machine(args.threads)}. Training wall time: **{minutes:.1f} min with {args.threads} torch thread(s)**"
        + (f" ({args.note})" if args.note else "") + ".",
        f"Command: `.venv/bin/srprune supernet train -c {args.config} --threads {args.threads}`, then "
        f"`.venv/bin/python benchmarks/supernet_training.py --run {args.run} --config {args.config} "
        f"--threads {args.threads}`.",
        "",
        "Built-in validation images (astronaut, chelsea), x2, PSNR-Y/SSIM-Y with the project protocol; each "
        "sub-network extracted as a standalone model and deployed (plain convs):",
        "",
        "| network | params | GMACs (720p out) | PSNR-Y (dB) | vs bicubic (dB) | SSIM-Y |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| bicubic (MATLAB) | - | - | {bic:.3f} | +0.000 | {rows['bicubic'][1]:.4f} |",
    ]
    for kind in ("largest", "smallest"):
        p, ss, params, macs = rows[kind]
        lines.append(f"| {kind} sub-network | {params:,} | {macs / 1e9:.2f} | {p:.3f} | {p - bic:+.3f} | {ss:.4f} |")
    lines += ["", f"Largest: `{rows['largest_genome']}`", "", f"Smallest: `{rows['smallest_genome']}`", "",
              "Validation during training (proxy PSNR-Y with the shared weights):", "",
              "| step | largest (dB) | smallest (dB) |", "| ---: | ---: | ---: |"]
    lines += [f"| {h['step']} | {h['val_largest']:.3f} | {h['val_smallest']:.3f} |" for h in history]
    both = rows["largest"][0] > bic and rows["smallest"][0] > bic
    lines += ["", f"Goal (issue 3): both beat bicubic: {'met' if both else 'not met'}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
