"""Deploying to the Android demo app: staging a compiled model into android_app/, and the Gradle/adb
command lines of `srprune android build|install|bench` with the parsing of what they print.

Why a module apart from the CLI: the file layout of the app and the command lines are the contract
with android_app/ (its CMakeLists.txt and Java code read exactly these paths), and they are tested
without an SDK, an NDK or a phone. Staged files are build inputs, never committed (android_app/.gitignore).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from srcommon.atomic import atomic_path, write_text
from srprune.errors import InputError
from srprune.layout import RunLayout

APP_DIR = Path(__file__).resolve().parents[1] / "android_app"
ABI = "arm64-v8a"
TRIPLE = "aarch64-linux-android"
TARGET = "android-arm64"
TARGETS = ("android-arm64", "android-arm64-fp16", "android-arm64-dotprod")
# What a phone's CPU offers, by architecture level (compiler.targets.CPU_FEATURES names): the c-lib of a target
# needing more refuses to load on it (srmodel_create: SRMODEL_ERR_CPU), so staging one for such a phone is refused
# here. armv8.2-a (Cortex-A55/A75 and later, most phones since 2018) has fp16 arithmetic and dot products.
DEVICE_PROFILES = {"armv8-a": (), "armv8.2-a": ("fp16", "dotprod")}
DEFAULT_DEVICE = "armv8.2-a"
# Where the app expects each staged file (relative to the app folder).
JNI_LIB = Path("app/src/main/jniLibs") / ABI / "libsrmodel.so"
HEADER = Path("app/src/main/cpp/staged/srmodel.h")
BENCH_EXE = Path("app/src/main/cpp/staged/srmodel_bench")  # not packaged: pushed by `srprune android bench`
ASSETS = Path("app/src/main/assets/srmodel")
APK = Path("app/build/outputs/apk/debug/app-debug.apk")
DEVICE_DIR = "/data/local/tmp/srprune"
NDK_VERSION = "27.2.12479018"
PLATFORM = "android-35"
SDK_HINT = (f'install Android Studio, or the command-line tools and run `sdkmanager "platforms;{PLATFORM}" '
            f'"build-tools;35.0.0" "ndk;{NDK_VERSION}" "platform-tools"`')


@dataclass(frozen=True)
class Staged:
    """What `stage` put into the app."""

    app: Path
    source: str
    model: str
    scale: int
    input_wh: tuple[int, int]
    output_wh: tuple[int, int]
    files: tuple[Path, ...]
    reference: dict


# ---------------------------------------------------------------- staging


def read_clib(folder: Path, target: str = TARGET, device: str | None = None) -> dict:
    """The manifest of a c-lib folder compiled for `target`, checked (also against the CPU features of the
    `device` profile, when given); InputError naming the problem."""
    from compiler.artifact import sha256

    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable compiled-model manifest ({exc.__class__.__name__})") from exc
    if manifest.get("kind") != "c-lib":
        raise InputError(f"{folder} holds a {manifest.get('kind', 'tvm')!r} artifact; the app needs a c-lib "
                         f"(srprune compile MODEL --target {TARGET} --format c-lib)")
    triple = (manifest.get("target") or {}).get("triple")
    if triple != TRIPLE:
        raise InputError(f"{folder} was compiled for {triple}, not {TRIPLE} ({ABI}); recompile with --target {target}")
    check_target(manifest, folder, target, device)
    lib = folder / manifest.get("library", "libsrmodel.so")
    want = (manifest.get("checksums") or {}).get(lib.name)
    if not lib.is_file() or want is None or sha256(lib) != want:
        raise InputError(f"{lib} is missing or does not match the checksum in its manifest")
    n, c, h, w = manifest["input"]["shape"]
    on, oc, oh, ow = manifest["output"]["shape"]
    scale = (manifest.get("meta") or {}).get("scale")
    if (n, c, on, oc) != (1, 3, 1, 3) or not scale or (oh, ow) != (h * scale, w * scale):
        raise InputError(f"{folder}: the app needs a 1x3xHxW RGB model whose output is the input times its scale; "
                         f"got {manifest['input']['shape']} -> {manifest['output']['shape']} at x{scale}")
    return manifest


def check_target(manifest: dict, folder: Path, target: str, device: str | None) -> None:
    """Refuse a c-lib whose target, precision or required CPU features do not match `target` and `device`.

    Manifests from before precision was recorded are fp32 with no required features (what those builds were)."""
    from compiler.targets import get_target

    if target not in TARGETS:
        raise InputError(f"unknown Android target {target!r}; one of {', '.join(TARGETS)}")
    if device is not None and device not in DEVICE_PROFILES:
        raise InputError(f"unknown device profile {device!r}; one of {', '.join(DEVICE_PROFILES)}")
    want = get_target(target)
    name = (manifest.get("target") or {}).get("name", TARGET)
    precision = manifest.get("precision", "fp32")
    # An int8 library suits every arm64 target: its kernels follow the target's features (sdot or the NEON form).
    if name != target or precision not in (want.precision, "int8"):
        raise InputError(f"{folder} was compiled for {name} ({precision}), not {target} ({want.precision}); "
                         f"recompile with --target {target} or stage it with --target {name}")
    lacking = [f for f in manifest.get("cpu_features", []) if device is not None and f not in DEVICE_PROFILES[device]]
    if lacking:
        raise InputError(f"{folder} needs CPU features {', '.join(lacking)}, which device profile {device} lacks "
                         f"(the library would refuse to load); use --target {TARGET} or a device profile that has them")


def compile_clib(model: str, scale: int | None, size: tuple[int, int] | None, threads: int | None, seed: int,
                 out: Path, target: str = TARGET) -> dict:
    """Compile MODEL (file or name) for `target` as a c-lib into `out` (as `srprune compile` does)."""
    from compiler.targets import get_target
    from srprune.export import ExportRequest, export

    return export(ExportRequest(model, get_target(target, threads), out, fmt="c-lib", scale=scale, size=size,
                                seed=seed, force=True, rgb_only=True)).manifest


def resolve_clib(spec: str, scale: int | None, size: tuple[int, int] | None, threads: int | None, seed: int,
                 work: Path, target: str = TARGET) -> tuple[Path, str]:
    """A c-lib folder for SPEC: itself; a run's compiled/TARGET (compiled there from final/model.pt
    when absent, so the next stage skips compiling); or a model file/name compiled now into `work`."""
    path = Path(spec)
    if path.is_dir() and (path / "manifest.json").is_file():
        return path, f"compiled folder {path}"
    if path.is_dir():
        compiled = RunLayout(path, target).compiled
        if (compiled / "manifest.json").is_file():
            kind = json.loads((compiled / "manifest.json").read_text(encoding="utf-8")).get("kind")
            if kind == "c-lib":
                return compiled, f"run {path} ({compiled})"
        final = RunLayout(path).final_model
        if not final.is_file():
            raise InputError(f"{path} is neither a compiled folder (manifest.json) nor a run with "
                             f"compiled/{target}/ or final/model.pt")
        if not compiled.exists():
            compile_clib(str(final), scale, size, threads, seed, compiled, target)
            return compiled, f"run {path} (compiled now into {compiled})"
        spec = str(final)  # compiled/android-arm64 holds another kind of artifact: leave it alone
    compile_clib(spec, scale, size, threads, seed, work, target)
    return work, f"compiled now from {spec}"


def _copy(src: Path, dst: Path, mode: int | None = None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        if mode is not None:
            os.chmod(tmp, mode)


# scikit-image's bundled photographs (no download) used for the test image, tile by tile.
TEST_IMAGES = ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
_TILE = (400, 512)  # largest tile (rows, cols) that every image above covers without enlarging


def bundled_test_image(out_wh: tuple[int, int], scale: int) -> tuple[str, "np.ndarray", "np.ndarray"]:  # noqa: F821
    """(description, LR, HR) of the bundled test image for the model's fixed frame.

    HR is a grid of centre crops of scikit-image's photographs at their own resolution (one crop when the
    frame fits in 400x512): no bundled photo covers a 720p frame, and an enlarged one would be so smooth that
    bicubic would look excellent on it. LR = the protocol's bicubic downscale of HR.
    """
    import math

    import numpy as np
    from skimage import data

    from srprune.imresize import imresize, to_uint8

    ow, oh = out_wh
    rows, cols = math.ceil(oh / _TILE[0]), math.ceil(ow / _TILE[1])
    ys = [oh * i // rows for i in range(rows + 1)]
    xs = [ow * j // cols for j in range(cols + 1)]
    hr = np.zeros((oh, ow, 3), np.uint8)
    names = []
    for k in range(rows * cols):
        i, j = divmod(k, cols)
        name = TEST_IMAGES[k % len(TEST_IMAGES)]
        img = getattr(data, name)()[..., :3]
        th, tw = ys[i + 1] - ys[i], xs[j + 1] - xs[j]
        y0, x0 = (img.shape[0] - th) // 2, (img.shape[1] - tw) // 2
        hr[ys[i]:ys[i + 1], xs[j]:xs[j + 1]] = img[y0:y0 + th, x0:x0 + tw]
        names.append(name)
    what = f"skimage.data.{names[0]}" if len(names) == 1 else \
        f"{rows}x{cols} grid of centre crops of skimage.data.{{{', '.join(names)}}}"
    return what, to_uint8(imresize(hr, scale=1 / scale)), hr


def stage(spec: str, app: Path = APP_DIR, *, scale: int | None = None, size: tuple[int, int] | None = None,
          threads: int | None = None, seed: int = 0, target: str = TARGET, device: str | None = DEFAULT_DEVICE) -> Staged:
    """Put a model for `target` into the app: library, header, bench, manifest, test image; refused when the
    artifact's target/precision differ from `target` or it needs CPU features the `device` profile lacks."""
    import tempfile

    from srprune.imageio import write_image
    from srprune.imresize import imresize, to_uint8
    from srprune.metrics import psnr, ssim

    app = Path(app)
    if not (app / "app" / "build.gradle").is_file():
        raise InputError(f"{app} is not the demo app (no app/build.gradle); pass --app android_app")
    if target not in TARGETS or (device is not None and device not in DEVICE_PROFILES):
        check_target({}, Path(spec), target, device)  # the one-line error for a mistyped name, before any work
    with tempfile.TemporaryDirectory(prefix="srprune-stage-") as tmp:
        folder, source = resolve_clib(spec, scale, size, threads, seed, Path(tmp) / "clib", target)
        manifest = read_clib(folder, target, device)
        _, _, h, w = manifest["input"]["shape"]
        s = int(manifest["meta"]["scale"])
        image, lr, hr = bundled_test_image((w * s, h * s), s)
        bic = to_uint8(imresize(lr, scale=s))
        reference = {"image": image, "scale": s, "crop_border": s, "lr_size": [w, h],
                     "hr_size": [w * s, h * s], "bicubic_psnr_y": psnr(bic, hr, s), "bicubic_ssim_y": ssim(bic, hr, s)}
        files = [app / JNI_LIB, app / HEADER, app / ASSETS / "manifest.json", app / ASSETS / "reference.json",
                 app / ASSETS / "test_lr.png", app / ASSETS / "test_hr.png"]
        _copy(folder / manifest["library"], files[0])
        _copy(folder / manifest["header"], files[1])
        if manifest.get("bench") and (folder / manifest["bench"]).is_file():
            _copy(folder / manifest["bench"], app / BENCH_EXE, 0o755)
            files.append(app / BENCH_EXE)
        files[2].parent.mkdir(parents=True, exist_ok=True)
        write_text(files[2], json.dumps({**manifest, "staged_from": source}, indent=2, sort_keys=True) + "\n")
        write_text(files[3], json.dumps(reference, indent=2, sort_keys=True) + "\n")
        write_image(files[4], lr)
        write_image(files[5], hr)
    return Staged(app, source, str(manifest["meta"].get("model")), s, (w, h), (w * s, h * s), tuple(files), reference)


def read_clib_manifest(app: Path = APP_DIR) -> dict:
    """The manifest staged into the app's assets; InputError when nothing is staged."""
    path = Path(app) / ASSETS / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"no model staged in {app} ({path} unreadable): run `srprune android stage MODEL`") from exc


# ---------------------------------------------------------------- build


def _sdk_dir(app: Path, env: dict[str, str]) -> Path | None:
    for key in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        if env.get(key) and Path(env[key]).is_dir():
            return Path(env[key])
    props = app / "local.properties"
    if props.is_file():
        for line in props.read_text(encoding="utf-8").splitlines():
            if line.strip().startswith("sdk.dir="):
                path = Path(line.split("=", 1)[1].strip().replace("\\:", ":"))
                if path.is_dir():
                    return path
    return None


def build_command(app: Path = APP_DIR, env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The Gradle wrapper command that builds the debug APK, and its environment.

    InputError (one line: what is missing and how to get it) without a staged model, an SDK, an NDK,
    a JDK or the wrapper jar, so `srprune android build` never starts a build that cannot succeed.
    """
    env = dict(os.environ if env is None else env)
    app = Path(app)
    if not (app / JNI_LIB).is_file() or not (app / HEADER).is_file():
        raise InputError(f"no model staged in {app}: run `srprune android stage MODEL` first")
    sdk = _sdk_dir(app, env)
    if sdk is None:
        raise InputError(f"no Android SDK found (ANDROID_HOME, ANDROID_SDK_ROOT or sdk.dir in local.properties): "
                         f"{SDK_HINT}")
    ndk = env.get("ANDROID_NDK_HOME")
    if not (ndk and Path(ndk).is_dir()) and not (sdk / "ndk" / NDK_VERSION).is_dir():
        raise InputError(f"no Android NDK {NDK_VERSION} in {sdk / 'ndk'}: run `sdkmanager \"ndk;{NDK_VERSION}\"` "
                         "(or Android Studio > SDK Manager > SDK Tools > NDK)")
    java_home = env.get("JAVA_HOME")
    has_java = bool(java_home and Path(java_home, "bin", "java").exists())
    if not has_java and shutil.which("java", path=env.get("PATH")) is None:
        raise InputError("no Java runtime for Gradle: install JDK 17 (e.g. apt-get install openjdk-17-jdk-headless) "
                         "or set JAVA_HOME")
    if not (app / "gradle" / "wrapper" / "gradle-wrapper.jar").is_file():
        raise InputError(f"the Gradle wrapper jar is missing in {app}: run `gradle wrapper --gradle-version 8.9` "
                         "there once (see android_app/README.md)")
    env["ANDROID_HOME"] = str(sdk)
    return [str(app / "gradlew"), "--no-daemon", "assembleDebug"], env


# ---------------------------------------------------------------- adb


def find_adb(env: dict[str, str] | None = None) -> str:
    """adb on PATH or in $ANDROID_HOME/platform-tools; InputError saying how to install it."""
    env = dict(os.environ if env is None else env)
    found = shutil.which("adb", path=env.get("PATH"))
    if found:
        return found
    for key in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        cand = Path(env.get(key, "/nonexistent")) / "platform-tools" / "adb"
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    raise InputError('adb not found: install the platform tools (`sdkmanager "platform-tools"` or '
                     "apt-get install adb) and put adb on PATH")


def parse_devices(text: str) -> tuple[list[str], list[str]]:
    """`adb devices` output -> (ready serials, 'serial (state)' of the others: unauthorized, offline...)."""
    ready, other = [], []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or line.startswith(("List of devices", "*")):
            continue
        (ready if parts[1] == "device" else other).append(parts[0] if parts[1] == "device" else
                                                          f"{parts[0]} ({parts[1]})")
    return ready, other


def pick_device(devices_output: str, serial: str | None) -> str:
    """The one device to use; InputError when none is ready, or several and no --serial."""
    ready, other = parse_devices(devices_output)
    if serial:
        if serial not in ready:
            raise InputError(f"device {serial} is not connected and ready (adb devices: "
                             f"{', '.join(ready + other) or 'none'})")
        return serial
    if not ready:
        extra = f"; not ready: {', '.join(other)} (accept the USB debugging prompt on the phone)" if other else ""
        raise InputError(f"no Android device connected: plug in a phone with USB debugging on{extra}")
    if len(ready) > 1:
        raise InputError(f"several devices connected ({', '.join(ready)}): choose one with --serial")
    return ready[0]


def adb_run(cmd: list[str], what: str, timeout: float = 600) -> str:
    """Run one adb command; its failure becomes an InputError naming the step."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{what} failed: {exc}") from exc
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()
        raise InputError(f"{what} failed: {lines[-1].strip()}")
    return proc.stdout


def connected_device(adb: str, serial: str | None) -> str:
    """Ask adb for its devices and pick one."""
    return pick_device(adb_run([adb, "devices"], "adb devices", timeout=30), serial)


def install_command(adb: str, serial: str, apk: Path) -> list[str]:
    """Replace-install the debug APK (keeps the app's data)."""
    return [adb, "-s", serial, "install", "-r", str(apk)]


def bench_commands(adb: str, serial: str, library: Path, bench: Path, threads: list[int], runs: int,
                   warmup: int) -> list[list[str]]:
    """Push the model and srmodel_bench to the phone, then one timing run per thread count."""
    pre = [adb, "-s", serial]
    lib, exe = f"{DEVICE_DIR}/{library.name}", f"{DEVICE_DIR}/srmodel_bench"
    cmds = [pre + ["shell", "mkdir", "-p", DEVICE_DIR], pre + ["push", str(library), lib],
            pre + ["push", str(bench), exe], pre + ["shell", "chmod", "755", exe]]
    cmds += [pre + ["shell", exe, lib, "-n", str(runs), "-w", str(warmup), "-t", str(t)] for t in threads]
    return cmds


def device_model_command(adb: str, serial: str) -> list[str]:
    return [adb, "-s", serial, "shell", "getprop", "ro.product.model"]


@dataclass(frozen=True)
class BenchResult:
    """One srmodel_bench run on the phone (milliseconds per frame)."""

    describe: str
    median_ms: float
    min_ms: float
    max_ms: float
    runs: int
    threads: int


_TIMING = re.compile(r"median_ms=([\d.]+)\s+min_ms=([\d.]+)\s+max_ms=([\d.]+)\s+runs=(\d+)\s+threads=(\d+)")


def parse_bench(stdout: str) -> BenchResult:
    """srmodel_bench's output (description line, then the timing line); InputError on its `error:` lines."""
    lines = [ln.strip() for ln in stdout.replace("\r", "").splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("error:"):
            raise InputError(f"srmodel_bench on the phone: {ln[6:].strip()}")
    for i, ln in enumerate(lines):
        m = _TIMING.search(ln)
        if m:
            describe = lines[i - 1] if i else ""
            return BenchResult(describe, float(m[1]), float(m[2]), float(m[3]), int(m[4]), int(m[5]))
    raise InputError(f"srmodel_bench printed no timing line: {lines[-1] if lines else '(nothing)'}")


def bench_table(manifest: dict, device: str, results: list[BenchResult]) -> str:
    """A markdown table, one row per thread count, with the four things a latency needs (DESIGN.md):
    input size, target, threads, median; fps = 1000 / median."""
    _, _, h, w = manifest["input"]["shape"]
    _, _, oh, ow = manifest["output"]["shape"]
    meta = manifest.get("meta") or {}
    rows = ["| device | target | model | input | output | threads | median ms | min ms | max ms | runs | fps |",
            "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        rows.append(f"| {device} | {TARGET} | {meta.get('model', '?')} x{meta.get('scale', '?')} | {w}x{h} | "
                    f"{ow}x{oh} | {r.threads} | {r.median_ms:.2f} | {r.min_ms:.2f} | {r.max_ms:.2f} | {r.runs} | "
                    f"{1000.0 / r.median_ms if r.median_ms > 0 else float('inf'):.1f} |")
    return "\n".join(rows)


def bench_records(manifest: dict, device: str, results: list[BenchResult]) -> dict:
    """The same measurements as JSON (written with --json): whole-model latency records per thread count."""
    return {"format": "srprune-device-bench", "version": 1, "target": TARGET, "device": device,
            "input_shape": manifest["input"]["shape"], "output_shape": manifest["output"]["shape"],
            "model": (manifest.get("meta") or {}).get("model"), "scale": (manifest.get("meta") or {}).get("scale"),
            "config": (manifest.get("meta") or {}).get("config"),
            "candidate": (manifest.get("meta") or {}).get("candidate"),
            "library_sha256": (manifest.get("checksums") or {}).get(manifest.get("library", "libsrmodel.so")),
            "results": [asdict(r) for r in results]}
