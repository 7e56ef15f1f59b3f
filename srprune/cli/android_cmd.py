"""`srprune android stage|build|install|bench`: ship a model to the demo app and to a phone.

Everything that needs the Android SDK, NDK or a phone fails with one line naming what is missing and
how to get it; the file layout and command lines live in srprune.android.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import click

from srprune import android
from srprune.cli.group import cli
from srprune.errors import InputError

_APP = click.option("--app", "app", type=click.Path(file_okay=False, path_type=Path), default=android.APP_DIR,
                    show_default=True, help="The demo app's Gradle project.")


def _compile_options(command):
    """The options of compiling MODEL for the app (stage and apk take the same)."""
    for option in reversed([
            click.option("--scale", "-s", type=click.IntRange(2, 4), default=None,
                         help="Upscaling factor (with a name)."),
            click.option("--size", default=None, help="Output frame WIDTHxHEIGHT when compiling, a multiple of the "
                         "scale [default: 1280x720, rounded down to one]."),
            click.option("--threads", type=click.IntRange(1), default=None, help="Default threads of the library (4)."),
            click.option("--seed", type=int, default=0, show_default=True,
                         help="Seed of untrained weights for a name.")]):
        command = option(command)
    return command


@cli.group("android")
def android_group() -> None:
    """The Android demo app: stage a model into it, build the APK, install it, time the model on a phone."""


@android_group.command("stage")
@click.argument("model")
@_APP
@_compile_options
@click.option("--target", type=click.Choice(android.TARGETS), default=android.TARGET, show_default=True,
              help="What the library computes in: fp32 (android-arm64) or fp16 (android-arm64-fp16).")
@click.option("--device", type=click.Choice(list(android.DEVICE_PROFILES)), default=android.DEFAULT_DEVICE,
              show_default=True, help="CPU level of the phone: a library needing features it lacks is refused.")
def stage_cmd(model, app, scale, size, threads, seed, target, device) -> None:
    """Put MODEL into the app: a c-lib folder compiled for android-arm64, a run folder, a model file or a name
    (compiled for android-arm64 first). Writes the library, its header, the bench, the manifest and the test image."""
    from srprune.frame import parse_size

    staged = android.stage(model, app, scale=scale, size=None if size is None else parse_size(size), threads=threads,
                           seed=seed, target=target, device=device)
    click.echo(f"staged {staged.model} x{staged.scale} ({staged.input_wh[0]}x{staged.input_wh[1]} -> "
               f"{staged.output_wh[0]}x{staged.output_wh[1]}) from {staged.source} into {staged.app}")
    for f in staged.files:
        click.echo(f"  {f.relative_to(staged.app)}")
    ref = staged.reference
    click.echo(f"test image: bicubic PSNR {ref['bicubic_psnr_y']:.2f} dB, SSIM {ref['bicubic_ssim_y']:.4f} (Y, crop "
               f"{ref['crop_border']}); the app shows the model's on the phone")


@android_group.command("build")
@_APP
def build_cmd(app) -> None:
    """Build the debug APK with the Gradle wrapper (needs the Android SDK, NDK and a JDK)."""
    cmd, env = android.build_command(app)
    click.echo(" ".join(cmd), err=True)
    proc = subprocess.run(cmd, cwd=app, env=env, check=False)
    if proc.returncode != 0:
        raise InputError(f"gradle failed with exit code {proc.returncode} (its output is above)")
    click.echo(f"built {app / android.APK}")


@android_group.command("install")
@_APP
@click.option("--serial", default=None, help="Device serial (adb devices) when several are connected.")
def install_cmd(app, serial) -> None:
    """Install the built APK on the connected phone through adb."""
    adb = android.find_adb()
    apk = app / android.APK
    device = android.connected_device(adb, serial)
    if not apk.is_file():
        raise InputError(f"{apk} does not exist: run `srprune android build` first")
    android.adb_run(android.install_command(adb, device, apk), "adb install")
    click.echo(f"installed {apk.name} on {device}")


@android_group.command("bench")
@_APP
@click.option("--serial", default=None, help="Device serial (adb devices) when several are connected.")
@click.option("--threads", default="1,2,4", show_default=True, help="Comma-separated thread counts to time.")
@click.option("--runs", type=click.IntRange(1), default=30, show_default=True, help="Timed runs per thread count.")
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True, help="Untimed runs first.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the measurements as JSON.")
def bench_cmd(app, serial, threads, runs, warmup, json_out) -> None:
    """Time the staged model on the phone with srmodel_bench (median of RUNS after WARMUP, per thread count)."""
    from srcommon.atomic import write_text

    try:
        counts = [int(t) for t in threads.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise InputError(f"--threads must be positive integers separated by commas, got {threads!r}")
    lib, exe = app / android.JNI_LIB, app / android.BENCH_EXE
    if not lib.is_file():
        raise InputError(f"no model staged in {app}: run `srprune android stage MODEL` first")
    if not exe.is_file():
        raise InputError(f"{exe} is missing: stage a folder written by `srprune compile --format c-lib` (it holds "
                         "srmodel_bench) or the model itself")
    manifest = android.read_clib_manifest(app)
    adb = android.find_adb()
    device = android.connected_device(adb, serial)
    cmds = android.bench_commands(adb, device, lib, exe, counts, runs, warmup)
    for cmd in cmds[:4]:
        android.adb_run(cmd, " ".join(cmd[3:5]))
    results = [android.parse_bench(android.adb_run(cmd, "srmodel_bench on the phone")) for cmd in cmds[4:]]
    name = android.adb_run(android.device_model_command(adb, device), "adb getprop").strip() or device
    click.echo(android.bench_table(manifest, name, results))
    if json_out:
        write_text(json_out, json.dumps(android.bench_records(manifest, name, results), indent=2) + "\n")


@android_group.command("apk")
@click.argument("model", required=False, default=None)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The APK [default: RUN/android/srprune-demo.apk for a run, else ./srprune-demo.apk].")
@_APP
@_compile_options
@click.option("--keystore", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Sign with this keystore instead of the debug key.")
@click.option("--ks-pass", default=None, help="Keystore password for apksigner: pass:PW, env:VAR or file:PATH.")
@click.option("--key-alias", default=None, help="Key alias in --keystore (when it holds several).")
@click.option("--key-pass", default=None, help="Key password (pass:PW, env:VAR, file:PATH) [default: --ks-pass].")
@click.option("--force", is_flag=True, help="Replace an APK srprune wrote before.")
def apk_cmd(model, out, app, scale, size, threads, seed, keystore, ks_pass, key_alias, key_pass, force) -> None:
    """Build, sign and verify the demo app's APK without Gradle: MODEL is a run folder, a model file, a name
    (with --scale) or a c-lib folder, as for `android stage` [default: the model staged in --app]. Needs Debian's
    Android tools (scripts/install-system-deps.sh); an APK built here has not been installed on a phone."""
    import tempfile

    from srprune import apk as apk_mod
    from srprune.frame import parse_size

    target = out or apk_mod.default_output(model or "")
    key = apk_mod.Keystore(keystore, ks_pass, key_alias, key_pass)
    with tempfile.TemporaryDirectory(prefix="srprune-staged-") as tmp:
        spec = model or str(apk_mod.staged_clib(app, Path(tmp) / "staged"))  # none: the model staged in --app
        r = apk_mod.build_apk(spec, target, app=app, scale=scale, size=None if size is None else parse_size(size),
                              threads=threads, seed=seed, key=key, force=force)
    s = r.staged
    click.echo(f"built {r.path} ({r.path.stat().st_size / 1e6:.1f} MB): {s.model} x{s.scale} "
               f"({s.input_wh[0]}x{s.input_wh[1]} -> {s.output_wh[0]}x{s.output_wh[1]}) from {s.source}")
    click.echo("checked:")
    for c in r.checks:
        click.echo(f"  {c}")
    click.echo("not checked here: that it installs and runs on a phone (srprune android install)")
