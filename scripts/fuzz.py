#!/usr/bin/env python3
"""Build the native code's libFuzzer harnesses (tests/fuzz) with AddressSanitizer + UBSan and run each for a
bounded time; prints, per target, the seconds, the executions and the crashes.

    python scripts/fuzz.py [SECONDS] [--work DIR] [--target clib|jni ...]

SECONDS per target (default 60). Targets:
  clib  the C library's entry points (compiler/clib/csrc/srmodel_rt.c) linked with a small compiled model
        (ESPCN x2, seeded weights, 8x8 input): create / run / run_rgb8 / set_threads / destroy sequences,
        use after destroy and double destroy included (tests/fuzz/fuzz_clib.c);
  jni   the JNI layer's natives (android_app/app/src/main/cpp) through a fake JNIEnv, with the same model
        compiled for the host and opened by dlopen (tests/fuzz/fuzz_jni.c).
libFuzzer stops at the first crash (an ASan/UBSan report, a broken contract check, a leak, a 10 s input):
"crashes" counts the reproducer files it wrote (crash-*, leak-*, timeout-*, oom-*) in WORK/artifacts/TARGET/.
Needs clang and its fuzzer runtime (Debian: libclang-rt-N-dev; scripts/install-system-deps.sh installs it).
Exit status 1 when a target crashed or did not run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "tests" / "fuzz"
CPP = ROOT / "android_app" / "app" / "src" / "main" / "cpp"
TARGETS = ("clib", "jni")
SAN = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1")
CFLAGS = ("-std=c11", "-Wall", "-Wextra", "-Werror")
MODEL_SHAPE = (1, 3, 8, 8)
if str(ROOT) not in sys.path:  # run as a script: the project's packages (compiler, srprune) come from this tree
    sys.path.insert(0, str(ROOT))


@dataclass
class FuzzResult:
    """One bounded run of one target."""

    target: str
    seconds: int
    executions: int
    crashes: int
    artifacts: list[str]
    log_tail: str


def fuzzer_runtime() -> str | None:
    """Path of clang's libFuzzer runtime for this machine, or None (no clang, or no libclang-rt-N-dev)."""
    if shutil.which("clang") is None:
        return None
    out = subprocess.run(["clang", f"-print-file-name=libclang_rt.fuzzer-{platform.machine()}.a"],
                         capture_output=True, text=True).stdout.strip()
    return out if os.path.isabs(out) and os.path.exists(out) else None


def jdk_include() -> Path | None:
    """The JDK's include folder (jni.h), or None without javac."""
    javac = shutil.which("javac")
    return Path(os.path.realpath(javac)).parents[1] / "include" if javac else None


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[:2000]}")


def build_model(work: Path) -> Path:
    """The small model: its plan's objects (kernels.o, model.c, consts.S) and a host libsrmodel.so in work/model."""
    import torch

    from compiler.clib.export import link_clib
    from compiler.clib.plan import build_plan
    from compiler.targets import get_target
    from srprune.models import build_model as make_net, deploy

    folder = work / "model"
    if (folder / "libsrmodel.so").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = deploy(make_net("espcn", 2)).eval()
    spec = get_target("host")
    link_clib(build_plan(net, MODEL_SHAPE, spec), spec, folder, "espcn x2 (fuzz)", bench=False)
    return folder


def build(work: str | os.PathLike) -> dict[str, Path]:
    """Build the fuzz targets and the JNI misuse program into work; {name: path} (plus "model": the .so)."""
    from compiler.clib.toolchain import CSRC

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    inc = jdk_include()
    if inc is None:
        raise RuntimeError("javac (the JDK's jni.h) is not installed: run scripts/install-system-deps.sh")
    model = build_model(work)
    jni_inc = ["-I", str(FUZZ), "-I", str(CPP), "-I", str(CSRC), "-I", str(inc), "-I", str(inc / "linux")]
    jni_src = [str(CPP / f) for f in ("sr_jni.c", "sr_engine.c", "sr_core.c")]
    out = {"model": model / "libsrmodel.so", "clib": work / "fuzz_clib", "jni": work / "fuzz_jni",
           "jni_misuse": work / "jni_misuse"}
    # the runtime and the generated driver are instrumented; the TVM kernels object is linked as it is
    _run(["clang", *CFLAGS, *SAN, "-fsanitize=fuzzer", "-I", str(FUZZ), "-I", str(CSRC), str(FUZZ / "fuzz_clib.c"),
          str(CSRC / "srmodel_rt.c"), str(model / "model.c"), str(model / "consts.S"), str(model / "kernels.o"),
          "-lm", "-lpthread", "-o", str(out["clib"])], "building fuzz_clib")
    _run(["clang", *CFLAGS, *SAN, "-fsanitize=fuzzer", *jni_inc, str(FUZZ / "fuzz_jni.c"), *jni_src, "-ldl", "-lm",
          "-o", str(out["jni"])], "building fuzz_jni")
    _run(["clang", *CFLAGS, *SAN, *jni_inc, str(FUZZ / "jni_misuse.c"), *jni_src, "-ldl", "-lm", "-o",
          str(out["jni_misuse"])], "building jni_misuse")
    return out


def run_target(name: str, exe: Path, seconds: int, work: str | os.PathLike, model: Path) -> FuzzResult:
    """Run one target for `seconds` (corpus kept in work/corpus/NAME between runs)."""
    work = Path(work)
    corpus, artifacts = work / "corpus" / name, work / "artifacts" / name
    corpus.mkdir(parents=True, exist_ok=True)
    if artifacts.exists():
        shutil.rmtree(artifacts)  # only this script writes there: the reproducers of the previous run
    artifacts.mkdir(parents=True)
    env = {**os.environ, "SRPRUNE_FUZZ_MODEL": str(model),
           "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    cmd = [str(exe), f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048", "-max_len=4096",
           "-print_final_stats=1", f"-artifact_prefix={artifacts}/", str(corpus)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 180)
        log, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        log, rc = (exc.stdout or b"").decode() + (exc.stderr or b"").decode(), -1
    stat = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    progress = re.findall(r"^#(\d+)\s", log, re.M)  # libFuzzer's progress lines, when no final stats came
    executions = int(stat.group(1)) if stat else (int(progress[-1]) if progress else 0)
    found = sorted(p.name for p in artifacts.iterdir() if p.name.split("-")[0] in ("crash", "leak", "timeout", "oom"))
    crashes = len(found) or (1 if rc != 0 else 0)
    return FuzzResult(name, seconds, executions, crashes, found, "\n".join(log.strip().splitlines()[-25:]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("seconds", nargs="?", type=int, default=60, help="seconds per target (default 60)")
    ap.add_argument("--work", help="build and corpus folder (default: a temporary one)")
    ap.add_argument("--target", action="append", choices=TARGETS, help="run only these (repeatable)")
    args = ap.parse_args(argv)
    if args.seconds < 1:
        print("error: seconds must be >= 1")
        return 2
    if fuzzer_runtime() is None:
        print("error: clang's libFuzzer runtime is missing (run scripts/install-system-deps.sh)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        built = build(work)
        results = [run_target(t, built[t], args.seconds, work, built["model"]) for t in args.target or TARGETS]
    print(f"{'target':8} {'seconds':>7} {'executions':>11} {'crashes':>7}")
    for r in results:
        print(f"{r.target:8} {r.seconds:>7} {r.executions:>11} {r.crashes:>7}")
        if r.crashes or not r.executions:
            print(f"--- {r.target}: {', '.join(r.artifacts) or 'no executions'}\n{r.log_tail}")
    return 0 if all(r.executions and not r.crashes for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
