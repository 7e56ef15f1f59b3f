"""Deployable artifacts: the compiled library for a target plus manifest.json, written atomically.

arm64 libraries are linked here without an Android NDK: Debian's clang + lld for
aarch64-linux-android (against tiny stub libc/libm/libdl built on the fly, so the library records
exactly those DT_NEEDED entries and nothing else), clang + lld against the cross
glibc runtime (libc6-arm64-cross) for linux-arm64. With $ANDROID_NDK_HOME (or $ANDROID_NDK_ROOT) set, the NDK's clang is used instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import tvm

from compiler.build import CompiledModel
from compiler.errors import CompilerError
from compiler.native_log import native_log
from compiler.targets import TargetSpec
from srcommon.errors import OutputConflict
from srcommon.owned import check_replaceable
from srcommon.owned import staged_folder as owned_staged_folder

LIB_NAME = "model.so"
MANIFEST = "manifest.json"
ANDROID_API = 24
_STUB_LIBS = ("c", "m", "dl")
_GNU_SYSROOT = "/usr/aarch64-linux-gnu"


def _ndk_clang() -> str | None:
    """The NDK's aarch64 clang when an NDK is configured, else None."""
    for var in ("ANDROID_NDK_HOME", "ANDROID_NDK_ROOT", "TVM_NDK_CC"):
        root = os.environ.get(var)
        if not root:
            continue
        if var == "TVM_NDK_CC":
            return root
        cands = sorted(Path(root).glob(f"toolchains/llvm/prebuilt/*/bin/aarch64-linux-android{ANDROID_API}-clang"))
        if cands:
            return str(cands[0])
        raise CompilerError(f"${var}={root} holds no aarch64-linux-android{ANDROID_API}-clang")
    return None


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CompilerError(f"link step failed ({cmd[0]}): {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise CompilerError(f"{tool} is not installed (needed to link this target; see scripts/install-system-deps.sh)")
    return path


def _stub_libs(workdir: str, clang: str, triple: str, sonames: dict[str, str]) -> list[str]:
    """Empty shared libraries carrying the given sonames, linked against only to record DT_NEEDED.

    Without an NDK there is no Android sysroot here; the symbols are resolved on the device from
    the real libraries of those names.
    """
    src = os.path.join(workdir, "stub.c")
    Path(src).write_text("void srprune_stub(void) {}\n", encoding="utf-8")
    paths = []
    for lib, soname in sonames.items():
        out = os.path.join(workdir, f"lib{lib}.so")
        _run([clang, f"--target={triple}", "-fuse-ld=lld", "-nostdlib", "-shared", "-fPIC",
              f"-Wl,-soname,{soname}", "-o", out, src])
        paths.append(out)
    return paths


def linker_for(target: TargetSpec, workdir: str):
    """The `fcompile` that export_library uses to link this target's shared library (None: host default)."""
    from tvm.support import cc

    if not target.cross:
        return None
    if target.triple.endswith("android"):
        ndk = _ndk_clang()
        if ndk:
            return cc.cross_compiler(ndk, options=["-shared", "-fPIC", "-lm", "-ldl"],
                                     get_target_triple=lambda: target.triple)
        clang = _require("clang")
        _require("ld.lld")
        opts = [f"--target=aarch64-linux-android{ANDROID_API}", "-fuse-ld=lld", "-nostdlib", "-Wl,-z,now",
                "-Wl,--hash-style=both", "-Wl,-z,relro",
                *_stub_libs(workdir, clang, f"aarch64-linux-android{ANDROID_API}",
                            {lib: f"lib{lib}.so" for lib in _STUB_LIBS})]
        return cc.cross_compiler(clang, options=opts, get_target_triple=lambda: target.triple)
    # linux-arm64: link against the cross libc/libm runtime libraries directly (no crt files or dev
    # package needed for a shared library); stub sonames when the runtime libraries are absent.
    clang = _require("clang")
    _require("ld.lld")
    libs = [f"{_GNU_SYSROOT}/lib/{name}" for name in ("libm.so.6", "libc.so.6")]
    if not all(os.path.exists(p) for p in libs):
        libs = _stub_libs(workdir, clang, "aarch64-linux-gnu", {"m": "libm.so.6", "c": "libc.so.6"})
    opts = ["--target=aarch64-linux-gnu", "-fuse-ld=lld", "-nostdlib", "-Wl,-z,now", "-Wl,-z,relro", *libs]
    return cc.cross_compiler(clang, options=opts, get_target_triple=lambda: target.triple)


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (manifest checksums)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def artifact_files(out: Path) -> list[str]:
    """The files an artifact folder's manifest lists as srprune's: written by versions before the record of
    owned files (srcommon.owned), so that --force may still replace their folders."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith("srprune"):
        return []
    return [MANIFEST, *[f for f in manifest.get("checksums", {}) if isinstance(f, str)]]


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse an existing output folder unless `force`, and even then when it holds files srprune did not write
    (checked before any slow work)."""
    try:
        check_replaceable(out, force, artifact_files(out))
    except OutputConflict as exc:
        raise CompilerError(str(exc)) from None


@contextmanager
def staged_folder(out: Path, force: bool) -> Iterator[Path]:
    """A temporary folder that replaces `out` (only srprune's files of it) when the block succeeds."""
    check_out_dir(out, force)
    try:
        with owned_staged_folder(out, force, "compile", artifact_files(out)) as tmp:
            yield tmp
    except OutputConflict as exc:
        raise CompilerError(str(exc)) from None


def write_manifest(folder: Path, manifest: dict) -> None:
    """`folder/manifest.json`, sorted and indented (the folder is a staged one, so no temp file is needed)."""
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_artifact(compiled: CompiledModel, out_dir: str | os.PathLike, *, meta: dict | None = None,
                   force: bool = False) -> dict:
    """Write `out_dir/{model.so, manifest.json}`; the folder appears complete or not at all.

    An existing `out_dir` is refused unless `force` (then replaced). Host artifacts must carry a
    passed numerics check (compile_model does it); `meta` (model name, scale, srprune version...)
    is copied into the manifest as given.
    """
    out = Path(out_dir)
    check_out_dir(out, force)
    if not compiled.target.cross and not compiled.check:
        raise CompilerError("refusing to write an artifact whose numerics were not checked against PyTorch")
    with staged_folder(out, force) as tmp:
        with tempfile.TemporaryDirectory() as work:
            fcompile = linker_for(compiled.target, work)
            lib_path = tmp / LIB_NAME
            try:
                with native_log():  # TVM logs a "Scope Saving" warning per memory scope here
                    compiled.executable.export_library(str(lib_path), fcompile=fcompile)
            except Exception as exc:  # noqa: BLE001
                msg = str(exc).strip().splitlines()
                raise CompilerError(f"linking for {compiled.target.name} failed: {msg[-1] if msg else exc}") from exc
        manifest = {
            "format": "srprune-compiled", "version": 1,
            "target": compiled.target.describe(), "precision": compiled.target.precision,
            "cpu_features": list(compiled.target.features),
            "library": LIB_NAME,
            "input": {"name": "input", "shape": list(compiled.input_shape), "dtype": "float32", "layout": "NCHW",
                      "range": [0.0, 1.0]},
            "output": {"shape": list(compiled.output_shape), "dtype": "float32", "layout": "NCHW"},
            "entry": "main",
            "fused_convs": compiled.fused_convs,
            "numerics": compiled.check or None,
            "checksums": {LIB_NAME: sha256(lib_path)},
            "versions": {"tvm": tvm.__version__, "torch": torch.__version__, "python": platform.python_version()},
            "meta": dict(meta or {}),
        }
        write_manifest(tmp, manifest)
    return manifest


def load_artifact(out_dir: str | os.PathLike) -> tuple[dict, tvm.runtime.Module]:
    """Read a host artifact back: (manifest, loaded library); checks the library's checksum first."""
    out = Path(out_dir)
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompilerError(f"{out} is not a compiled srprune artifact ({MANIFEST} unreadable)") from exc
    if manifest.get("format") != "srprune-compiled":
        raise CompilerError(f"{out / MANIFEST} is not an srprune artifact manifest")
    lib = out / manifest["library"]
    if sha256(lib) != manifest["checksums"][manifest["library"]]:
        raise CompilerError(f"{lib} does not match its manifest checksum")
    return manifest, tvm.runtime.load_module(str(lib))
