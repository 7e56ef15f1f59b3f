"""Native code under misuse: the JNI layer's bad calls throw the right Java exception (a host program over a fake
JNIEnv, AddressSanitizer + UBSan), and the libFuzzer harnesses of the C library and of the JNI layer
(scripts/fuzz.py) run a few seconds each with executions and no crash.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IAE, ISE = "java/lang/IllegalArgumentException", "java/lang/IllegalStateException"
SIDE = "sizes and scale must be positive with at most 65536 output pixels a side"
WINDOW = "the 11x11 SSIM window must fit after cropping"

# case -> (exception class or None, a fragment of its message); the program's cases must be exactly these
JNI_CASES = {
    "closed_sizes": (ISE, "sizes: the NativeEngine is closed"),
    "closed_describe": (ISE, "describe: the NativeEngine is closed"),
    "closed_set_threads": (ISE, "setThreads: the NativeEngine is closed"),
    "closed_upscale": (ISE, "upscale: the NativeEngine is closed"),
    "closed_close": (None, ""),
    "open_null_path": (IAE, "open: the library path is null"),
    "open_threads_negative": (IAE, "open: threads must be 0..256, got -1"),
    "open_threads_257": (IAE, "open: threads must be 0..256, got 257"),
    "open_missing_library": (ISE, "cannot load the model library /nonexistent/libsrmodel.so"),
    "open_foreign_library": (ISE, "srmodel_abi_version is not in the model library"),
    "open_model": (None, ""),
    "sizes": (None, ""),
    "threads_0": (IAE, "threads must be 1..256, got 0"),
    "threads_minus_3": (IAE, "threads must be 1..256, got -3"),
    "threads_257": (IAE, "threads must be 1..256, got 257"),
    "threads_int_min": (IAE, "threads must be 1..256, got -2147483648"),
    "threads_int_max": (IAE, "threads must be 1..256, got 2147483647"),
    "threads_2": (None, ""),
    "upscale_null_in": (IAE, "upscale: the input frame buffer is null (needs 8x8x4 bytes)"),
    "upscale_null_out": (IAE, "upscale: the output frame buffer is null (needs 16x16x4 bytes)"),
    "upscale_not_direct": (IAE, "upscale: the input frame buffer is not a direct buffer"),
    "upscale_short_in": (IAE, "upscale: the input frame buffer is too small (needs 8x8x4 bytes)"),
    "upscale_short_out": (IAE, "upscale: the output frame buffer is too small (needs 16x16x4 bytes)"),
    "upscale_ok": (None, ""),
    "describe": (None, ""),
    "close": (None, ""),
    "bicubic_zero_w": (IAE, f"bicubic: {SIDE}, got 0x4 x2"),
    "bicubic_negative_h": (IAE, f"bicubic: {SIDE}, got 4x-4 x2"),
    "bicubic_zero_scale": (IAE, f"bicubic: {SIDE}, got 4x4 x0"),
    "bicubic_int_min": (IAE, f"bicubic: {SIDE}, got -2147483648x-2147483648 x-2147483648"),
    "bicubic_output_side_over_limit": (IAE, f"bicubic: {SIDE}, got 65536x1 x2"),
    "bicubic_w_times_scale_wraps_int": (IAE, f"bicubic: {SIDE}, got 65536x1 x65536"),
    "bicubic_scale_int_max": (IAE, f"bicubic: {SIDE}, got 2x2 x2147483647"),
    "bicubic_w_h_product_wraps_int": (IAE, "bicubic: the input buffer is too small (needs 46341x46341x4 bytes)"),
    "bicubic_short_in": (IAE, "bicubic: the input buffer is too small (needs 4x3x4 bytes)"),
    "bicubic_short_out": (IAE, "bicubic: the output buffer is too small (needs 8x6x4 bytes)"),
    "bicubic_null_in": (IAE, "bicubic: the input buffer is null"),
    "bicubic_null_out": (IAE, "bicubic: the output buffer is null"),
    "bicubic_not_direct": (IAE, "bicubic: the output buffer is not a direct buffer"),
    "bicubic_ok": (None, ""),
    "quality_crop_negative": (IAE, "quality: 32x32 with crop -1: sides must be 11..65536"),
    "quality_crop_huge": (IAE, "quality: 32x32 with crop 1073741824"),
    "quality_crop_int_max": (IAE, "quality: 32x32 with crop 2147483647"),
    "quality_crop_leaves_10": (IAE, f"quality: 30x32 with crop 10: sides must be 11..65536 and crop 0..(side - 11) / 2 "
                                    f"({WINDOW})"),
    "quality_too_small": (IAE, "quality: 10x32 with crop 0"),
    "quality_w_int_max": (IAE, "quality: 2147483647x32 with crop 0"),
    "quality_negative_h": (IAE, "quality: 32x-32 with crop 0"),
    "quality_w_h_product_wraps_int": (IAE, "quality: the result buffer is too small (needs 46341x46341x4 bytes)"),
    "quality_short_result": (IAE, "quality: the result buffer is too small (needs 32x32x4 bytes)"),
    "quality_short_truth": (IAE, "quality: the ground truth buffer is too small (needs 32x32x4 bytes)"),
    "quality_null_result": (IAE, "quality: the result buffer is null"),
    "quality_not_direct": (IAE, "quality: the ground truth buffer is not a direct buffer"),
    "quality_ok": (None, ""),
}


def _fuzz_script():
    spec = importlib.util.spec_from_file_location("srprune_fuzz_script", ROOT / "scripts" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks the module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    mod = _fuzz_script()
    if mod.fuzzer_runtime() is None or mod.jdk_include() is None:
        subprocess.run(["bash", str(ROOT / "scripts/install-system-deps.sh")], capture_output=True, timeout=900)
    if mod.fuzzer_runtime() is None:
        pytest.skip("clang's libFuzzer runtime is unavailable (scripts/install-system-deps.sh installs libclang-rt)")
    if mod.jdk_include() is None:
        pytest.skip("javac (jni.h) is unavailable (scripts/install-system-deps.sh installs openjdk-17-jdk-headless)")
    work = tmp_path_factory.mktemp("fuzz")
    return mod, work, mod.build(work)


def test_jni_misuse_throws_the_expected_exception(fuzz):
    _, _, built = fuzz
    proc = subprocess.run([str(built["jni_misuse"]), str(built["model"])], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # a sanitizer report exits non-zero
    assert "ERROR: AddressSanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "violations=0"  # no JNI call made with an exception pending
    rows = {}
    for line in lines[:-1]:
        name, cls, msg = line.split("\t")
        rows[name] = (None if cls == "-" else cls, msg)
    extra = {k: v for k, v in rows.items() if k in ("sizes_values", "upscale_ms", "describe_text", "quality_ok-values")}
    cases = {k: v for k, v in rows.items() if k not in extra}
    assert set(cases) == set(JNI_CASES)
    for name, (cls, fragment) in JNI_CASES.items():
        got_cls, got_msg = cases[name]
        assert got_cls == cls, (name, got_cls, got_msg)
        assert fragment in got_msg, (name, got_msg)
        assert "\n" not in got_msg
    # the valid calls did their work
    assert extra["sizes_values"][1] == "8x8->16x16" and extra["upscale_ms"][1] == "nonnegative"
    assert extra["describe_text"][1].startswith("espcn x2 (fuzz)")
    assert extra["quality_ok-values"][1] == "psnr=1e+300 ssim=1"  # identical images


@pytest.mark.parametrize("target", ["clib", "jni"])
def test_fuzz_target_runs_without_crashes(fuzz, target):
    mod, work, built = fuzz
    result = mod.run_target(target, built[target], 4, work, built["model"])
    assert result.executions > 100, result.log_tail
    assert result.crashes == 0, f"{result.artifacts}\n{result.log_tail}"
