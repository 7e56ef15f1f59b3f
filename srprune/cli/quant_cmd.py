"""`srprune quantize MODEL --calib DATA -o OUT`: int8 post-training quantisation, optionally + QAT."""

from __future__ import annotations

from pathlib import Path

import click

from srprune.cli.group import cli


@cli.command("quantize")
@click.argument("model")
@click.option("--calib", required=True, help="Calibration images: builtin (its train split) or a folder of images.")
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Quantised model file to write.")
@click.option("--scale", "-s", type=click.IntRange(2, 4), default=None,
              help="Upscaling factor (needed with an architecture name).")
@click.option("--precision", default="int8", show_default=True, help="Weights/activations: int8 (uint8 activations).")
@click.option("--method", default="minmax", show_default=True, help="Activation ranges: minmax | percentile.")
@click.option("--percentile", type=float, default=99.99, show_default=True, help="Percentile of --method percentile.")
@click.option("--calib-images", type=click.IntRange(1), default=32, show_default=True,
              help="Use at most this many calibration images.")
@click.option("--qat-steps", type=click.IntRange(0), default=0, show_default=True,
              help="Quantisation-aware fine-tuning steps after calibration (0: PTQ only).")
@click.option("--data", default="builtin", show_default=True, help="Training data for QAT.")
@click.option("--val-data", default="builtin", show_default=True, help="Validation data scored after quantising.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--patch-size", type=click.IntRange(4), default=32, show_default=True, help="LR patch side (QAT).")
@click.option("--lr", "learning_rate", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True)
@click.option("--distill", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Weight of L1 to the float model's output during QAT (0: off).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="torch threads (default: all cores).")
@click.option("--force", is_flag=True, help="Overwrite OUT (only a file srprune wrote).")
def quantize_cmd(model, calib, out, scale, precision, method, percentile, calib_images, qat_steps, data, val_data,
                 batch_size, patch_size, learning_rate, distill, seed, threads, force) -> None:
    """Quantise MODEL to int8 (docs/quantization.md): calibrate activation ranges on --calib, optionally
    fine-tune with fake quantisation (--qat-steps), write a model file that eval/upscale/info run with the
    integer arithmetic of the compiled kernels. A pruned model stays pruned (exact int8 zeros)."""
    import torch

    from srprune.outputs import check_output_file
    from srprune.quant.quantize import QuantConfig, quantize_model_file

    cfg = QuantConfig(precision=precision, method=method, percentile=percentile, calib_images=calib_images,
                      qat_steps=qat_steps, batch_size=batch_size, patch_size=patch_size, lr=learning_rate,
                      distill=distill, seed=seed).check()
    check_output_file(out, force)
    if threads:
        torch.set_num_threads(threads)
    path, meta = quantize_model_file(model, calib, out, cfg, scale=scale, data=data, val_data=val_data,
                                     force=force)
    val = meta.get("val")
    score = (f": val PSNR-Y {val['val_psnr']:.4f} dB (fp32 {val['fp32_psnr']:.4f} dB, "
             f"{val['val_psnr'] - val['fp32_psnr']:+.4f})" if val else "")
    q = meta["quantization"]
    click.echo(f"wrote {path}{score}; {q['precision']} {q['method']}, {q['calib_count']} calibration images, "
               f"{q['qat_steps']} QAT steps, {q['weight_bytes']:,} bytes of weights")
