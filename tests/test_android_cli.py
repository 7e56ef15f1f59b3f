"""`srprune android build|install|bench` where no SDK, NDK, adb or phone exists: one-line errors that name
what is missing, and the exact command lines and parsing they would use on a machine that has them.

adb cannot run here (no phone); where a test needs `adb devices` to answer, a two-line shell script on PATH
prints what real adb prints with no phone / an unauthorised phone (the text is adb's documented format).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from srprune import android
from srprune.errors import InputError
from tests.conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app(tmp_path) -> Path:
    """A copy of the app with placeholder staged files (build checks look only at their presence)."""
    dst = tmp_path / "app"
    shutil.copytree(ROOT / "android_app", dst, ignore=shutil.ignore_patterns("jniLibs", "staged", "assets", "build"))
    return dst


def _stage_placeholders(app: Path) -> None:
    for rel in (android.JNI_LIB, android.HEADER, android.BENCH_EXE):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_bytes(b"placeholder")


@pytest.fixture
def no_sdk(monkeypatch, tmp_path):
    for key in ("ANDROID_HOME", "ANDROID_SDK_ROOT", "ANDROID_NDK_HOME"):
        monkeypatch.delenv(key, raising=False)
    empty = tmp_path / "emptybin"
    empty.mkdir()
    return empty


def test_build_without_staged_model(run_cli, app, no_sdk):
    assert_one_line_error(run_cli("android", "build", "--app", app), "no model staged", "srprune android stage")


def test_build_names_the_missing_sdk_then_ndk_then_wrapper(run_cli, app, no_sdk, monkeypatch, tmp_path):
    _stage_placeholders(app)
    assert_one_line_error(run_cli("android", "build", "--app", app), "no Android SDK", "ANDROID_HOME",
                          f'"ndk;{android.NDK_VERSION}"')
    sdk = tmp_path / "sdk"
    (sdk / "platforms").mkdir(parents=True)
    monkeypatch.setenv("ANDROID_HOME", str(sdk))
    assert_one_line_error(run_cli("android", "build", "--app", app), "no Android NDK", "sdkmanager")
    (sdk / "ndk" / android.NDK_VERSION).mkdir(parents=True)
    if shutil.which("java"):
        assert_one_line_error(run_cli("android", "build", "--app", app), "Gradle wrapper jar",
                              "gradle wrapper --gradle-version 8.9")
    # the SDK may also come from local.properties, as Android Studio writes it
    monkeypatch.delenv("ANDROID_HOME")
    (app / "local.properties").write_text(f"sdk.dir={sdk}\n")
    (app / "gradle/wrapper/gradle-wrapper.jar").write_bytes(b"PK")
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java here to stand for the JDK Gradle needs")
    jdk = Path(os.path.realpath(java)).parents[1]
    cmd, env = android.build_command(app, {"PATH": str(no_sdk), "JAVA_HOME": str(jdk)})
    assert cmd == [str(app / "gradlew"), "--no-daemon", "assembleDebug"] and env["ANDROID_HOME"] == str(sdk)


def test_build_error_in_a_real_process(app, no_sdk):
    from tests.conftest import srprune_subprocess

    proc = srprune_subprocess("android", "build", "--app", str(app))
    assert_one_line_error(proc, "no model staged")


def test_build_without_java(app, no_sdk, tmp_path):
    _stage_placeholders(app)
    sdk = tmp_path / "sdk"
    (sdk / "ndk" / android.NDK_VERSION).mkdir(parents=True)
    with pytest.raises(InputError, match="no Java runtime for Gradle: install JDK 17"):
        android.build_command(app, {"ANDROID_HOME": str(sdk), "PATH": str(no_sdk)})


def test_gradlew_without_jar_says_how_to_create_it(app, tmp_path):
    import subprocess

    proc = subprocess.run(["sh", str(app / "gradlew"), "assembleDebug"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "gradle wrapper --gradle-version 8.9" in proc.stderr


def test_install_and_bench_without_adb(run_cli, app, no_sdk, monkeypatch):
    monkeypatch.setenv("PATH", str(no_sdk))
    _stage_placeholders(app)
    (app / android.ASSETS).mkdir(parents=True)
    (app / android.ASSETS / "manifest.json").write_text("{}")
    for cmd in ("install", "bench"):
        assert_one_line_error(run_cli("android", cmd, "--app", app), "adb not found", "platform-tools")


def _fake_adb(folder: Path, devices: str) -> None:
    adb = folder / "adb"
    adb.write_text(f"#!/bin/sh\nprintf '{devices}'\n")
    adb.chmod(0o755)


def test_install_without_device(run_cli, app, no_sdk, monkeypatch):
    monkeypatch.setenv("PATH", f"{no_sdk}{os.pathsep}/usr/bin{os.pathsep}/bin")
    _fake_adb(no_sdk, "List of devices attached\\n\\n")
    assert_one_line_error(run_cli("android", "install", "--app", app), "no Android device connected")
    _fake_adb(no_sdk, "List of devices attached\\nR58M123 unauthorized\\n\\n")
    assert_one_line_error(run_cli("android", "install", "--app", app), "R58M123 (unauthorized)",
                          "USB debugging prompt")


def test_bench_without_staged_model_or_with_bad_threads(run_cli, app):
    assert_one_line_error(run_cli("android", "bench", "--app", app), "no model staged")
    assert_one_line_error(run_cli("android", "bench", "--app", app, "--threads", "2,x"), "--threads")
    assert_one_line_error(run_cli("android", "bench", "--app", app, "--threads", "0"), "--threads")


def test_stage_refuses_a_folder_that_is_not_the_app(run_cli, tmp_path):
    assert_one_line_error(run_cli("android", "stage", "espcn", "--scale", "3", "--app", tmp_path), "not the demo app")


def test_stage_refuses_a_run_without_model(run_cli, app, tmp_path):
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    assert_one_line_error(run_cli("android", "stage", run, "--app", app), "final/model.pt")


def test_parse_devices_and_pick():
    text = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
            "List of devices attached\nabc123\tdevice\nemulator-5554\toffline\nxyz\tdevice usb:1-1 product:p\n\n")
    assert android.parse_devices(text) == (["abc123", "xyz"], ["emulator-5554 (offline)"])
    with pytest.raises(InputError, match="several devices connected .*--serial"):
        android.pick_device(text, None)
    assert android.pick_device(text, "xyz") == "xyz"
    with pytest.raises(InputError, match="device nope is not connected"):
        android.pick_device(text, "nope")


def test_command_lines():
    lib, exe = Path("/a/libsrmodel.so"), Path("/a/srmodel_bench")
    assert android.install_command("adb", "S1", Path("/x/app-debug.apk")) == \
        ["adb", "-s", "S1", "install", "-r", "/x/app-debug.apk"]
    cmds = android.bench_commands("adb", "S1", lib, exe, [1, 4], runs=30, warmup=5)
    d = android.DEVICE_DIR
    assert cmds == [
        ["adb", "-s", "S1", "shell", "mkdir", "-p", d],
        ["adb", "-s", "S1", "push", "/a/libsrmodel.so", f"{d}/libsrmodel.so"],
        ["adb", "-s", "S1", "push", "/a/srmodel_bench", f"{d}/srmodel_bench"],
        ["adb", "-s", "S1", "shell", "chmod", "755", f"{d}/srmodel_bench"],
        ["adb", "-s", "S1", "shell", f"{d}/srmodel_bench", f"{d}/libsrmodel.so", "-n", "30", "-w", "5", "-t", "1"],
        ["adb", "-s", "S1", "shell", f"{d}/srmodel_bench", f"{d}/libsrmodel.so", "-n", "30", "-w", "5", "-t", "4"]]


def test_bench_parser_errors_and_table():
    with pytest.raises(InputError, match="srmodel_bench on the phone: cannot load /data/x.so: dlopen failed"):
        android.parse_bench("error: cannot load /data/x.so: dlopen failed\r\n")
    with pytest.raises(InputError, match="no timing line"):
        android.parse_bench("espcn x3, target android-arm64, input 1x3x240x426\n")
    # adb shell output ends lines with \r\n on older devices
    r = android.parse_bench("espcn x3, target android-arm64, input 1x3x240x426\r\n"
                            "median_ms=25.000 min_ms=24.500 max_ms=30.250 runs=30 threads=4\r\n")
    assert (r.median_ms, r.min_ms, r.max_ms, r.runs, r.threads) == (25.0, 24.5, 30.25, 30, 4)
    manifest = {"input": {"shape": [1, 3, 240, 426]}, "output": {"shape": [1, 3, 720, 1278]},
                "meta": {"model": "espcn", "scale": 3}, "library": "libsrmodel.so",
                "checksums": {"libsrmodel.so": "ab"}}
    table = android.bench_table(manifest, "Pixel 8", [r])
    assert table.splitlines()[2] == ("| Pixel 8 | android-arm64 | espcn x3 | 426x240 | 1278x720 | 4 | 25.00 | 24.50 | "
                                     "30.25 | 30 | 40.0 |")
    rec = json.loads(json.dumps(android.bench_records(manifest, "Pixel 8", [r])))
    assert rec["results"][0]["median_ms"] == 25.0 and rec["input_shape"] == [1, 3, 240, 426]


def test_test_image_for_720p_is_a_grid_of_unresized_photos():
    from skimage import data

    from srprune.imresize import imresize, to_uint8

    what, lr, hr = android.bundled_test_image((1278, 720), 3)
    assert hr.shape == (720, 1278, 3) and lr.shape == (240, 426, 3) and what.startswith("2x3 grid")
    tiles = [("astronaut", 0, 0), ("coffee", 0, 426), ("retina", 360, 852)]
    for name, y, x in tiles:
        img = getattr(data, name)()
        y0, x0 = (img.shape[0] - 360) // 2, (img.shape[1] - 426) // 2
        assert (hr[y:y + 360, x:x + 426] == img[y0:y0 + 360, x0:x0 + 426]).all(), name
    assert (lr == to_uint8(imresize(hr, scale=1 / 3))).all()
