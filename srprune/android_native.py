"""The demo app's JNI library (libsrdemo.so) built here with Debian's clang + lld, as the NDK build would.

Why here and not only in the Gradle project: `srprune android apk` packs the library without an NDK, and the
tests build the same sources the same way (one home for the flags). The CMake build of android_app/ stays what
a user with Android Studio gets; this build follows it: the same three sources, the staged srmodel.h,
`-fvisibility=hidden`, 16 KB pages, `-z defs`, and libc/libm/libdl as the only libraries (bionic stubs to
link against: the phone provides the real ones). No system headers: clang's freestanding ones, the JDK's
jni.h, and a one-line stdio.h (jni.h includes it and uses nothing from it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from srprune.errors import InputError

SOURCES = ("sr_jni.c", "sr_engine.c", "sr_core.c")
CPP = Path("app/src/main/cpp")


def jdk_include() -> Path:
    """The include folder of the JDK whose javac is on PATH (jni.h, linux/jni_md.h)."""
    javac = shutil.which("javac")
    if javac is None:
        raise InputError("javac not found: run scripts/install-system-deps.sh (it installs a JDK)")
    inc = Path(os.path.realpath(javac)).parents[1] / "include"
    if not (inc / "jni.h").is_file():
        raise InputError(f"{inc}/jni.h not found: install a full JDK (scripts/install-system-deps.sh)")
    return inc


def compile_flags(app: Path, work: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """clang's command line (without -c/-o) for the app's C sources, for aarch64-linux-android."""
    from compiler.clib.toolchain import toolchain_for

    tc = toolchain_for("android-arm64", "aarch64-linux-android")
    shim = work / "sysinc"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "stdio.h").write_text("/* jni.h includes stdio.h and uses nothing from it */\n")
    inc = jdk_include()
    return [tc.cc, *tc.cflags, "-Wextra", "-Werror", "-nostdlibinc", "-isystem", str(shim), "-I",
            str(app / CPP), "-I", str(app / CPP / "staged"), "-I", str(inc), "-I", str(inc / "linux"), *extra]


def build(app: Path, work: Path, sources: list[Path], out: Path, *, shared: bool,
          extra: tuple[str, ...] = ()) -> Path:
    """Compile and link `sources` (a shared library, or an executable with our own _start) against stub bionic
    libraries (`-z defs`: nothing unresolved); CompilerError naming the step that failed."""
    from compiler.clib.toolchain import CSRC, classify, needed_symbols, run, stub_libraries, toolchain_for

    tc = toolchain_for("android-arm64", "aarch64-linux-android")
    tc.check()
    work.mkdir(parents=True, exist_ok=True)
    objs = []
    for src in sources:
        obj = work / (src.stem + ".o")
        run([*compile_flags(app, work, extra), "-c", str(src), "-o", str(obj)], f"compiling {src.name}")
        objs.append(str(obj))
    if not shared:
        obj = work / "srmodel_start.o"
        run([tc.cc, *tc.cflags, "-c", str(CSRC / "srmodel_start.c"), "-o", str(obj)], "compiling _start")
        objs.append(str(obj))
    stubs = stub_libraries(work, classify(needed_symbols(objs), android=True), tc)
    flags = ["-shared", *tc.ldflags, f"-Wl,-soname,{out.name}"] if shared else \
        [*[f for f in tc.ldflags if f != "-Wl,-z,defs"], *tc.exe_flags]
    run([tc.cc, *flags, "-o", str(out), *objs, "-Wl,--as-needed", *stubs], f"linking {out.name}")
    return out


def build_libsrdemo(app: Path, work: Path, extra: tuple[str, ...] = ()) -> Path:
    """libsrdemo.so from a staged app folder (its srmodel.h must be staged), into `work`."""
    if not (app / CPP / "staged" / "srmodel.h").is_file():
        raise InputError(f"no model staged in {app}: run `srprune android stage MODEL` first")
    return build(app, work / "obj", [app / CPP / s for s in SOURCES], work / "libsrdemo.so", shared=True,
                 extra=extra)
