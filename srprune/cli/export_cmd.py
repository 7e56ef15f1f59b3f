"""`srprune export MODEL --format onnx|pt2 -o FILE`: the deployed model as a standalone file for other runtimes."""

from __future__ import annotations

from pathlib import Path

import click

from srprune.cli.group import cli


@cli.command("export")
@click.argument("model")
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write (.onnx or .pt2).")
@click.option("--format", "fmt", type=click.Choice(["onnx", "pt2"]), default=None,
              help="onnx (opset 18) or pt2 (a torch.export ExportedProgram)  [default: from the suffix of OUT]")
@click.option("--scale", "-s", type=click.IntRange(2, 4), default=None,
              help="Upscaling factor (needed with an architecture name).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of untrained weights for a name.")
@click.option("--qdq-weights", type=click.Choice(["int8", "uint8"]), default=None,
              help="An int8 model's weights in the QDQ file: int8 (the standard form: XNNPACK, NNAPI, TensorRT) or "
                   "uint8 with zero point 128 (exact in ONNX Runtime on x86 CPUs without VNNI, where its int8 "
                   "weights saturate)  [default: int8]")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def export_cmd(model, out, fmt, scale, seed, qdq_weights, force) -> None:
    """Export MODEL's deployed form (re-parameterised, pruned as compiled) with free batch size, input height and width.

    The written file is loaded back (ONNX Runtime, or torch.export.load) and checked against PyTorch
    (max abs diff <= 1e-4) before it replaces anything. An int8 model (srprune quantize) is written as QDQ ONNX and
    checked against its integer path (one uint8 level on all but 0.1% of pixels, never more than 4).
    """
    from srprune.interchange import export_model

    done = export_model(model, out, fmt, scale=scale, seed=seed, force=force, qdq_weights=qdq_weights)
    click.echo(f"wrote {done.path} ({done.fmt}, {done.name} x{done.scale}, any batch, height and width): "
               f"max |diff| vs {done.against} {done.max_abs_diff:.2e} in {done.checked_with} at "
               f"{'x'.join(map(str, done.check_shape))}")
    if done.note:
        click.echo(f"note: {done.note}")
