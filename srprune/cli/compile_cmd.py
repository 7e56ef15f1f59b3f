"""`srprune compile MODEL --target T -o DIR` and `srprune bench MODEL --target host --size WxH`.

Both compile the model's deployed form for one fixed frame size: `--size` is the OUTPUT frame
(default 1280x720 rounded down to a multiple of the scale), the input is size / scale; a size that
is not a multiple of the scale is refused before any work (srprune.frame).
"""

from __future__ import annotations

from pathlib import Path

import click

from srprune.cli.group import cli
from srprune.errors import InputError
from srprune.frame import parse_size

SIZE_HELP = "Output frame size WIDTHxHEIGHT, a multiple of the scale  [default: 1280x720, rounded down to one]"


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
    from compiler.targets import get_target
    from srprune.export import ExportRequest, export
    from srprune.outputs import check_output_folder

    check_output_folder(out)
    wanted = None if size is None else parse_size(size)
    done = export(ExportRequest(model, get_target(target, threads), out, fmt=fmt, scale=scale, size=wanted, seed=seed,
                                force=force, tune_minutes=tune_minutes))
    m, spec = done.manifest, done.manifest["target"]
    if done.tuned:
        r = done.tuned
        click.echo(f"tuned {len(r.tasks)} operators for {r.seconds / 60:.1f} min: {r.trials} trials, "
                   f"{r.measured} measured schedules in {r.db_dir}", err=True)
    if fmt == "c-lib":
        if m.get("precision") == "int8":
            checked = ("not run here (cross target)" if m["numerics"] is None else
                       f"max |diff| vs the integer reference {m['numerics']['max_abs_diff']:.2e}")
            what = f"int8 ({m['int8_isa']}), {checked}"
        else:
            what = f"max |diff| vs PyTorch {m['numerics']['max_abs_diff']:.2e}"
        click.echo(f"wrote {out}/{m['library']} + {m['header']} ({spec['triple']}), {what}, {m['steps']} kernel "
                   f"calls, arena {m['arena_bytes'] / 2**20:.1f} MiB")
    else:
        click.echo(f"wrote {out}/{m['library']} ({spec['triple']}), max |diff| vs PyTorch "
                   f"{done.compiled.check['max_abs_diff']:.2e}, {done.compiled.fused_convs} convs on our kernels")


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
    from srprune.data.cache import tuning_dir
    from srprune.export import deployable, frame_and_shape
    from srprune.quant.deploy import bench_int8
    from srprune.quant.qmodel import is_quantized

    if get_target(target).cross:
        raise InputError(f"bench runs engines on this machine; target {target} is cross-compiled (use host)")
    names = tuple(e.strip() for e in engines.split(",") if e.strip())
    wanted = None if size is None else parse_size(size)
    net, info, colors = deployable(model, scale, seed)
    frame, shape = frame_and_shape(wanted, info.scale, colors)
    if is_quantized(net):
        result = bench_int8(net, shape, threads=threads, engines=names, repeat=repeat, tuning_root=str(tuning_dir()),
                            label=model)
        click.echo(f"{info.name} x{info.scale}, output {frame[0]}x{frame[1]}, target host: int8 c-lib "
                   f"({result['int8_isa']}); {', '.join(names) or 'no other engine'} run the float counterpart "
                   "(dequantised weights)")
    else:
        result = bench_engines(net, shape, threads=threads, engines=names, repeat=repeat,
                               tuning_root=str(tuning_dir()))
        click.echo(f"{info.name} x{info.scale}, output {frame[0]}x{frame[1]}, target host")
    click.echo(format_table(result))
