"""`srprune android apk`: a real signed APK built here without Gradle, checked with tools other than the build's.

One small model (ESPCN x2, seeded weights, 64x48 output) saved as a run's final/model.pt is built into an APK by
the CLI. The checks read the APK with Debian's tools and plain parsers written here:
- apksigner verifies it (v2), zipalign -c passes;
- `aapt dump badging` shows the package, sdk, target, launchable activity and native code of app/build.gradle;
- the dex has no call sites (its map list has no call_site_id items; no invoke-custom in dexdump), and every
  framework class, method and field it references exists in the API 23 android.jar (read with a class-file
  parser below), or in the compile-only shim whose API level is <= minSdk; a dex with a lambda fails both;
- lib/arm64-v8a/libsrmodel.so is the run's compiled library (sha256 = its manifest), and libsrdemo.so exports
  exactly the JNI names of the dex's native methods;
- the debug key and a user's keystore sign; outputs are refused without --force / when not srprune's.
Not shown by any of this: that the APK installs and runs on a phone.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import invoke_main

ROOT = Path(__file__).resolve().parents[1]
OUT_WH = (64, 48)
SCALE = 2


def _tools_or_skip():
    from srprune import apk
    from srprune.errors import InputError

    try:
        return apk.find_tools()
    except InputError:
        subprocess.run(["bash", str(ROOT / "scripts/install-system-deps.sh")], capture_output=True, timeout=900)
    try:
        return apk.find_tools()
    except InputError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The APK of the pipeline's apk stage (the same build as `srprune android apk`, which the CLI tests run)."""
    tools = _tools_or_skip()
    from srprune.models import resolve_model
    from srprune.models.modelfile import save_model
    from srprune.search.config import resolve
    from srprune.search.pipeline import Run
    from srprune.search.stages import BY_NAME

    root = tmp_path_factory.mktemp("apk")
    run_dir = root / "runs" / "r"
    (run_dir / "final").mkdir(parents=True)
    save_model(run_dir / "final" / "model.pt", resolve_model("espcn", SCALE, seed=0)[0])
    cfg = resolve({"budget_ms": 50, "run_dir": str(run_dir), "output_size": f"{OUT_WH[0]}x{OUT_WH[1]}",
                   "android": {"apk": True}})
    run = Run(cfg, progress=False)
    summary = BY_NAME["apk"].run(run, True)
    apk = run_dir / summary["apk"]
    work = root / "unpacked"
    with zipfile.ZipFile(apk) as z:
        z.extractall(work)
    return {"tools": tools, "root": root, "run": run_dir, "apk": apk, "work": work, "summary": summary,
            "stage": BY_NAME["apk"], "layout": run.layout}


def _gradle() -> dict:
    text = (ROOT / "android_app/app/build.gradle").read_text()
    return {"package": re.search(r'applicationId "([\w.]+)"', text)[1], "min": int(re.search(r"minSdk (\d+)", text)[1]),
            "target": int(re.search(r"targetSdk (\d+)", text)[1])}


def test_apk_verifies_with_apksigner_and_is_aligned(built):
    proc = subprocess.run(["apksigner", "verify", "--verbose", "--print-certs", str(built["apk"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Verified using v2 scheme (APK Signature Scheme v2): true" in proc.stdout
    assert "Verified using v3 scheme (APK Signature Scheme v3): true" in proc.stdout
    assert "CN=Android Debug" in proc.stdout
    assert subprocess.run(["zipalign", "-c", "-p", "4", str(built["apk"])], capture_output=True).returncode == 0
    with zipfile.ZipFile(built["apk"]) as z:
        assert z.getinfo("resources.arsc").compress_type == zipfile.ZIP_STORED  # Android 11+ refuses otherwise
    assert any(c.startswith("apksigner verify: v2") for c in built["summary"]["checks"])


def test_badging_shows_package_sdk_activity_and_abi(built):
    text = subprocess.run(["aapt", "dump", "badging", str(built["apk"])], capture_output=True, text=True,
                          timeout=60).stdout
    g = _gradle()
    assert f"package: name='{g['package']}'" in text
    assert f"sdkVersion:'{g['min']}'" in text and g["min"] == 26
    assert f"targetSdkVersion:'{g['target']}'" in text and g["target"] == 35
    assert f"launchable-activity: name='{g['package']}.MainActivity'" in text
    assert re.search(r"^native-code: 'arm64-v8a'$", text, re.M)
    assert "uses-permission: name='android.permission.CAMERA'" in text


# ---------------------------------------------------------------- dex and android.jar, read here


def _dex_call_site_items(dex: bytes) -> int:
    """Call-site ids in a dex, from its map list (type 0x0007), read without dexdump."""
    assert dex[:4] == b"dex\n"
    (map_off,) = struct.unpack_from("<I", dex, 0x34)
    (n,) = struct.unpack_from("<I", dex, map_off)
    for i in range(n):
        kind, _, size, _ = struct.unpack_from("<HHII", dex, map_off + 4 + 12 * i)
        if kind == 0x0007:
            return size
    return 0


def _parse_class(data: bytes) -> tuple[str | None, list[str], set[tuple[str, str]], set[str]]:
    """(super, interfaces, {(method, descriptor)}, {field}) of a class file."""
    (count,) = struct.unpack_from(">H", data, 8)
    pos, i, cp = 10, 1, [None] * count
    while i < count:
        tag = data[pos]
        pos += 1
        if tag == 1:
            (n,) = struct.unpack_from(">H", data, pos)
            cp[i] = data[pos + 2:pos + 2 + n].decode("utf-8", "replace")
            pos += 2 + n
        elif tag == 7:
            cp[i] = ("class", struct.unpack_from(">H", data, pos)[0])
            pos += 2
        elif tag in (8, 16, 19, 20):
            pos += 2
        elif tag in (3, 4, 9, 10, 11, 12, 17, 18):
            pos += 4
        elif tag in (5, 6):
            pos += 8
            i += 1
        elif tag == 15:
            pos += 3
        else:
            raise AssertionError(f"constant pool tag {tag}")
        i += 1

    def cls(idx: int) -> str | None:
        return cp[cp[idx][1]] if idx else None

    _, _, sup, nif = struct.unpack_from(">HHHH", data, pos)
    pos += 8
    ifaces = [cls(struct.unpack_from(">H", data, pos + 2 * k)[0]) for k in range(nif)]
    pos += 2 * nif
    members = []
    for _ in range(2):
        (cnt,) = struct.unpack_from(">H", data, pos)
        pos += 2
        out = set()
        for _ in range(cnt):
            _, ni, di, ac = struct.unpack_from(">HHHH", data, pos)
            pos += 8
            out.add((cp[ni], cp[di]))
            for _ in range(ac):
                pos += 6 + struct.unpack_from(">I", data, pos + 2)[0]
        members.append(out)
    return cls(sup), ifaces, members[1], {name for name, _ in members[0]}


class Jar:
    """Classes of a jar, parsed on demand; `has(cls, name, desc)` looks up through supers and interfaces."""

    def __init__(self, path: Path) -> None:
        self.zip = zipfile.ZipFile(path)
        self.names = set(self.zip.namelist())
        self.cache: dict[str, tuple] = {}

    def get(self, cls: str):
        if cls not in self.cache:
            name = cls + ".class"
            self.cache[cls] = _parse_class(self.zip.read(name)) if name in self.names else None
        return self.cache[cls]

    def has(self, cls: str, name: str, desc: str | None) -> bool:
        todo, seen = [cls, "java/lang/Object"], set()
        while todo:
            c = todo.pop()
            if c is None or c in seen:
                continue
            seen.add(c)
            info = self.get(c)
            if info is None:
                continue
            sup, ifaces, methods, fields = info
            if (desc is None and name in fields) or (desc is not None and (name, desc) in methods):
                return True
            todo += [sup, *ifaces]
        return False


_REF = re.compile(r"(L[\w/$]+;)\.([\w$<>]+):(\S+) // (method|field)@")


def _dex_model(dexdump_text: str) -> tuple[dict[str, tuple[str, list[str], set[str]]], set[tuple[str, str, str, str]]]:
    """From `dexdump -d`: the dex's own classes {name: (super, interfaces, member names)} and every referenced
    member (class, name, type, method|field)."""
    classes: dict[str, tuple[str, list[str], set[str]]] = {}
    cur = None
    for line in dexdump_text.splitlines():
        m = re.match(r"\s*Class descriptor\s*:\s*'L([\w/$]+);'", line)
        if m:
            cur = m[1]
            classes[cur] = ("", [], set())
            continue
        if cur is None:
            continue
        m = re.match(r"\s*Superclass\s*:\s*'L([\w/$]+);'", line)
        if m:
            classes[cur] = (m[1], classes[cur][1], classes[cur][2])
        m = re.match(r"\s*#\d+\s*:\s*'L([\w/$]+);'$", line)
        if m:
            classes[cur][1].append(m[1])
        m = re.match(r"\s*name\s*:\s*'([\w$<>]+)'", line)
        if m:
            classes[cur][2].add(m[1])
    refs = {(m[1][1:-1], m[2], m[3], m[4]) for m in _REF.finditer(dexdump_text)}
    return classes, refs


def _unresolved(dex_text: str, jar: Jar, shims: dict[str, int], min_sdk: int) -> list[str]:
    classes, refs = _dex_model(dex_text)
    bad = []
    for cls, name, typ, kind in sorted(refs):
        c = cls
        while c in classes and name not in classes[c][2]:  # an app class: inherited members resolve above it
            c = classes[c][0]
        if c in classes:
            continue  # the app's own member
        if c in shims and shims[c] <= min_sdk:
            continue
        if not jar.has(c, name, typ if kind == "method" else None):
            bad.append(f"{cls}.{name}:{typ}")
    return bad


def test_dex_has_no_call_sites_and_only_api23_framework_references(built):
    from srprune import apk

    tools = built["tools"]
    dex_file = built["work"] / "classes.dex"
    assert _dex_call_site_items(dex_file.read_bytes()) == 0
    text = subprocess.run(["dexdump", "-d", str(dex_file)], capture_output=True, text=True, timeout=120).stdout
    assert "invoke-custom" not in text and "invoke-polymorphic" not in text
    classes, refs = _dex_model(text)
    assert len(classes) >= 20 and "com/srprune/demo/MainActivity" in classes
    framework = {r for r in refs if not r[0].startswith("com/srprune/")}
    assert len(framework) > 50
    # inherited framework methods are referenced through the app's class: resolved by walking up to Activity
    assert ("com/srprune/demo/MainActivity", "setContentView", "(Landroid/view/View;)V", "method") in refs
    jar = Jar(tools.android_jar)
    assert _unresolved(text, jar, apk.SHIMS, _gradle()["min"]) == []
    # the check can fail: a method added in API 29, a missing class, and the shim with minSdk below its API
    assert not jar.has("android/media/MediaMetadataRetriever", "close", "()V")
    assert jar.has("android/media/MediaMetadataRetriever", "release", "()V")
    fake = text + "\n  |0000: invoke-virtual {v0}, Landroid/media/MediaMetadataRetriever;.close:()V // method@0001\n"
    assert _unresolved(fake, jar, apk.SHIMS, 26) == ["android/media/MediaMetadataRetriever.close:()V"]
    assert any("java/util/function/Supplier" in b for b in _unresolved(text, jar, apk.SHIMS, 23))


def test_a_lambda_would_be_caught(built, tmp_path):
    """The same dx on a class with a lambda gives call sites that both checks see (so they are not vacuous)."""
    tools = built["tools"]
    src = tmp_path / "L.java"
    src.write_text("public class L { Runnable r() { return () -> {}; } }\n")
    subprocess.run([tools.exe["javac"], "--release", "8", "-d", str(tmp_path / "c"), str(src)], check=True,
                   capture_output=True, cwd=tmp_path)  # the JDK's Java 8 API: android.jar has no LambdaMetafactory
    subprocess.run([tools.exe["java"], "-jar", str(tools.dx_jar), "--dex", "--min-sdk-version=26",
                    f"--output={tmp_path / 'l.dex'}", str(tmp_path / "c")], check=True, capture_output=True)
    assert _dex_call_site_items((tmp_path / "l.dex").read_bytes()) == 1
    text = subprocess.run(["dexdump", "-d", str(tmp_path / "l.dex")], capture_output=True, text=True).stdout
    assert "invoke-custom" in text
    from srprune import apk

    assert apk.dex_call_sites(tools, tmp_path / "l.dex") == (1, 1)  # the build's own check refuses it too


def test_native_libraries_are_the_staged_ones(built):
    manifest = json.loads((built["run"] / "android/clib/manifest.json").read_text())
    libs = sorted(p.name for p in (built["work"] / "lib").rglob("*") if p.is_file())
    assert libs == ["libsrdemo.so", "libsrmodel.so"]
    assert [p.parent.name for p in (built["work"] / "lib").rglob("*.so")] == ["arm64-v8a"] * 2
    lib = built["work"] / "lib/arm64-v8a/libsrmodel.so"
    assert hashlib.sha256(lib.read_bytes()).hexdigest() == manifest["checksums"]["libsrmodel.so"]
    assert lib.read_bytes() == (built["run"] / "android/clib/libsrmodel.so").read_bytes()
    inside = json.loads((built["work"] / "assets/srmodel/manifest.json").read_text())
    assert inside["checksums"] == manifest["checksums"] and inside["input"]["shape"] == [1, 3, 24, 32]
    from compiler.clib.toolchain import inspect_elf

    demo = inspect_elf(built["work"] / "lib/arm64-v8a/libsrdemo.so")
    assert demo["machine"] == "AArch64" and set(demo["needed"]) <= {"libc.so", "libm.so", "libdl.so", "liblog.so"}


def _jni_mangle(s: str) -> str:
    assert re.fullmatch(r"[\w/$]+", s), s
    return s.replace("_", "_1").replace("/", "_").replace("$", "_00024")


def test_jni_symbols_match_the_dex_native_methods(built):
    text = subprocess.run(["dexdump", str(built["work"] / "classes.dex")], capture_output=True, text=True).stdout
    natives, cls, name = set(), None, None
    for line in text.splitlines():
        m = re.match(r"\s*Class descriptor\s*:\s*'L([\w/$]+);'", line)
        cls = m[1] if m else cls
        m = re.match(r"\s*name\s*:\s*'([\w$]+)'", line)
        name = m[1] if m else name
        if re.match(r"\s*access\s*:.*\bNATIVE\b", line):
            natives.add(f"Java_{_jni_mangle(cls)}_{_jni_mangle(name)}")
    assert len(natives) == 8
    dyn = subprocess.run(["readelf", "-W", "--dyn-syms", str(built["work"] / "lib/arm64-v8a/libsrdemo.so")],
                         capture_output=True, text=True).stdout
    exported = {ln.split()[-1] for ln in dyn.splitlines() if " GLOBAL " in ln and " UND " not in ln}
    assert exported == natives


def test_user_keystore_and_staged_model(built, tmp_path):
    """`android apk` with no MODEL packs the model staged in --app, signed with the user's keystore."""
    from srprune import android

    app = tmp_path / "app"
    shutil.copytree(ROOT / "android_app", app, ignore=shutil.ignore_patterns("jniLibs", "staged", "assets", "build"))
    r = invoke_main("android", "apk", "--app", app, "-o", tmp_path / "x.apk")
    assert r.code == 2 and r.err.count("\n") == 1 and "android stage" in r.err  # nothing staged yet
    android.stage(str(built["run"] / "android/clib"), app)
    ks = tmp_path / "user.p12"
    subprocess.run([built["tools"].exe["keytool"], "-genkeypair", "-keystore", str(ks), "-storetype", "PKCS12",
                    "-storepass", "secret1", "-keypass", "secret1", "-alias", "me", "-keyalg", "RSA", "-keysize",
                    "2048", "-validity", "2", "-dname", "CN=Tester,O=srprune"], check=True, capture_output=True)
    out = tmp_path / "user.apk"
    r = invoke_main("android", "apk", "--app", app, "-o", out, "--keystore", ks, "--ks-pass", "pass:secret1")
    assert r.code == 0, r.output
    assert "not checked here: that it installs and runs on a phone" in r.out and "apksigner verify: v2" in r.out
    certs = subprocess.run(["apksigner", "verify", "--print-certs", str(out)], capture_output=True, text=True).stdout
    assert "CN=Tester, O=srprune" in certs
    with zipfile.ZipFile(out) as z, zipfile.ZipFile(built["apk"]) as ref:
        assert z.read("lib/arm64-v8a/libsrmodel.so") == ref.read("lib/arm64-v8a/libsrmodel.so")
    assert not list((ROOT / "android_app").glob("app/src/main/assets/srmodel/x*"))  # built in a copy, not in place
    # an APK srprune wrote is replaced only with --force; a file of the user's never
    r = invoke_main("android", "apk", "--app", app, "-o", out)
    assert r.code == 2 and "already exists" in r.err
    mine = tmp_path / "mine.apk"
    mine.write_text("the user's")
    r = invoke_main("android", "apk", "--app", app, "-o", mine, "--force")
    assert r.code == 2 and "not written by srprune" in r.err and mine.read_text() == "the user's"
    r = invoke_main("android", "apk", "--app", app, "-o", tmp_path / "y.apk", "--keystore", ks)
    assert r.code == 2 and "--ks-pass" in r.err
    r = invoke_main("android", "apk", "--app", app, "-o", tmp_path / "y.apk", "--keystore", ks, "--ks-pass",
                    "pass:wrong")
    assert r.code == 2 and r.err.startswith(f"error: {ks}: cannot open the keystore") and r.err.count("\n") == 1
    assert not (tmp_path / "y.apk").exists()  # refused before any work
    r = invoke_main("android", "apk", "--app", app, "-o", tmp_path / "y.apk", "--keystore", ks, "--ks-pass",
                    "pass:secret1", "--key-alias", "nobody")
    assert r.code == 2 and "--key-alias nobody" in r.err and r.err.count("\n") == 1


def test_missing_tools_is_one_line_naming_the_script(tmp_path, monkeypatch):
    monkeypatch.setenv("SRPRUNE_ANDROID_SDK", str(tmp_path / "nothing"))
    r = invoke_main("android", "apk", "espcn", "--scale", "2", "-o", tmp_path / "a.apk")
    assert r.code == 2 and r.err.count("\n") == 1
    assert "scripts/install-system-deps.sh" in r.err and "android-23/android.jar" in r.err
    assert not (tmp_path / "a.apk").exists()


# ---------------------------------------------------------------- the pipeline's optional stage


def test_apk_setting_is_typed_and_off_by_default(tmp_path, monkeypatch):
    from srprune.errors import InputError
    from srprune.search.config import resolve
    from srprune.search.stages import BY_NAME

    cfg = resolve({"budget_ms": 50, "run_dir": str(tmp_path / "r")})
    assert cfg["android"] == {"apk": False} and not BY_NAME["apk"].enabled(cfg)
    assert not BY_NAME["apk"].enabled({"target": "host"})  # a config.yaml written before the setting existed
    for bad in (1, "yes", None):
        with pytest.raises(InputError, match="android.apk must be true or false"):
            resolve({"budget_ms": 50, "run_dir": "r", "android": {"apk": bad}})
    # on: the tools are checked when the config is read, before any stage runs
    with monkeypatch.context() as m, pytest.raises(InputError, match=r"^config: android.apk: cannot build an APK, "
                                                                      r"missing: .*install-system-deps"):
        m.setenv("SRPRUNE_ANDROID_SDK", str(tmp_path / "nothing"))
        resolve({"budget_ms": 50, "run_dir": "r", "android": {"apk": True}})
    _tools_or_skip()
    assert BY_NAME["apk"].enabled(resolve({"budget_ms": 50, "run_dir": "r", "android": {"apk": True}}))


def test_apk_stage_puts_the_signed_apk_in_the_run(built):
    from srprune.apk import default_output

    stage, layout, summary = built["stage"], built["layout"], built["summary"]
    assert stage.writes(layout) == [built["run"] / "android"] and stage.reads_model and "android.apk" in stage.reads
    apk = built["run"] / summary["apk"]
    assert apk == built["run"] / "android/srprune-demo.apk" == default_output(str(built["run"]))
    assert summary["min_sdk"] == 26 and 2 in summary["schemes"]
    clib = json.loads((built["run"] / "android/clib/manifest.json").read_text())
    with zipfile.ZipFile(apk) as z:
        lib = z.read("lib/arm64-v8a/libsrmodel.so")
    assert hashlib.sha256(lib).hexdigest() == clib["checksums"]["libsrmodel.so"] == summary["libs_sha256"][
        "libsrmodel.so"]
    assert clib["input"]["shape"] == [1, 3, OUT_WH[1] // SCALE, OUT_WH[0] // SCALE]
    assert default_output("espcn") == Path("srprune-demo.apk")
