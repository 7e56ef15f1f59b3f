"""`srprune android apk`: the demo app as a signed debug APK, built without Gradle, the Android SDK or the NDK.

Why: users deploy an APK, and this machine has neither Gradle nor the SDK. Debian has the pieces: Debian 12's
aapt2, zipalign, apksigner, dexdump and framework-res.apk (API 29 resources to link against), and Debian 11's
API 23 android.jar and dx (fetched by scripts/fetch-android-bullseye.sh into a private folder, see `sdk_dir`).
The steps are Gradle's for a debug build: stage the model (srprune.android.stage, into a private copy of the
app: android_app/ itself is not touched), build libsrdemo.so (srprune.android_native), javac -source/-target 8
against android.jar (+ a compile-only java.util.function.Supplier: API 24, present on every minSdk 26 device),
dx, aapt2 compile/link (package= and the SDK levels injected as Gradle does, read from app/build.gradle), the
dex and lib/arm64-v8a/{libsrdemo,libsrmodel}.so added, zipalign, apksigner sign with a debug key (or the
user's keystore), then every check `verify_apk` can make here. What no check here shows: that the APK installs
and runs on a phone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from srcommon.atomic import atomic_path
from srcommon.progress import note
from srprune import android
from srprune.errors import InputError

INSTALL_HINT = "run scripts/install-system-deps.sh (Debian 12 packages + Debian 11's android.jar and dx)"
FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")
ANDROID_JAR = Path("root/usr/lib/android-sdk/platforms/android-23/android.jar")  # inside sdk_dir()
DX_JAR = Path("root/usr/lib/android-sdk/build-tools/debian/lib/dx.jar")
JAR_API = 23
# Classes the app uses above JAR_API: compiled against a shim, resolved on the phone (API level, class).
SHIMS = {"java/util/function/Supplier": 24}
_SUPPLIER = ("package java.util.function;\n\n/** Compile-only (API 24). */\n"
             "public interface Supplier<T> {\n    T get();\n}\n")
# Debian 12 command -> package (scripts/install-system-deps.sh installs the same)
SYSTEM_TOOLS = {"aapt": "aapt", "aapt2": "aapt", "zipalign": "zipalign", "apksigner": "apksigner",
                "dexdump": "dexdump", "javac": "openjdk-17-jdk-headless", "java": "openjdk-17-jdk-headless",
                "keytool": "openjdk-17-jdk-headless"}
DEBUG_ALIAS, DEBUG_PASS = "androiddebugkey", "android"  # the Android SDK's debug-key convention
APP_FILES = ("app/build.gradle", "app/src/main/AndroidManifest.xml", "app/src/main/java", "app/src/main/res",
             "app/src/main/cpp")


def sdk_dir() -> Path:
    """Where scripts/fetch-android-bullseye.sh unpacks the Debian 11 packages (and the debug key lives):
    $SRPRUNE_ANDROID_SDK, else $XDG_CACHE_HOME/srprune/android-sdk, else ~/.cache/srprune/android-sdk. Apart from
    SRPRUNE_CACHE_DIR (the LR image cache), which tests point at empty folders."""
    env = os.environ.get("SRPRUNE_ANDROID_SDK")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "srprune" / "android-sdk"


@dataclass(frozen=True)
class Tools:
    """Paths of everything the build runs."""

    exe: dict[str, str]
    framework_res: Path
    android_jar: Path
    dx_jar: Path


def find_tools() -> Tools:
    """Every tool, or one InputError naming all that are missing and the script that installs them."""
    exe = {name: shutil.which(name) for name in SYSTEM_TOOLS}
    missing = [f"{n} ({SYSTEM_TOOLS[n]})" for n, p in exe.items() if p is None]
    sdk = sdk_dir()
    if not FRAMEWORK_RES.is_file():
        missing.append(f"{FRAMEWORK_RES} (android-framework-res)")
    for path, pkg in ((sdk / ANDROID_JAR, "Debian 11 libandroid-23-java"), (sdk / DX_JAR, "Debian 11 dalvik-exchange")):
        if not path.is_file():
            missing.append(f"{path} ({pkg})")
    for tool in ("clang", "ld.lld"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} ({'lld' if tool == 'ld.lld' else tool})")
    if missing:
        raise InputError(f"cannot build an APK, missing: {', '.join(missing)}; {INSTALL_HINT}")
    return Tools({k: str(v) for k, v in exe.items()}, FRAMEWORK_RES, sdk / ANDROID_JAR, sdk / DX_JAR)


@dataclass(frozen=True)
class AppInfo:
    """What Gradle injects into the manifest, read from app/build.gradle (its one home)."""

    package: str
    min_sdk: int
    target_sdk: int
    version_code: int
    version_name: str


def app_info(app: Path = android.APP_DIR) -> AppInfo:
    """applicationId, minSdk, targetSdk, versionCode, versionName of app/build.gradle."""
    text = (Path(app) / "app" / "build.gradle").read_text(encoding="utf-8")

    def get(key: str, pattern: str) -> str:
        m = re.search(rf"^\s*{key}\s+{pattern}", text, re.M)
        if not m:
            raise InputError(f"{app}/app/build.gradle has no {key}")
        return m.group(1)

    return AppInfo(get("applicationId", r'"([\w.]+)"'), int(get("minSdk", r"(\d+)")), int(get("targetSdk", r"(\d+)")),
                   int(get("versionCode", r"(\d+)")), get("versionName", r'"([^"]+)"'))


@dataclass(frozen=True)
class Keystore:
    """How to sign: the debug key (None fields) or a user's keystore with apksigner's password specs
    (pass:..., env:VAR, file:PATH)."""

    path: Path | None = None
    ks_pass: str | None = None
    alias: str | None = None
    key_pass: str | None = None

    def check(self) -> None:
        if self.path is None:
            if self.ks_pass or self.alias or self.key_pass:
                raise InputError("--ks-pass, --key-alias and --key-pass need --keystore")
            return
        if not self.path.is_file():
            raise InputError(f"{self.path}: keystore not found")
        if not self.ks_pass:
            raise InputError("--keystore needs --ks-pass (pass:PASSWORD, env:VAR or file:PATH)")
        for spec in (self.ks_pass, self.key_pass):
            if spec and not spec.startswith(("pass:", "env:", "file:")):
                raise InputError(f"password {spec.split(':')[0]!r}: use pass:PASSWORD, env:VAR or file:PATH")


def _secret(spec: str) -> str:
    """The password an apksigner spec names (pass:PW, env:VAR, file:PATH -> its first line)."""
    kind, _, value = spec.partition(":")
    if kind == "env":
        if value not in os.environ:
            raise InputError(f"password env:{value}: the variable is not set")
        return os.environ[value]
    if kind == "file":
        try:
            return Path(value).read_text(encoding="utf-8").splitlines()[0] if Path(value).stat().st_size else ""
        except OSError as exc:
            raise InputError(f"password file {value}: {exc.strerror}") from None
    return value


def check_keystore(tools: Tools, key: Keystore) -> None:
    """Open the user's keystore (and find the alias) before any work: a wrong password fails in a second, not
    after the build. The password goes to keytool through its environment, never its command line."""
    if key.path is None:
        return
    env = {**os.environ, "SRPRUNE_KS_PASS": _secret(str(key.ks_pass))}
    cmd = [tools.exe["keytool"], "-list", "-keystore", str(key.path), "-storepass:env", "SRPRUNE_KS_PASS"]
    proc = subprocess.run([*cmd, *(["-alias", key.alias] if key.alias else [])], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    if proc.returncode != 0:
        last = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()] or ["?"]
        raise InputError(f"{key.path}: cannot open the keystore with --ks-pass"
                         f"{' and find --key-alias ' + key.alias if key.alias else ''}: {last[-1].strip()}")


@dataclass
class ApkResult:
    """The built APK and what was verified about it."""

    path: Path
    package: str
    min_sdk: int
    target_sdk: int
    activity: str
    native_code: list[str]
    schemes: list[int]
    signer: str
    libs: dict[str, str]           # name in lib/arm64-v8a/ -> sha256
    dex_classes: int
    staged: android.Staged | None = None
    checks: list[str] = field(default_factory=list)


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    """Run one build tool; its failure is one InputError naming the step and the tool's last words."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{what} failed: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errs = [ln for ln in lines if "error" in ln.lower()]
        raise InputError(f"{what} failed: {(errs or lines or [f'exit {proc.returncode}'])[0]}")
    return proc.stdout + proc.stderr


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- keys


def debug_keystore(tools: Tools) -> Keystore:
    """The debug key in sdk_dir()/debug.keystore, made once with keytool (like ~/.android/debug.keystore: the
    same key every build, so `adb install -r` can replace an earlier build)."""
    path = sdk_dir() / "debug.keystore"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".debug-key-", dir=path.parent) as tmp:  # keytool wants no file
            made = Path(tmp) / path.name
            _run([tools.exe["keytool"], "-genkeypair", "-keystore", str(made), "-storetype", "PKCS12", "-storepass",
                  DEBUG_PASS, "-keypass", DEBUG_PASS, "-alias", DEBUG_ALIAS, "-keyalg", "RSA", "-keysize", "2048",
                  "-validity", "10000", "-dname", "CN=Android Debug,O=Android,C=US"], "keytool (debug key)")
            os.replace(made, path)  # atomic: another build never sees half a key
    return Keystore(path, f"pass:{DEBUG_PASS}", DEBUG_ALIAS, f"pass:{DEBUG_PASS}")


# ---------------------------------------------------------------- build steps


def copy_app(app: Path, dest: Path) -> Path:
    """The app's sources (no staged files, no build outputs) copied to `dest`, to stage and build there."""
    app = Path(app)
    if not (app / "app" / "build.gradle").is_file():
        raise InputError(f"{app} is not the demo app (no app/build.gradle); pass --app android_app")
    skip = shutil.ignore_patterns("staged", "build", ".cxx")
    for rel in APP_FILES:
        src, dst = app / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=skip)
        else:
            shutil.copyfile(src, dst)
    return dest


def compile_java(tools: Tools, app: Path, work: Path) -> Path:
    """javac -source/-target 8 against the API 23 android.jar (+ the compile-only shims); the classes folder."""
    shim_src = work / "shim" / "java" / "util" / "function" / "Supplier.java"
    shim_src.parent.mkdir(parents=True, exist_ok=True)
    shim_src.write_text(_SUPPLIER, encoding="utf-8")
    base = [tools.exe["javac"], "-source", "8", "-target", "8", "-encoding", "UTF-8", "-nowarn", "-Xlint:-options"]
    _run([*base, "-bootclasspath", str(tools.android_jar), "-d", str(work / "shim-classes"), str(shim_src)],
         "javac (shim)", cwd=work)  # cwd: a crashing javac leaves its javac.*.args file there, not in the user's
    sources = sorted(str(p) for p in (app / "app/src/main/java").rglob("*.java"))
    classes = work / "classes"
    _run([*base, "-bootclasspath", f"{tools.android_jar}{os.pathsep}{work / 'shim-classes'}", "-d", str(classes),
          *sources], "javac", cwd=work)
    return classes


def dex(tools: Tools, classes: Path, out: Path, min_sdk: int) -> Path:
    """classes.dex with dx (Java 8 class files; the app has no lambdas, so no invoke-custom)."""
    _run([tools.exe["java"], "-Xmx1024M", "-jar", str(tools.dx_jar), "--dex", f"--min-sdk-version={min_sdk}",
          f"--output={out}", str(classes)], "dx")
    return out


def gradle_manifest(app: Path, info: AppInfo, out: Path) -> Path:
    """The source manifest with `package=` added, as Gradle's manifest merger writes it (aapt2 link adds the
    uses-sdk element and the version from its options)."""
    text = (app / "app/src/main/AndroidManifest.xml").read_text(encoding="utf-8")
    if "package=" not in text:
        text, n = re.subn(r"<manifest\b", f'<manifest package="{info.package}"', text, count=1)
        if n != 1:
            raise InputError(f"{app}/app/src/main/AndroidManifest.xml has no <manifest> element")
    out.write_text(text, encoding="utf-8")
    return out


def link_resources(tools: Tools, app: Path, info: AppInfo, work: Path) -> Path:
    """aapt2 compile + link against framework-res.apk: the APK with manifest, resources and assets."""
    flat = work / "res.zip"
    _run([tools.exe["aapt2"], "compile", "--dir", str(app / "app/src/main/res"), "-o", str(flat)], "aapt2 compile")
    manifest = gradle_manifest(app, info, work / "AndroidManifest.xml")
    out = work / "base.apk"
    _run([tools.exe["aapt2"], "link", "-o", str(out), "-I", str(tools.framework_res), "--manifest", str(manifest),
          "-A", str(app / "app/src/main/assets"), "--min-sdk-version", str(info.min_sdk), "--target-sdk-version",
          str(info.target_sdk), "--version-code", str(info.version_code), "--version-name", info.version_name,
          str(flat)], "aapt2 link")
    return out


def assemble(base: Path, dex_file: Path, libs: dict[str, Path], out: Path) -> Path:
    """base.apk + classes.dex (deflated) + lib/arm64-v8a/*.so (stored: zipalign -p page-aligns them)."""
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.write(dex_file, "classes.dex", compress_type=zipfile.ZIP_DEFLATED)
        for name, path in sorted(libs.items()):
            dst.write(path, f"lib/{android.ABI}/{name}", compress_type=zipfile.ZIP_STORED)
    return out


def sign(tools: Tools, unsigned: Path, out: Path, key: Keystore) -> Path:
    """zipalign -p 4, then apksigner sign (v2 + v3 for minSdk 26; no v4 .idsig file)."""
    aligned = unsigned.with_name("aligned.apk")
    _run([tools.exe["zipalign"], "-p", "-f", "4", str(unsigned), str(aligned)], "zipalign")
    cmd = [tools.exe["apksigner"], "sign", "--ks", str(key.path), "--ks-pass", str(key.ks_pass),
           "--v4-signing-enabled", "false", "--out", str(out)]
    if key.alias:
        cmd += ["--ks-key-alias", key.alias]
    if key.key_pass:
        cmd += ["--key-pass", key.key_pass]
    _run([*cmd, str(aligned)], f"apksigner sign with {key.path}")
    return out


# ---------------------------------------------------------------- verification


def badging(tools: Tools, apk: Path) -> dict:
    """`aapt dump badging` -> package, sdk, target, launchable activity, native code."""
    text = _run([tools.exe["aapt"], "dump", "badging", str(apk)], "aapt dump badging")
    pkg = re.search(r"^package: name='([^']+)'", text, re.M)
    sdk = re.search(r"^(?:minSdkVersion|sdkVersion):'(\d+)'", text, re.M)
    target = re.search(r"^targetSdkVersion:'(\d+)'", text, re.M)
    act = re.search(r"^launchable-activity: name='([^']+)'", text, re.M)
    native = re.search(r"^native-code: (.*)$", text, re.M)
    return {"package": pkg and pkg[1], "sdk": sdk and int(sdk[1]), "target": target and int(target[1]),
            "activity": act and act[1], "native_code": re.findall(r"'([^']+)'", native[1]) if native else []}


def signature_schemes(tools: Tools, apk: Path) -> tuple[list[int], str]:
    """apksigner verify: the schemes that verified and the signer's certificate DN; InputError if it fails."""
    text = _run([tools.exe["apksigner"], "verify", "--verbose", "--print-certs", str(apk)], "apksigner verify")
    schemes = [int(m[1]) for m in re.finditer(r"Verified using v(\d) scheme.*?: true", text)]
    dn = re.search(r"certificate DN: (.*)", text)
    return schemes, dn[1].strip() if dn else "?"


def dex_call_sites(tools: Tools, dex_file: Path) -> tuple[int, int]:
    """(classes, call sites) of a dex, from dexdump's header (a call site = an invoke-custom: a lambda)."""
    text = _run([tools.exe["dexdump"], "-f", str(dex_file)], "dexdump")
    classes = re.search(r"class_defs_size\s*:\s*(\d+)", text)
    sites = len(re.findall(r"^\s*Call site #", _run([tools.exe["dexdump"], "-d", str(dex_file)], "dexdump -d"), re.M))
    return int(classes[1]) if classes else 0, sites


def verify_apk(tools: Tools, apk: Path, info: AppInfo, libs: dict[str, str]) -> tuple[dict, list[str]]:
    """Everything checkable here about a built APK; InputError on the first failure, else what was checked."""
    checks = []
    _run([tools.exe["zipalign"], "-c", "-p", "4", str(apk)], "zipalign -c")
    checks.append("zipalign -c -p 4: aligned (shared libraries page-aligned)")
    schemes, dn = signature_schemes(tools, apk)
    if 2 not in schemes:
        raise InputError(f"apksigner verify: no v2 signature (verified: {schemes}); Android 11+ needs v2 for target "
                         f"SDK {info.target_sdk}")
    checks.append(f"apksigner verify: v{' + v'.join(map(str, schemes))} signature valid ({dn})")
    b = badging(tools, apk)
    want = {"package": info.package, "sdk": info.min_sdk, "target": info.target_sdk,
            "activity": f"{info.package}.MainActivity", "native_code": [android.ABI]}
    bad = [f"{k} {b[k]!r} != {v!r}" for k, v in want.items() if b[k] != v]
    if bad:
        raise InputError(f"aapt dump badging: {'; '.join(bad)}")
    checks.append(f"aapt dump badging: package {b['package']}, sdk {b['sdk']}, target {b['target']}, launchable "
                  f"{b['activity']}, native-code {' '.join(b['native_code'])}")
    with zipfile.ZipFile(apk) as z:
        names = set(z.namelist())
        got = {n: hashlib.sha256(z.read(f"lib/{android.ABI}/{n}")).hexdigest() for n in libs
               if f"lib/{android.ABI}/{n}" in names}
        arsc = z.getinfo("resources.arsc")
        if arsc.compress_type != zipfile.ZIP_STORED:
            raise InputError("resources.arsc is compressed: Android 11+ refuses to install such an APK")
        with tempfile.TemporaryDirectory(prefix="srprune-dex-") as tmp:
            (Path(tmp) / "classes.dex").write_bytes(z.read("classes.dex"))
            classes, sites = dex_call_sites(tools, Path(tmp) / "classes.dex")
    if got != libs:
        raise InputError(f"lib/{android.ABI}/ in the APK does not hold the built libraries: {sorted(got)}")
    checks.append(f"lib/{android.ABI}/: {', '.join(f'{n} sha256 {h[:12]}' for n, h in sorted(got.items()))} "
                  "(= the staged manifest / the built JNI library)")
    if sites:
        raise InputError(f"classes.dex has {sites} call sites (invoke-custom: a lambda); Android cannot run them")
    checks.append(f"classes.dex: {classes} classes, no call sites (no invoke-custom)")
    checks.append("resources.arsc stored uncompressed (Android 11+ requirement)")
    return {**b, "schemes": schemes, "signer": dn, "dex_classes": classes}, checks


# ---------------------------------------------------------------- the whole build


def staged_clib(app: Path, dest: Path) -> Path:
    """The model staged in `app` (by `srprune android stage`) gathered back into a c-lib folder."""
    manifest = android.read_clib_manifest(app)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(app) / android.JNI_LIB, dest / manifest.get("library", "libsrmodel.so"))
    shutil.copyfile(Path(app) / android.HEADER, dest / manifest.get("header", "srmodel.h"))
    if manifest.get("bench") and (Path(app) / android.BENCH_EXE).is_file():
        shutil.copyfile(Path(app) / android.BENCH_EXE, dest / manifest["bench"])
        os.chmod(dest / manifest["bench"], 0o755)
    shutil.copyfile(Path(app) / android.ASSETS / "manifest.json", dest / "manifest.json")
    return dest


def default_output(spec: str) -> Path:
    """RUN/android/srprune-demo.apk for a run folder, else srprune-demo.apk in the current folder."""
    from srprune.layout import RunLayout

    path = Path(spec)
    if spec and path.is_dir() and not (path / "manifest.json").is_file():
        return RunLayout(path).android_apk
    return Path("srprune-demo.apk")


def check_output(out: Path, force: bool) -> None:
    """Before any work: the APK may be written there; an existing one only with --force and only if srprune
    wrote it (the folder's record, srcommon.owned)."""
    from srcommon.errors import OutputConflict
    from srcommon.owned import OwnedFolder
    from srprune.outputs import check_output_file

    check_output_file(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        OwnedFolder(out.parent, "android apk").reserve([out.name], force)
    except OutputConflict as exc:
        raise InputError(str(exc)) from None


def build_apk(spec: str, out: Path, *, app: Path = android.APP_DIR, scale: int | None = None,
              size: tuple[int, int] | None = None, threads: int | None = None, seed: int = 0,
              key: Keystore | None = None, force: bool = False) -> ApkResult:
    """Stage SPEC (run, model file or name, c-lib folder) into a private copy of the app, build, sign and verify
    the APK, write it to `out` atomically. Bad input, missing tools, an output that cannot be written and a
    keystore that does not open are refused before any work."""
    key = key or Keystore()
    key.check()
    tools = find_tools()
    check_keystore(tools, key)
    out = Path(out)
    check_output(out, force)
    info = app_info(app)
    with tempfile.TemporaryDirectory(prefix="srprune-apk-") as tmp:
        work = Path(tmp)
        copy = copy_app(Path(app), work / "app")
        note("[apk] staging the model")
        staged = android.stage(spec, copy, scale=scale, size=size, threads=threads, seed=seed)
        note("[apk] building libsrdemo.so (clang + lld, aarch64-linux-android)")
        from compiler.errors import CompilerError
        from srprune import android_native

        try:
            demo = android_native.build_libsrdemo(copy, work / "native")
        except CompilerError as exc:
            raise InputError(str(exc)) from None
        note("[apk] javac (Java 8, API 23 android.jar) + dx")
        dex_file = dex(tools, compile_java(tools, copy, work), work / "classes.dex", info.min_sdk)
        note("[apk] aapt2 compile/link, zipalign, apksigner")
        base = link_resources(tools, copy, info, work)
        libs = {"libsrdemo.so": demo, "libsrmodel.so": copy / android.JNI_LIB}
        unsigned = assemble(base, dex_file, libs, work / "unsigned.apk")
        signed = sign(tools, unsigned, work / "signed.apk", key if key.path else debug_keystore(tools))
        want = {name: sha256(path) for name, path in libs.items()}
        manifest = json.loads((copy / android.ASSETS / "manifest.json").read_text(encoding="utf-8"))
        if manifest["checksums"].get(manifest["library"]) != want["libsrmodel.so"]:
            raise InputError("the staged libsrmodel.so does not match its manifest's checksum")
        b, checks = verify_apk(tools, signed, info, want)
        with atomic_path(out) as dst:
            shutil.copyfile(signed, dst)
    return ApkResult(out, b["package"], b["sdk"], b["target"], b["activity"], b["native_code"], b["schemes"],
                     b["signer"], want, b["dex_classes"], staged, checks)
