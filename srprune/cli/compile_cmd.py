"""`srprune compile MODEL --target T -o DIR` and `srprune bench MODEL --target host --size WxH`.

Both compile the model's deployed form for one fixed frame size: `--size` is the OUTPUT frame
(default 1280x720 rounded down to a multiple of the scale), the input is size / scale; a size that
is not a multiple of the scale is refused before any work (srprune.frame).
"""

from __future__ import annotations

from pathlib import Path

import click

from srprune.cli import cli
from srprune.errors import InputError
from srprune.frame import default_frame, input_size, parse_size

SIZE_HELP = "Output frame size WIDTHxHEIGHT, a multiple of the scale  [default: 1280x720, rounded down to one]"


def _frame(size: tuple[int, int] | None, scale: int, colors: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """(output frame, input shape NCHW) of a parsed --size (None: the default frame of `scale`)."""
    frame = size or default_frame(scale)
    w, h = input_size(frame, scale)
    return frame, (1, colors, h, w)


def tuning_root() -> Path:
    """Where MetaSchedule databases live: the srprune cache, shared by every run and model."""
    from srprune.data.cache import tuning_dir

    return tuning_dir()


def _load(model: str, scale: int | None, seed: int):
    from srprune.models import deploy, resolve_model

    net, info = resolve_model(model, scale, seed=seed)
    net = deploy(net).eval()
    colors = int((info.config or {}).get("colors", 3))
    return net, info, colors


@cli.command("compile")
@click.argument("model")
@click.option("--target", "-t", "target", default="host", show_default=True,
              help="host, linux-arm64, android-arm64, android-arm64-fp16 or android-arm64-dotprod.")
@click.option("--out", "-o", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write (model.so + manifest.json); must not exist unless --force.")
@click.option("--scale", "-s", type=click.IntRange(2, 4), default=None,
              help="Upscaling factor (needed with an architecture name).")
@click.option("--size", default=None, help=SIZE_HELP)
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads at run time (default: all cores "
              "for host, 4 for arm64).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of untrained weights for a name.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--format", "fmt", type=click.Choice(["tvm", "c-lib"]), default="tvm", show_default=True,
              help="tvm: the Relax VM library (needs the TVM runtime); c-lib: one dependency-free C library "
              "(libsrmodel.so + srmodel.h + srmodel_bench).")
@click.option("--tune", "tune_minutes", type=click.FloatRange(0, min_open=True), default=None, metavar="MINUTES",
              help="First tune with MetaSchedule for about MINUTES (host only). Records persist per target in the "
              "cache and every later compile reuses them; tuning is never needed for good speed.")
def compile_cmd(model, target, out, scale, size, threads, seed, force, fmt, tune_minutes) -> None:
    """Compile MODEL (a model file, or an architecture name with --scale) for TARGET into OUT.

    The compiled output is checked against PyTorch on random input (max abs diff <= 1e-4) on the
    host before anything is written; arm64 targets are cross-compiled and linked here.
    """
    from compiler.artifact import check_out_dir, write_artifact
    from compiler.build import compile_checked
    from compiler.targets import get_target
    from srprune import __version__

    from srprune.outputs import check_output_folder

    check_output_folder(out)
    check_out_dir(out, force)
    spec = get_target(target, threads)
    wanted = None if size is None else parse_size(size)
    net, info, colors = _load(model, scale, seed)
    frame, shape = _frame(wanted, info.scale, colors)
    click.echo(f"compiling {info.name} x{info.scale} for {spec.name} ({spec.threads} threads), "
               f"input {'x'.join(map(str, shape))}", err=True)
    meta = {"model": info.name, "scale": info.scale, "config": info.config, "source": info.source,
            "output_size": list(frame), "srprune": __version__}
    if fmt == "c-lib":
        from compiler.clib.export import build_clib

        manifest = build_clib(net, shape, spec, out, meta=meta, force=force, name=f"{info.name} x{info.scale}")
        click.echo(f"wrote {out}/{manifest['library']} + {manifest['header']} ({spec.triple}), max |diff| vs "
                   f"PyTorch {manifest['numerics']['max_abs_diff']:.2e}, {manifest['steps']} kernel calls, "
                   f"arena {manifest['arena_bytes'] / 2**20:.1f} MiB")
        return
    if tune_minutes:
        from compiler.tune import tune

        report = tune(net, shape, spec, tune_minutes, tuning_root())
        click.echo(f"tuned {len(report.tasks)} operators for {report.seconds / 60:.1f} min: {report.trials} trials, "
                   f"{report.measured} measured schedules in {report.db_dir}", err=True)
    compiled = compile_checked(net, shape, spec, tuning_root=str(tuning_root()))
    manifest = write_artifact(compiled, out, meta=meta, force=force)
    click.echo(f"wrote {out}/{manifest['library']} ({spec.triple}), max |diff| vs PyTorch "
               f"{compiled.check['max_abs_diff']:.2e}, {compiled.fused_convs} convs on our kernels")


@cli.command("bench")
@click.argument("model")
@click.option("--target", "-t", "target", default="host", show_default=True,
              help="Only host: the engines run on this machine.")
@click.option("--scale", "-s", type=click.IntRange(2, 4), default=None,
              help="Upscaling factor (needed with an architecture name).")
@click.option("--size", default=None, help=SIZE_HELP)
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads for every engine (default: all).")
@click.option("--repeat", type=click.IntRange(1), default=10, show_default=True, help="Timed rounds per engine.")
@click.option("--engines", default="tvm,torch,onnxruntime", show_default=True, help="Comma-separated engines.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of untrained weights for a name.")
def bench_cmd(model, target, scale, size, threads, repeat, engines, seed) -> None:
    """Latency of MODEL in TVM, PyTorch eager and ONNX Runtime, side by side, same threads.

    Prints median/min/max ms, MACs, achieved GFLOP/s and frames per second per engine.
    """
    from compiler.bench import bench_engines, format_table
    from compiler.targets import get_target

    if get_target(target).cross:
        raise InputError(f"bench runs engines on this machine; target {target} is cross-compiled (use host)")
    names = tuple(e.strip() for e in engines.split(",") if e.strip())
    wanted = None if size is None else parse_size(size)
    net, info, colors = _load(model, scale, seed)
    frame, shape = _frame(wanted, info.scale, colors)
    result = bench_engines(net, shape, threads=threads, engines=names, repeat=repeat, tuning_root=str(tuning_root()))
    click.echo(f"{info.name} x{info.scale}, output {frame[0]}x{frame[1]}, target host")
    click.echo(format_table(result))
