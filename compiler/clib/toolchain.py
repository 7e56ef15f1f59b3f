"""C compilers and linkers per target, symbol checks, and the stub bionic libraries for Android.

host: the system `cc`. linux-arm64: Debian's `aarch64-linux-gnu-gcc` (libc6-dev-arm64-cross).
android-arm64: Debian's clang + lld with no NDK: the library is linked with `-nostdlib -z defs`
against stub libc.so/libm.so/libdl.so/liblog.so generated here that define exactly the symbols the
objects need, each taken from a list of functions bionic exports; a symbol outside those lists is
refused, so the library cannot need anything a phone lacks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from compiler.errors import CompilerError

ANDROID_API = 26
GNU_SYSROOT = "/usr/aarch64-linux-gnu"
PAGE_16K = 16384
CSRC = Path(__file__).with_name("csrc")

# Functions bionic exports, by library (only the ones generated kernels or our runtime may use).
BIONIC = {
    "libc.so": {"malloc", "free", "calloc", "realloc", "posix_memalign", "memalign", "aligned_alloc", "memcpy",
                "memmove", "memset", "memcmp", "strlen", "strcmp", "strncmp", "vsnprintf", "snprintf", "printf",
                "fprintf", "puts", "fputs", "fopen", "fclose", "fread", "fwrite", "fflush", "abort", "exit",
                "strtol", "strtod", "atoi", "qsort", "clock_gettime", "sched_yield", "getenv", "getauxval",
                "pthread_create", "pthread_join", "pthread_mutex_lock", "pthread_mutex_unlock", "pthread_mutex_init",
                "pthread_mutex_destroy", "pthread_cond_wait", "pthread_cond_broadcast", "pthread_cond_signal",
                "pthread_cond_init", "pthread_cond_destroy", "pthread_once", "pthread_self", "__errno",
                "stdout", "stderr", "__sF"},
    "libm.so": {f + s for f in ("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "pow", "sqrt", "cbrt",
                                "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh",
                                "asinh", "acosh", "atanh", "erf", "erfc", "floor", "ceil", "round", "trunc",
                                "fmod", "fabs", "fmin", "fmax", "nearbyint", "rint", "lround", "ldexp", "frexp",
                                "copysign", "hypot") for s in ("", "f")},
    "libdl.so": {"dlopen", "dlsym", "dlclose", "dlerror"},
    "liblog.so": {"__android_log_print", "__android_log_write"},
}
# What the host/glibc builds may leave to the C library (same names; glibc's extra symbols allowed).
_GLIBC_EXTRA = {"__stack_chk_fail", "__errno_location", "stdout", "stderr"}
_LINKER_DEFINED = {"_GLOBAL_OFFSET_TABLE_", "__dso_handle", "_DYNAMIC"}


@dataclass(frozen=True)
class Toolchain:
    """How to compile and link C for one target."""

    name: str
    cc: str
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    libs: tuple[str, ...] = ()  # system libraries (glibc builds; Android uses generated stubs)
    exe_flags: tuple[str, ...] = ()  # extra flags for executables; non-empty: no crt files, our own _start
    android: bool = False

    def check(self) -> None:
        """CompilerError naming the missing tool or library (see scripts/install-system-deps.sh)."""
        tools = [self.cc] + (["ld.lld"] if self.android else [])
        for tool in tools:
            if shutil.which(tool) is None:
                raise CompilerError(f"{tool} is not installed (needed to build the c-lib for {self.name}; "
                                    "run scripts/install-system-deps.sh)")
        for lib in self.libs:
            if lib.startswith("/") and not os.path.exists(lib):
                raise CompilerError(f"{lib} is missing (needed to link the c-lib for {self.name}; "
                                    "run scripts/install-system-deps.sh)")


def toolchain_for(target_name: str, triple: str) -> Toolchain:
    """The toolchain of a target: by triple (x86_64/aarch64 host, aarch64 glibc, aarch64 Android)."""
    common = ("-O2", "-std=c11", "-fPIC", "-ffreestanding", "-fvisibility=hidden", "-fno-stack-protector", "-Wall")
    if triple.endswith("android"):
        return Toolchain(target_name, "clang", (f"--target=aarch64-linux-android{ANDROID_API}", *common,
                                                "-mno-outline-atomics"),
                         (f"--target=aarch64-linux-android{ANDROID_API}", "-fuse-ld=lld", "-nostdlib",
                          f"-Wl,-z,max-page-size={PAGE_16K}", "-Wl,-z,defs", "-Wl,--strip-debug", "-Wl,-z,now",
                          "-Wl,-z,relro",
                          "-Wl,--hash-style=both", "-Wl,-z,noexecstack"),
                         exe_flags=("-pie", "-Wl,--dynamic-linker=/system/bin/linker64"), android=True)
    if triple.startswith("aarch64") and not os.uname().machine.startswith(("aarch64", "arm64")):
        # Only the runtime package (libc6-arm64-cross) is assumed: link its .so files directly, no crt files.
        lib = f"{GNU_SYSROOT}/lib"
        return Toolchain(target_name, "aarch64-linux-gnu-gcc", (*common, "-mno-outline-atomics"),
                         ("-nostdlib", "-Wl,--strip-debug", "-Wl,-z,defs", "-Wl,-z,now", "-Wl,-z,noexecstack",
                          f"-Wl,-z,max-page-size={PAGE_16K}", f"-Wl,-rpath-link,{lib}"),
                         libs=("-Wl,--as-needed", f"{lib}/libc.so.6", f"{lib}/libm.so.6"),
                         exe_flags=("-pie", f"-Wl,--dynamic-linker=/lib/ld-linux-aarch64.so.1"))
    return Toolchain(target_name, "cc", common,
                     ("-Wl,--strip-debug", "-Wl,-z,defs", "-Wl,-z,now", "-Wl,-z,noexecstack"),
                     libs=("-Wl,--as-needed", "-lm", "-ldl"))


def run(cmd: list[str], what: str) -> str:
    """Run a build command; its first error line becomes a CompilerError."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if "error" in ln.lower()] or \
            (proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"]
        raise CompilerError(f"{what} failed ({Path(cmd[0]).name}): {lines[0].strip()}")
    return proc.stdout


def elf_symbols(path: str | os.PathLike) -> tuple[set[str], set[str]]:
    """(undefined, defined global/weak) symbol names of an ELF object or library (readelf, any arch).

    Weak undefined references (crt files' optional hooks) need no definition and are left out.
    """
    out = run(["readelf", "-Ws", "--wide", str(path)], "readelf")
    undefined, defined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[0].rstrip(":").isdigit():
            continue
        bind, ndx, name = parts[4], parts[6], parts[7].split("@")[0]
        if not name or bind == "LOCAL" or (bind == "WEAK" and ndx == "UND"):
            continue
        (undefined if ndx == "UND" else defined).add(name)
    return undefined, defined


def needed_symbols(objects: list[str]) -> set[str]:
    """Symbols the objects use but do not define among themselves."""
    undefined, defined = set(), set()
    for obj in objects:
        u, d = elf_symbols(obj)
        undefined |= u
        defined |= d
    return undefined - defined - _LINKER_DEFINED


def classify(symbols: set[str], android: bool) -> dict[str, set[str]]:
    """Which system library provides each needed symbol; CompilerError for any the lists lack."""
    by_lib: dict[str, set[str]] = {lib: set() for lib in BIONIC}
    unknown = []
    for sym in sorted(symbols):
        lib = next((lib for lib, names in BIONIC.items() if sym in names), None)
        if lib is None and not android and sym in _GLIBC_EXTRA:
            lib = "libc.so"
        if lib is None:
            unknown.append(sym)
        else:
            by_lib[lib].add(sym)
    if unknown:
        raise CompilerError(f"c-lib: the compiled code needs {', '.join(unknown[:5])}, which the runtime does not "
                            "provide and is not on the list of allowed system functions")
    return by_lib


def stub_libraries(workdir: Path, by_lib: dict[str, set[str]], tc: Toolchain) -> list[str]:
    """Stub bionic libraries (right sonames, the needed symbols as empty functions/objects) to link against."""
    paths = []
    data_syms = {"stdout", "stderr", "__sF"}
    for lib, syms in by_lib.items():
        if not syms and lib != "libc.so":
            continue
        src = workdir / f"stub_{lib}.c"
        body = [f"char {s}[8];" if s in data_syms else f"void {s}(void) {{}}" for s in sorted(syms)]
        src.write_text("/* link-time stub: the phone provides the real library */\n" + "\n".join(body) + "\n",
                       encoding="utf-8")
        out = workdir / "stubs" / lib
        out.parent.mkdir(exist_ok=True)
        run([tc.cc, f"--target=aarch64-linux-android{ANDROID_API}", "-fuse-ld=lld", "-nostdlib", "-shared",
             "-fPIC", "-fno-builtin", f"-Wl,-soname,{lib}", "-o", str(out), str(src)], f"stub {lib}")
        paths.append(str(out))
    return paths


def inspect_elf(path: str | os.PathLike) -> dict:
    """What a phone's loader cares about: machine, DT_NEEDED, text relocations, LOAD alignment, interpreter."""
    header = run(["readelf", "-hW", str(path)], "readelf")
    dynamic = run(["readelf", "-dW", str(path)], "readelf")
    program = run(["readelf", "-lW", str(path)], "readelf")
    machine = next((ln.split(":", 1)[1].strip() for ln in header.splitlines() if "Machine:" in ln), "")
    needed = [ln.split("[", 1)[1].rstrip("]") for ln in dynamic.splitlines() if "(NEEDED)" in ln]
    textrel = "(TEXTREL)" in dynamic or "TEXTREL" in " ".join(ln for ln in dynamic.splitlines() if "FLAGS" in ln)
    loads = []
    for ln in program.splitlines():
        parts = ln.split()
        if parts and parts[0] == "LOAD":
            offset, vaddr, align = int(parts[1], 16), int(parts[2], 16), int(parts[-1], 16)
            loads.append({"offset": offset, "vaddr": vaddr, "align": align})
    interp = next((ln.split(":", 1)[1].strip(" ]") for ln in program.splitlines() if "interpreter:" in ln), None)
    return {"machine": machine, "needed": needed, "textrel": textrel, "loads": loads, "interpreter": interp}


def glibc_shims(folder: str | os.PathLike) -> Path:
    """Libraries named like bionic's (libc.so, libm.so, libdl.so, liblog.so) that forward to aarch64 glibc.

    Each is empty and records DT_NEEDED libc.so.6 (libm.so.6 for libm.so), so an Android library loaded
    by a glibc program under qemu-aarch64 finds its sonames and binds its symbols to glibc's.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    src = out / "shim.c"
    src.write_text("void srprune_bionic_shim(void) {}\n", encoding="utf-8")
    lib = f"{GNU_SYSROOT}/lib"
    for name, target in (("libc.so", "libc.so.6"), ("libm.so", "libm.so.6"), ("libdl.so", "libc.so.6"),
                         ("liblog.so", "libc.so.6")):
        run(["aarch64-linux-gnu-gcc", "-shared", "-fPIC", "-nostdlib", f"-Wl,-soname,{name}", "-o", str(out / name),
             str(src), "-Wl,--no-as-needed", f"{lib}/{target}"], f"shim {name}")
    return out
