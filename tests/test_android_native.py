"""The demo app's native side, checked without an NDK or a phone.

One small model (ESPCN x3, seeded weights, 96x72 output), saved as a run's final/model.pt, is staged by
`srprune android stage RUN` into a copy of android_app/ (compiled for android-arm64 into RUN/compiled/ on the
way). Then:
- the staged files are where the app's CMakeLists.txt / Java code look, and the bundled test image follows
  the protocol (LR = MATLAB bicubic of HR; reference numbers = srprune.metrics);
- the JNI layer (app/src/main/cpp) compiles and links for aarch64-linux-android with clang + lld against
  the JDK's jni.h and stub bionic libraries, exports exactly the natives javac declares for NativeEngine;
- a harness (tests/test_android_harness.c) linked from the same C files runs under qemu-aarch64 with the
  staged libsrmodel.so and is compared with PyTorch (model), srprune.imresize (bicubic) and
  srprune.metrics (PSNR/SSIM), and the staged srmodel_bench's real output goes through the bench parser.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.clib.toolchain import GNU_SYSROOT, PAGE_16K, glibc_shims, inspect_elf
from srprune import android, android_native
from srprune.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "android_app" / "app" / "src" / "main" / "cpp"
JAVA = ROOT / "android_app" / "app" / "src" / "main" / "java"
TOOLS = ("clang", "ld.lld", "qemu-aarch64", "aarch64-linux-gnu-gcc", "readelf", "javac")
OUT_WH = (96, 72)
SCALE = 3


def _missing() -> list[str]:
    gone = [t for t in TOOLS if shutil.which(t) is None]
    return gone + ([f"{GNU_SYSROOT}/lib/libc.so.6"] if not os.path.exists(f"{GNU_SYSROOT}/lib/libc.so.6") else [])


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    if _missing():
        subprocess.run(["bash", str(ROOT / "scripts/install-system-deps.sh")], capture_output=True, timeout=600)
    if _missing():
        pytest.skip(f"tools unavailable: {', '.join(_missing())} (run scripts/install-system-deps.sh)")
    from srprune.cli import main
    from srprune.models import resolve_model
    from srprune.models.modelfile import save_model

    root = tmp_path_factory.mktemp("android")
    app = root / "app_copy"
    shutil.copytree(ROOT / "android_app", app, ignore=shutil.ignore_patterns("jniLibs", "staged", "assets", "build"))
    run = root / "runs" / "demo"  # a run folder holding only final/model.pt: stage compiles into compiled/
    (run / "final").mkdir(parents=True)
    save_model(run / "final" / "model.pt", resolve_model("espcn", SCALE, seed=0)[0])
    try:
        main(["android", "stage", str(run), "--size", f"{OUT_WH[0]}x{OUT_WH[1]}", "--app", str(app)])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    assert (run / "compiled" / "android-arm64" / "libsrmodel.so").is_file()
    return root, app


def _build(app: Path, work: Path, sources: list[Path], out: Path, *, shared: bool, extra=()) -> Path:
    """Compile and link as `srprune android apk` does (srprune.android_native: the NDK build's flags, stub bionic
    libraries, `-z defs`: nothing unresolved)."""
    return android_native.build(app, work, sources, out, shared=shared, extra=extra)


def _java_natives(work: Path) -> set[str]:
    """JNI symbol names of NativeEngine's native methods, from the header `javac -h` generates."""
    stubs = work / "stubs"
    srcs = [str(p) for p in (ROOT / "tests" / "android_stubs").rglob("*.java")]
    subprocess.run(["javac", "-nowarn", "-d", str(stubs), *srcs], check=True, capture_output=True, timeout=120)
    subprocess.run(["javac", "-cp", str(stubs), "-d", str(work / "classes"), "-h", str(work / "h"),
                    *map(str, JAVA.rglob("*.java"))], check=True, capture_output=True, timeout=120)
    header = (work / "h" / "com_srprune_demo_NativeEngine.h").read_text()
    return {ln.split("JNICALL", 1)[1].strip() for ln in header.splitlines() if "JNICALL" in ln}


def test_stage_puts_files_where_the_app_reads_them(staged):
    _, app = staged
    manifest = json.loads((app / android.ASSETS / "manifest.json").read_text())
    lib = app / "app/src/main/jniLibs/arm64-v8a/libsrmodel.so"
    assert hashlib.sha256(lib.read_bytes()).hexdigest() == manifest["checksums"]["libsrmodel.so"]
    assert inspect_elf(lib)["machine"] == "AArch64"
    assert (app / "app/src/main/cpp/staged/srmodel.h").read_bytes() == \
        (ROOT / "compiler/clib/csrc/srmodel.h").read_bytes()
    assert os.access(app / "app/src/main/cpp/staged/srmodel_bench", os.X_OK)
    assert manifest["target"]["triple"] == "aarch64-linux-android" and manifest["meta"]["scale"] == SCALE
    assert manifest["input"]["shape"] == [1, 3, OUT_WH[1] // SCALE, OUT_WH[0] // SCALE]
    # the CMake build and the Java code name these very paths
    assert "staged/srmodel.h" in (CPP / "CMakeLists.txt").read_text().replace("${STAGED}", "staged")
    java = "".join((JAVA / "com/srprune/demo" / f).read_text() for f in ("ModelInfo.java", "MainActivity.java"))
    for asset in ("srmodel/manifest.json", "srmodel/test_lr.png", "srmodel/test_hr.png", "srmodel/reference.json"):
        assert asset in java and (app / "app/src/main/assets" / asset).is_file()
    ignored = (ROOT / "android_app/.gitignore").read_text()
    for path in ("app/src/main/jniLibs/", "app/src/main/assets/srmodel/", "app/src/main/cpp/staged/"):
        assert path in ignored


def test_bundled_test_image_follows_the_protocol(staged):
    from srprune.imageio import read_image
    from srprune.imresize import imresize, to_uint8
    from srprune.metrics import psnr, ssim

    _, app = staged
    lr = read_image(app / android.ASSETS / "test_lr.png")
    hr = read_image(app / android.ASSETS / "test_hr.png")
    assert hr.shape == (OUT_WH[1], OUT_WH[0], 3) and lr.shape == (OUT_WH[1] // SCALE, OUT_WH[0] // SCALE, 3)
    np.testing.assert_array_equal(lr, to_uint8(imresize(hr, scale=1 / SCALE)))
    ref = json.loads((app / android.ASSETS / "reference.json").read_text())
    from skimage import data

    y0, x0 = (512 - OUT_WH[1]) // 2, (512 - OUT_WH[0]) // 2  # a centre crop of astronaut, not resized
    assert ref["image"] == "skimage.data.astronaut"
    np.testing.assert_array_equal(hr, data.astronaut()[y0:y0 + OUT_WH[1], x0:x0 + OUT_WH[0]])
    bic = to_uint8(imresize(lr, scale=SCALE))
    assert ref["bicubic_psnr_y"] == pytest.approx(psnr(bic, hr, SCALE), abs=1e-9)
    assert ref["bicubic_ssim_y"] == pytest.approx(ssim(bic, hr, SCALE), abs=1e-9)
    assert 15 < ref["bicubic_psnr_y"] < 45 and 0.3 < ref["bicubic_ssim_y"] < 1  # a real photo, not a flat image


def test_jni_layer_links_for_android_and_exports_the_java_natives(staged):
    root, app = staged
    work = root / "jni"
    natives = _java_natives(work)
    assert len(natives) == 8
    # compiled with javac's generated prototypes included: a signature that differs from Java's is an error
    lib = _build(app, work / "obj", [CPP / "sr_jni.c", CPP / "sr_engine.c", CPP / "sr_core.c"], work / "libsrdemo.so",
                 shared=True, extra=("-include", str(work / "h" / "com_srprune_demo_NativeEngine.h")))
    info = inspect_elf(lib)
    assert info["machine"] == "AArch64" and not info["textrel"]
    assert set(info["needed"]) <= {"libc.so", "libm.so", "libdl.so", "liblog.so"} and "libdl.so" in info["needed"]
    assert all(seg["align"] == PAGE_16K for seg in info["loads"])
    dyn = subprocess.run(["readelf", "-W", "--dyn-syms", str(lib)], capture_output=True, text=True).stdout
    exported = {ln.split()[-1] for ln in dyn.splitlines() if " GLOBAL " in ln and " UND " not in ln}
    assert exported == natives


def _harness(root: Path, app: Path) -> tuple[list[str], Path]:
    exe = root / "harness" / "harness"
    if not exe.exists():
        _build(app, root / "harness", [ROOT / "tests/test_android_harness.c", CPP / "sr_engine.c", CPP / "sr_core.c"],
               exe, shared=False)
    shims = glibc_shims(root / "shims")
    return ["qemu-aarch64", "-L", GNU_SYSROOT, f"{GNU_SYSROOT}/lib/ld-linux-aarch64.so.1", "--library-path",
            str(shims)], exe


def _rgba(rgb: np.ndarray, pad: int) -> bytes:
    h, w, _ = rgb.shape
    rows = np.concatenate([rgb, np.full((h, w, 1), 7, np.uint8)], axis=2).reshape(h, w * 4)
    return np.concatenate([rows, np.full((h, pad), 99, np.uint8)], axis=1).tobytes()


def test_c_layer_under_qemu_equals_python_references(staged):
    from srprune.imageio import read_image
    from srprune.imresize import imresize, to_uint8
    from srprune.metrics import psnr, ssim
    from srprune.models import deploy, resolve_model

    root, app = staged
    qemu, exe = _harness(root, app)
    lr = read_image(app / android.ASSETS / "test_lr.png")
    hr = read_image(app / android.ASSETS / "test_hr.png")
    (root / "lr.rgba").write_bytes(_rgba(lr, 12))  # padded rows: the stride path of the RGBA conversion
    (root / "hr.rgba").write_bytes(_rgba(hr, 0))
    out = root / "out"
    out.mkdir(exist_ok=True)
    proc = subprocess.run([*qemu, str(exe), str(app / android.JNI_LIB), str(root / "lr.rgba"), str(root / "hr.rgba"),
                           "12", "2", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    vals = dict(kv.split("=") for kv in proc.stdout.split())
    oh, ow = hr.shape[:2]
    assert vals["out"] == f"{ow}x{oh}" and vals["scale"] == str(SCALE) and vals["threads"] == "2"
    assert vals["alpha_ok"] == "1"
    sr = np.fromfile(out / "sr.rgb", np.uint8).reshape(hr.shape)
    bic = np.fromfile(out / "bicubic.rgb", np.uint8).reshape(hr.shape)
    # the model: PyTorch on the same LR, rounded (run_rgb8 rounds; float order may move a value by 1)
    net, _ = resolve_model("espcn", SCALE, seed=0)
    with torch.no_grad():
        want = deploy(net).eval()(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)
    want = (want[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    assert np.abs(sr.astype(int) - want).max() <= 1 and np.mean(sr == want) > 0.99
    # bicubic: srprune.imresize (MATLAB) rounded half-to-even
    ref_bic = to_uint8(imresize(lr, scale=SCALE))
    assert np.abs(bic.astype(int) - ref_bic).max() <= 1 and np.mean(bic == ref_bic) > 0.999
    # PSNR/SSIM of the C layer on its own outputs vs srprune.metrics on the same pixels
    assert float(vals["psnr_sr"]) == pytest.approx(psnr(sr, hr, SCALE), rel=1e-9)
    assert float(vals["ssim_sr"]) == pytest.approx(ssim(sr, hr, SCALE), rel=1e-7)
    assert float(vals["psnr_bic"]) == pytest.approx(psnr(bic, hr, SCALE), rel=1e-9)
    assert float(vals["ssim_bic"]) == pytest.approx(ssim(bic, hr, SCALE), rel=1e-7)
    assert float(vals["psnr_sr"]) < float(vals["psnr_bic"])  # untrained ESPCN is worse than bicubic: not a copy


def test_engine_reports_a_foreign_or_missing_library(staged):
    root, app = staged
    qemu, exe = _harness(root, app)
    args = [str(root / "lr.rgba"), str(root / "hr.rgba"), "0", "1", str(root)]
    proc = subprocess.run([*qemu, str(exe), str(root / "shims" / "libm.so"), *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "srmodel_abi_version is not in the model library" in proc.stdout, proc.stdout
    proc = subprocess.run([*qemu, str(exe), str(root / "nope.so"), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "cannot load the model library" in proc.stdout, proc.stdout


def test_bench_parser_reads_the_real_srmodel_bench(staged):
    root, app = staged
    qemu, _ = _harness(root, app)
    proc = subprocess.run([*qemu, str(app / android.BENCH_EXE), str(app / android.JNI_LIB), "-n", "3", "-w", "0",
                           "-t", "2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = android.parse_bench(proc.stdout)
    assert result.runs == 3 and result.threads == 2 and "espcn x3" in result.describe
    assert 0 < result.min_ms <= result.median_ms <= result.max_ms
    manifest = android.read_clib_manifest(app)
    table = android.bench_table(manifest, "qemu", [result])
    assert f"| 32x24 | 96x72 | 2 | {result.median_ms:.2f} |" in table


def test_stage_refuses_artifacts_the_app_cannot_load(staged, tmp_path):
    root, app = staged
    src = app / android.ASSETS / "manifest.json"
    good = json.loads(src.read_text())
    cases = [({**good, "target": {**good["target"], "triple": "x86_64-linux-gnu"}}, "x86_64-linux-gnu"),
             ({**good, "kind": "tvm"}, "c-lib"),
             ({**good, "meta": {**good["meta"], "scale": 2}}, "x2"),
             ({**good, "checksums": {**good["checksums"], "libsrmodel.so": "0" * 64}}, "checksum")]
    for manifest, fragment in cases:
        folder = tmp_path / fragment
        folder.mkdir()
        shutil.copy(app / android.JNI_LIB, folder / "libsrmodel.so")
        (folder / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(InputError, match=fragment):
            android.read_clib(folder)
    # the staged files gathered back into a compiled folder stage again, without compiling
    fresh = tmp_path / "fresh_app"
    shutil.copytree(ROOT / "android_app", fresh, ignore=shutil.ignore_patterns("jniLibs", "staged", "assets", "build"))
    again = android.stage(str(_clib_folder(app, tmp_path)), fresh)
    assert again.source.startswith("compiled folder") and again.scale == SCALE and again.model == "espcn"
    assert (fresh / android.JNI_LIB).read_bytes() == (app / android.JNI_LIB).read_bytes()
    # a run folder: its compiled/android-arm64 c-lib is used as it is (DESIGN.md's run layout)
    run = tmp_path / "runs" / "r1"
    shutil.copytree(_clib_folder(app, tmp_path / "again"), run / "compiled" / "android-arm64")
    from_run = android.stage(str(run), fresh)
    assert from_run.source.startswith(f"run {run}") and from_run.input_wh == (OUT_WH[0] // SCALE, OUT_WH[1] // SCALE)


def _clib_folder(app: Path, tmp: Path) -> Path:
    """The staged files gathered back into a c-lib folder (manifest + library + header)."""
    folder = tmp / "restaged"
    folder.mkdir(parents=True)
    shutil.copy(app / android.JNI_LIB, folder / "libsrmodel.so")
    shutil.copy(app / android.HEADER, folder / "srmodel.h")
    shutil.copy(app / android.ASSETS / "manifest.json", folder / "manifest.json")
    return folder
