"""`srprune latency build|predict|validate`: the compiler-aware latency model of a target, in a run folder.

    srprune latency build --target host --run runs/NAME [--config cfg.yaml] [--size 1280x720] [--precisions fp32,int8]
    srprune latency predict GENOME|MODEL --target host --run runs/NAME
    srprune latency validate --target host --run runs/NAME --n 30 [--plot docs/latency_host.png]
    srprune latency calibrate --target android-arm64 --run runs/NAME --device-bench bench.json [more.json ...]

The table and the calibration live in RUN/latency/TARGET/ (table.json, predictor.json); a killed
build resumes where it stopped. Arm64 targets are measured on the device over TVM RPC (--rpc).
`build` is the run's latency stage without the budget check (srprune.latency.build_latency_model):
the dense layers of the config's search space plus the pruned kernels its `search` section can pick, in each
precision of `--precisions` (int8 on a host with AVX-512 VNNI or AVX2; fp16 on android-arm64-fp16).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from srprune.cli.group import cli
from srprune.frame import parse_size
from srprune.errors import InputError

if TYPE_CHECKING:
    from compiler.latency.predict import Calibration

_TARGET_HELP = "Target name (host, android-arm64, ...); its table is RUN/latency/TARGET/."
_RPC_HELP = "Measure on a TVM RPC server rpc://HOST:PORT, or a tracker key rpc://HOST:PORT/KEY."


def _space(config_path: Path | None):
    from supernet.space import SearchSpace

    if config_path is None:
        return SearchSpace()
    from srprune.cli.supernet_cmd import read_config

    return SearchSpace.from_dict(read_config(config_path)["space"])


def _search(config_path: Path | None) -> dict:
    """The `search` section of a run config (defaults filled in, the pruning keys checked): what `build` prunes."""
    from srprune.search.config import DEFAULTS, RUN_RULES
    from srprune.search.schema import check_values, read_yaml

    section = (read_yaml(config_path).get("search") if config_path is not None else None) or {}
    if not isinstance(section, dict):
        raise InputError(f"{config_path}: search must be a mapping")
    search = {**DEFAULTS["search"], **section}
    keys = ("schemes", "blocks", "ratios", "scheme_ratio")  # the ones the latency stage reads
    check_values({k: search[k] for k in keys}, RUN_RULES["search"], f"{config_path}: ", "search")
    return search


def _precisions(text: str, spec) -> tuple[str, ...]:
    """`--precisions fp32,int8` as a tuple; an unknown name or one the target cannot run is one line, before any work."""
    from compiler.latency.config import PRECISIONS
    from compiler.latency.measure import check_precision

    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not names:
        raise InputError("--precisions needs at least one of " + ", ".join(PRECISIONS))
    for name in names:
        if name not in PRECISIONS:
            raise InputError(f"--precisions: unknown precision {name!r} (known: {', '.join(PRECISIONS)})")
        check_precision(spec, name)
    return names


def _frame(size: str) -> tuple[int, int]:
    w, h = parse_size(size)
    return h, w


def _target(target: str, threads: int | None):
    from compiler.targets import get_target

    return get_target(target, threads)


def _stale_note(pred) -> None:
    """Say so when the compiler sources or the pruned layers' weights changed since the table was measured."""
    from compiler.latency.table import PRUNED_WEIGHTS, compiler_fingerprint
    from srprune.search.latency_stage import PRUNED_WEIGHTS as CURRENT

    built, now = pred.table.header.get("compiler"), compiler_fingerprint()
    if built != now:
        click.echo(f"note: the table was measured with compiler {built}, the sources are now {now}; "
                   f"rebuild it with `srprune latency build --force` if kernels changed", err=True)
    if pred.table.pruned_entries() and pred.table.header.get(PRUNED_WEIGHTS) != CURRENT:
        click.echo("note: the table's pruned layers were timed on other weights than the pruner's masks; "
                   "`srprune latency build` re-measures them", err=True)


def _genome_or_model(spec: str, out_hw: tuple[int, int]):
    """Layers of a genome (JSON file or inline JSON) or of a genome model file."""
    from srprune.latency import genome_layers, model_layers

    text = spec.strip()
    path = Path(spec)
    if text.startswith("{"):
        try:
            return genome_layers(json.loads(text), out_hw), "genome"
        except json.JSONDecodeError as e:
            raise InputError(f"GENOME is not valid JSON ({e.msg})") from None
    if path.suffix == ".json":
        if not path.exists():
            raise InputError(f"genome file {spec} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{spec}: not valid JSON ({e.msg})") from None
        if isinstance(data, dict) and "genome" in data and "cells" not in data:
            data = data["genome"]
        return genome_layers(data, out_hw), "genome"
    from srprune.models import resolve_model

    net, info = resolve_model(spec, None)
    return model_layers(net, out_hw, info.meta), info.name


@cli.group("latency")
def latency() -> None:
    """Compiler-aware latency model: layer table per target, predictor, validation."""


@latency.command("build")
@click.option("--target", "-t", default="host", show_default=True, help=_TARGET_HELP)
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder; writes RUN/latency/TARGET/.")
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML config whose supernet.space is the search space (default: the default space).")
@click.option("--size", default="1280x720", show_default=True, help="Output frame size WIDTHxHEIGHT.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads at run time.")
@click.option("--repeat", type=click.IntRange(1), default=5, show_default=True, help="Timed runs per layer.")
@click.option("--calibrate", "n_cal", type=click.IntRange(0), default=6, show_default=True,
              help="Random networks measured whole to fit the overhead (0: skip).")
@click.option("--rpc", default=None, help=_RPC_HELP)
@click.option("--timeout", type=click.FloatRange(0.1), default=30.0, show_default=True,
              help="Seconds to wait for an RPC server.")
@click.option("--precisions", "precisions", default="fp32", show_default=True,
              help="Comma-separated precisions to time every layer in (fp32, int8, fp16).")
@click.option("--force", is_flag=True, help="Discard the existing table and calibration and start over.")
def build_cmd(target, run_dir, config_path, size, threads, repeat, n_cal, rpc, timeout, precisions, force) -> None:
    """Measure every layer configuration of the search space on TARGET (resumes a killed build)."""
    from srcommon.lock import FolderLock
    from srprune.latency import build_latency_model, calibration_path, make_runner
    from srprune.layout import table_path
    from srprune.search.latency_stage import pruned_kernels

    spec = _target(target, threads)
    chosen = _precisions(precisions, spec)
    space = _space(config_path)
    search = _search(config_path)
    out_hw = _frame(size)
    runner = make_runner(spec, rpc, timeout)
    FolderLock(run_dir, "srprune latency build").acquire()
    tpath, cpath = table_path(run_dir, spec.name), calibration_path(run_dir, spec.name)
    if force:
        for p in (tpath, cpath):
            if p.exists():
                p.unlink()
    built = build_latency_model(run_dir, spec, runner, space, out_hw,
                                pruned=pruned_kernels(space, search, out_hw, chosen), repeat=repeat,
                                calibrate_n=n_cal, precisions=chosen)
    stale = f", {built.dropped} pruned re-measured on the pruner's masks" if built.dropped else ""
    click.echo(f"{tpath}: {len(built.table)} layers ({built.measured} measured now{stale}) for {spec.name}, "
               f"{spec.threads} threads")
    cal = built.calibration
    if built.calibrated_now:
        for what, c in (("", cal), (" (networks with int8 layers, as int8 c-libs)", cal.int8)):
            if c is not None:
                click.echo(f"{cpath}: measured = {c.alpha:.3f} x sum + {c.beta_ms:.2f} ms + {c.gamma_ms:.3f} ms x "
                           f"layers ({len(c.points)} networks{_outliers(c)}){what}")


def _outliers(cal: Calibration) -> str:
    """', K set aside as outliers' for a fit that set networks aside (compiler.latency.predict), else ''."""
    k = sum(1 for p in cal.points if p.get("outlier"))
    return f", {k} set aside as outlier{'s' if k > 1 else ''}" if k else ""


@latency.command("predict")
@click.argument("spec", metavar="GENOME|MODEL")
@click.option("--target", "-t", default="host", show_default=True, help=_TARGET_HELP)
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--size", default="1280x720", show_default=True, help="Output frame size WIDTHxHEIGHT.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads the table was measured with.")
@click.option("--layers", "show_layers", is_flag=True, help="Also print every layer's time and its source.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="Every layer in this precision (the table needs its entries: build --precisions).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def predict_cmd(spec, target, run_dir, size, threads, show_layers, precision, as_json) -> None:
    """Predicted latency of a genome (JSON file or inline JSON) or a genome model file on TARGET.

    int8 networks are priced with the table's int8 calibration (int8 c-libs; the plain sum where the table has
    none), fp16 ones by the sum of their entries (the calibration is fitted on fp32 networks)."""
    from dataclasses import replace

    from srprune.latency import load_predictor

    tspec = _target(target, threads)
    out_hw = _frame(size)
    pred = load_predictor(run_dir, tspec.name, tspec.threads)
    _stale_note(pred)
    layers, name = _genome_or_model(spec, out_hw)
    if precision != "fp32":
        layers = [replace(c, precision=precision) for c in layers]
    if precision == "fp16":
        from compiler.latency.predict import Calibration

        pred.calibration = Calibration()  # fitted on fp32 networks: not for fp16 sums
    ms = pred.predict(layers)
    parts = pred.breakdown(layers)
    if as_json:
        click.echo(json.dumps({"model": name, "target": tspec.name, "threads": tspec.threads,
                               "output_size": [out_hw[1], out_hw[0]], "predicted_ms": ms, "layers": parts}))
        return
    click.echo(f"{name}: {ms:.2f} ms predicted on {tspec.name} ({tspec.threads} threads), "
               f"output {out_hw[1]}x{out_hw[0]}, {len(layers)} layers")
    if show_layers:
        for p in parts:
            click.echo(f"  {p['layer']:<58} {p['ms']:9.3f} ms  {p['source']}")


@latency.command("validate")
@click.option("--target", "-t", default="host", show_default=True, help=_TARGET_HELP)
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--n", "n", type=click.IntRange(2), default=30, show_default=True, help="Random networks.")
@click.option("--size", default="1280x720", show_default=True, help="Output frame size WIDTHxHEIGHT.")
@click.option("--threads", type=click.IntRange(1), default=None)
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True,
              help="Interleaved timed runs per network.")
@click.option("--seed", type=int, default=2000, show_default=True)
@click.option("--calibrate", "n_cal", type=click.IntRange(0), default=6, show_default=True,
              help="Extra random networks measured in this session to re-fit the overhead (0: use the stored one).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Scatter plot PNG (default RUN/latency/TARGET/validate.png).")
@click.option("--rpc", default=None, help=_RPC_HELP)
@click.option("--timeout", type=click.FloatRange(0.1), default=30.0, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
              help="int8: networks with int8 layers (all int8 and mixed), timed as int8 c-libs (host only).")
def validate_cmd(target, run_dir, config_path, n, size, threads, rounds, seed, n_cal, plot, rpc, timeout,
                 precision) -> None:
    """Predicted vs measured on N random networks: MAPE, Spearman, scatter plot, validate.json
    (validate-int8.json with --precision int8)."""
    from srcommon.atomic import write_text
    from srprune.latency import load_predictor, make_runner, scatter_plot, validate
    from srprune.layout import table_path

    tspec = _target(target, threads)
    out_hw = _frame(size)
    pred = load_predictor(run_dir, tspec.name, tspec.threads)
    _stale_note(pred)
    runner = make_runner(tspec, rpc, timeout)
    from srprune.search.latency_stage import pruned_kernels

    space = _space(config_path)
    if precision == "int8" and tspec.cross:
        raise InputError(f"validate --precision int8 times int8 c-libs, which run on this host only, not {tspec.name}")
    precisions = ("fp32", precision) if precision != "fp32" else ("fp32",)
    result = validate(pred, tspec, runner, space, out_hw, n=n, seed=seed, rounds=rounds, calibrate_n=n_cal,
                      pruned=pruned_kernels(space, _search(config_path), out_hw, precisions), precision=precision)
    folder = table_path(run_dir, tspec.name).parent
    name = "validate" if precision == "fp32" else f"validate-{precision}"
    write_text(folder / f"{name}.json", json.dumps(result, indent=1))
    plot = plot or folder / f"{name}.png"
    scatter_plot(result, plot)
    click.echo(f"{tspec.name}, {tspec.threads} threads, {n} {'' if precision == 'fp32' else precision + ' '}networks "
               f"at {out_hw[1]}x{out_hw[0]}: "
               f"MAPE {result['mape_pct']:.2f}%, Spearman {result['spearman']:.3f} "
               f"({'same-session' if n_cal else 'stored'} calibration; stored: MAPE {result['mape_stored_pct']:.2f}%, "
               f"Spearman {result['spearman_stored']:.3f}); plot {plot}")


@latency.command("calibrate")
@click.option("--target", "-t", default="android-arm64", show_default=True, help=_TARGET_HELP)
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="The table's thread count.")
@click.option("--device-bench", "files", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              required=True, help="`srprune android bench --json` output of a searched model (repeatable).")
@click.option("--cpu", default=None, help="Also report the static estimate's error on these measurements for this "
              "CPU (cortex-a77, snapdragon-865, ...; see `srprune latency estimate`).")
def calibrate_cmd(target, run_dir, threads, files, cpu) -> None:
    """Re-fit the calibration on whole-network times measured on the phone by `srprune android bench`."""
    from srprune.latency import calibrate_from_device

    tspec = _target(target, threads)
    records = []
    for f in files:
        try:
            records.append((str(f), json.loads(Path(f).read_text())))
        except FileNotFoundError:
            raise InputError(f"{f}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{f}: not JSON (expected `srprune android bench --json` output)") from None
    if cpu is not None:
        from srprune.latency.estimated import check_cpu

        check_cpu(cpu, tspec, "--cpu")
    cal = calibrate_from_device(run_dir, tspec.name, tspec.threads, records)
    click.echo(f"{tspec.name}, {tspec.threads} threads: calibration from {len(cal.points)} device measurement(s)"
               f"{_outliers(cal)}: "
               f"measured = {cal.alpha:.3f} x sum + {cal.beta_ms:.2f} ms + {cal.gamma_ms:.3f} ms x layers "
               f"(RUN/latency/{tspec.name}/predictor.json)")
    if cpu is not None:
        from srprune.latency import device_bench_points
        from srprune.latency.estimated import estimate_error
        from srprune.search.latency_stage import pruned_weight

        points = [p for name, rec in records for p in device_bench_points(rec, tspec.threads, name)]
        err = estimate_error(tspec, cpu, points, pruned_weight)
        for r in err["rows"]:
            click.echo(f"  {err['label']}: {r['estimated_ms']:.2f} ms vs measured {r['measured_ms']:.2f} ms "
                       f"({r['error_pct']:+.1f}%)")
        click.echo(f"static estimate of CPU {cpu} vs the phone's measurements: MAPE {err['mape_pct']:.1f}% "
                   f"over {len(err['rows'])} measurement(s)")
