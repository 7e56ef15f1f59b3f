"""`srprune prune MODEL --spec SPEC -o OUT`: prune + fine-tune a model into an ordinary model file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from srprune.cli.group import cli
from srprune.cli.placement import placement, placement_options
from srprune.errors import InputError


@cli.command("prune")
@click.argument("model")
@click.option("--spec", "spec_text", default=None,
              help="Pruning spec: a .json/.yaml file or inline JSON/YAML, e.g. "
                   "'{\"scheme\": \"block\", \"ratio\": 0.5, \"block\": [4, 8]}' (see srprune.pruning.spec).")
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Model file to write.")
@click.option("--list", "list_layers", is_flag=True, help="List the prunable layers of MODEL and exit.")
@click.option("--scale", "-s", type=click.IntRange(2, 4), default=None,
              help="Upscaling factor (needed with an architecture name).")
@click.option("--steps", type=click.IntRange(0), default=500, show_default=True,
              help="Pruning + fine-tuning steps (0: prune once, no training).")
@click.option("--prune-steps", type=click.IntRange(0), default=None,
              help="Steps of the gradual pruning phase (default: half of --steps; 0: prune at once).")
@click.option("--distill", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Weight of distillation from the dense model (0: off).")
@click.option("--group-lasso", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Weight of a group-lasso penalty on the pruning units during gradual pruning (0: off).")
@click.option("--data", default="builtin", show_default=True, help="Training data for fine-tuning.")
@click.option("--val-data", default="builtin", show_default=True, help="Validation data scored after pruning.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--patch-size", type=click.IntRange(4), default=32, show_default=True, help="LR patch side.")
@click.option("--lr", "learning_rate", type=click.FloatRange(0, min_open=True), default=5e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="torch threads (default: all cores).")
@placement_options
@click.option("--force", is_flag=True, help="Overwrite OUT.")
def prune_cmd(model, spec_text, out, list_layers, scale, steps, prune_steps, distill, group_lasso, data, val_data,
              batch_size, patch_size, learning_rate, seed, threads, device, amp, workers, force) -> None:
    """Prune MODEL (a model file, or an architecture name with --scale) by SPEC and fine-tune it.

    Layers are named as in the deployed model (see --list). The result is an ordinary model file
    (eval, info and upscale take it like any other); its meta records the spec and per-layer structure.
    """
    from srprune.models.registry import deploy
    from srprune.models.resolve import resolve_model
    from srprune.outputs import check_output_file
    from srprune.pruning import FinetuneConfig, format_layers, load_spec, prunable_layers, prune_model_file

    if list_layers:
        net, _ = resolve_model(model, scale)
        click.echo(format_layers(prunable_layers(deploy(net).eval())))
        return
    if spec_text is None:
        raise InputError("--spec is required (or use --list to see the layers)")
    if out is None:
        raise InputError("--out is required")
    check_output_file(out, force)
    where = placement(device, amp, workers)
    spec = load_spec(spec_text)
    cfg = FinetuneConfig(steps=steps, batch_size=batch_size, patch_size=patch_size, lr=learning_rate,
                         prune_steps=prune_steps, distill=distill, group_lasso=group_lasso, seed=seed,
                         threads=threads)
    path, meta = prune_model_file(model, spec, out, cfg, scale=scale, data=data, val_data=val_data, force=force,
                                  where=where)
    layers = meta["pruning"]["layers"]
    for name, entry in layers.items():
        shape = "x".join(str(d) for d in entry["shape"])
        click.echo(f"{name:<24} {entry['scheme']:<12} ratio {entry['ratio']:.3f}  weight {shape:<12} "
                   f"zeros {entry['sparsity']:.3f}")
    val = meta.get("val")
    score = f": val PSNR-Y {val['val_psnr']:.4f} dB, SSIM-Y {val['val_ssim']:.4f}" if val else ""
    click.echo(f"wrote {path}{score} ({len(layers)} layers pruned; spec {json.dumps(meta['pruning']['spec'])})")
