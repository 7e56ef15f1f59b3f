"""The single-model commands: train, eval, upscale, info."""

from __future__ import annotations

from pathlib import Path

import click

from srprune.cli.group import cli
from srprune.cli.placement import placement, placement_options
from srprune.errors import InputError

SCALE = click.option("--scale", "-s", type=click.IntRange(2, 4), default=None,
                     help="Upscaling factor (needed with an architecture name; checked against a model file).")
FORCE = click.option("--force", is_flag=True, help="Overwrite existing outputs.")


def _model(spec: str, scale: int | None):
    """Resolve MODEL (file or registered name) for inference: the deployed form."""
    from srprune.models import deploy, resolve_model

    model, info = resolve_model(spec, scale)
    return deploy(model).eval(), info


@cli.command("train")
@click.argument("model")
@SCALE
@click.option("--data", default="builtin", show_default=True, help="Training data: builtin, an HR folder or a DIV2K root.")
@click.option("--val-data", default="builtin", show_default=True, help="Validation data (builtin uses its val split).")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: checkpoint.pt, model.pt, train.log.")
@click.option("--steps", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--patch-size", type=click.IntRange(4), default=48, show_default=True, help="LR patch side.")
@click.option("--lr", "learning_rate", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-every", type=click.IntRange(1), default=250, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(1), default=100, show_default=True,
              help="Steps between resumable checkpoints.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch threads (default: all cores).")
@click.option("--resume", is_flag=True, help="Continue a killed run from its last checkpoint.")
@placement_options
@FORCE
def train_cmd(model, scale, data, val_data, out_dir, steps, batch_size, patch_size, learning_rate, seed,
              val_every, checkpoint_every, threads, resume, device, amp, workers, force) -> None:
    """Train MODEL (an architecture name with --scale, or a model file to fine-tune) with L1 loss."""
    import json

    from srprune.models.modelfile import load_model
    from srprune.outputs import check_output_folder
    from srprune.train import TrainConfig, train_model_file

    check_output_folder(out_dir)
    where = placement(device, amp, workers)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, patch_size=patch_size, lr=learning_rate, seed=seed,
                      val_every=val_every, checkpoint_every=checkpoint_every, threads=threads)
    final = train_model_file(model, scale, data, val_data, out_dir, cfg, resume=resume, force=force, where=where)
    _, info = load_model(final)
    val = info.get("meta", {}).get("val", {})
    click.echo(f"wrote {final}: val PSNR-Y {val.get('val_psnr', float('nan')):.4f} dB ({json.dumps(val)})")


@cli.command("eval")
@click.argument("model")
@SCALE
@click.option("--data", required=True, help="builtin, an HR folder, a benchmark set or a DIV2K root.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write scores as JSON.")
@click.option("--save-images", type=click.Path(file_okay=False, path_type=Path), help="Save SR outputs here.")
@FORCE
def eval_cmd(model, scale, data, json_path, save_images, force) -> None:
    """PSNR-Y/SSIM-Y of MODEL (or `bicubic`) per image and mean, by the benchmark protocol."""
    from srcommon.owned import OwnedFolder
    from srprune.data import load_dataset
    from srprune.evaluate import format_table, score_pairs, write_json
    from srprune.outputs import check_output_file, check_output_folder

    if json_path:
        check_output_file(json_path, force)
    if save_images:
        check_output_folder(save_images)
    net, _ = _model(model, scale)
    pairs = load_dataset(data, net.scale, split="val")
    if save_images:
        OwnedFolder.claim(save_images, "eval").reserve([f"{Path(p.name).stem}.png" for p in pairs], force)
    scores = score_pairs(net, pairs, net.scale, progress=True, save_dir=save_images)
    click.echo(format_table(scores, f"{model} x{net.scale} on {data}"))
    if json_path:
        write_json(json_path, scores, {"model": model, "scale": net.scale, "data": data})


@cli.command("upscale")
@click.argument("model")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@SCALE
@click.option("--tile", type=click.IntRange(0), default=256, show_default=True,
              help="LR tile side for bounded memory (0: whole image at once).")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Largest output image in pixels [default: from this machine's memory, or $SRPRUNE_MAX_PIXELS].")
@FORCE
def upscale_cmd(model, src, dst, scale, tile, max_pixels, force) -> None:
    """Upscale an image (or every image in a folder) with MODEL.

    Every input's size is checked from its header before any work: an output over the pixel limit is
    refused, and so is --tile 0 where the untiled feature maps would not fit.
    """
    from srcommon.owned import OwnedFolder
    from srprune.evaluate import to_image, to_tensor
    from srprune.imageio import image_size, is_image_file, pixel_limit, read_image, write_image
    from srprune.outputs import check_output_file, check_output_folder
    from srprune.upscale import check_memory, upscale_tensor

    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    if src.is_dir():
        check_output_folder(dst)
    else:
        check_output_file(dst, force)
    net, _ = _model(model, scale)
    if src.is_dir():
        jobs = [(p, dst / f"{p.stem}.png") for p in sorted(src.iterdir()) if is_image_file(p)]
        if not jobs:
            raise InputError(f"{src}: no images found")
    else:
        jobs = [(src, dst)]
    limit = max_pixels or pixel_limit()
    for inp, _ in jobs:
        h, w = image_size(inp)
        check_memory(str(inp), net, h, w, net.scale, tile, limit)
    if src.is_dir():  # outputs among other files: only srprune's own may be replaced
        OwnedFolder.claim(dst, "upscale").reserve([out.name for _, out in jobs], force)
    for inp, out in jobs:
        lr = read_image(inp, max_pixels=limit)
        sr = to_image(upscale_tensor(net, to_tensor(lr), net.scale, tile=tile))
        write_image(out, sr, force=True)
        click.echo(f"{inp} ({lr.shape[1]}x{lr.shape[0]}) -> {out} ({sr.shape[1]}x{sr.shape[0]})")


@cli.command("info")
@click.argument("model")
@SCALE
@click.option("--size", default="1280x720", show_default=True, help="Output size WxH for MACs.")
def info_cmd(model, scale, size) -> None:
    """Architecture, parameters and MACs per frame of MODEL."""
    import json

    from srprune.complexity import count_params, macs_for_output
    from srprune.models import deploy, resolve_model

    from srprune.frame import parse_size

    w, h = parse_size(size)
    out_hw = (h, w)
    from srprune.quant.info import quant_info

    net, info = resolve_model(model, scale)
    deployed = deploy(net)
    quant = quant_info(deployed, out_hw)  # None for a float model
    macs = quant["macs"] if quant else macs_for_output(deployed, net.scale, out_hw)
    arch = getattr(net, "arch", {})
    click.echo(f"model:      {model}")
    click.echo(f"arch:       {arch.get('name', type(net).__name__)} x{net.scale} {arch.get('config', {})}"
               if not quant else f"arch:       {quant['arch']}")
    params = quant["params"] if quant else count_params(deployed)
    click.echo(f"params:     {params:,} (deployed form)")
    click.echo(f"weights:    {quant['bytes'] if quant else 4 * params:,} bytes "
               f"({quant['precision'] if quant else 'float32'})")
    click.echo(f"MACs:       {macs / 1e9:.3f} G per {out_hw[1]}x{out_hw[0]} output frame")
    for line in (quant or {}).get("layers", []):
        click.echo(f"  {line}")
    click.echo(f"source:     {info.source}" + (f" ({info.path})" if info.path else " (untrained weights)"))
    if info.meta:
        click.echo(f"meta:       {json.dumps(info.meta)}")
