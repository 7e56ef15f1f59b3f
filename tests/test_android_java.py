"""The app's Java sources compile with javac (no warnings) against minimal stubs of the Android classes
(tests/android_stubs), and the Gradle files say what the issue asks: minSdk 26, arm64-v8a, the CMake build.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "android_app"


@pytest.fixture(scope="module")
def javac():
    if shutil.which("javac") is None:
        pytest.skip("javac unavailable (scripts/install-system-deps.sh installs openjdk-17-jdk-headless)")
    return "javac"


def test_java_sources_compile_against_android_stubs(javac, tmp_path):
    stubs = [str(p) for p in (ROOT / "tests/android_stubs").rglob("*.java")]
    app = [str(p) for p in (APP / "app/src/main/java").rglob("*.java")]
    assert len(app) >= 5
    proc = subprocess.run([javac, "-nowarn", "-d", str(tmp_path / "stubs"), *stubs], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([javac, "-Xlint:all", "-Werror", "--release", "17", "-cp", str(tmp_path / "stubs"), "-d",
                           str(tmp_path / "app"), *app], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "app/com/srprune/demo/MainActivity.class").is_file()


def test_stubs_are_not_part_of_the_app():
    assert not list(APP.rglob("android/app/Activity.java"))
    assert not (APP / "app/src/main/java/android").exists() and not (APP / "app/src/main/java/org").exists()


def test_gradle_project_settings():
    gradle = (APP / "app/build.gradle").read_text()
    assert re.search(r"minSdk 26\b", gradle) and 'abiFilters "arm64-v8a"' in gradle
    assert 'path "src/main/cpp/CMakeLists.txt"' in gradle
    from srprune.android import NDK_VERSION

    assert f'ndkVersion "{NDK_VERSION}"' in gradle
    assert 'include ":app"' in (APP / "settings.gradle").read_text()
    props = (APP / "gradle/wrapper/gradle-wrapper.properties").read_text()
    assert "gradle-8.9-bin.zip" in props
    manifest = (APP / "app/src/main/AndroidManifest.xml").read_text()
    assert 'android:name=".MainActivity"' in manifest and "android.permission.CAMERA" in manifest
    cmake = (APP / "app/src/main/cpp/CMakeLists.txt").read_text()
    assert "sr_jni.c sr_engine.c sr_core.c" in cmake and "srprune android stage" in cmake
