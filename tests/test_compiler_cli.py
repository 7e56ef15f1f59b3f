"""`srprune compile` and `srprune bench` in-process: artifacts, one-line errors, the engine table."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

import srprune.cli.compile_cmd  # noqa: F401  (registers the commands even before commands.py lists them)
from srprune.frame import parse_size
from srprune.errors import InputError


def _one_line_error(result, pattern: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = [ln for ln in result.err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and re.search(pattern, lines[0]), result.err
    assert "Traceback" not in result.err


def test_compile_writes_checked_artifact(run_cli, tmp_path) -> None:
    out = tmp_path / "ecb"
    r = run_cli("compile", "ecbsr", "--scale", "2", "--size", "48x20", "--target", "host", "-o", out)
    assert r.code == 0, r.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [1, 3, 10, 24]
    assert manifest["output"]["shape"] == [1, 3, 20, 48]
    assert manifest["meta"]["scale"] == 2 and manifest["meta"]["model"] == "ecbsr"
    assert manifest["numerics"]["max_abs_diff"] <= 1e-4
    assert manifest["fused_convs"] == 6  # head + 4 blocks + tail of ECBSR-M4C16
    assert "srprune" in manifest["meta"] and manifest["versions"]["tvm"]

    again = run_cli("compile", "ecbsr", "--scale", "2", "--size", "48x20", "-o", out)
    _one_line_error(again, "exists")


def test_compile_errors_are_one_line(run_cli, tmp_path) -> None:
    _one_line_error(run_cli("compile", "ecbsr", "-s", "2", "--target", "vax", "-o", tmp_path / "a"),
                    "unknown target 'vax'")
    _one_line_error(run_cli("compile", "ecbsr", "-s", "2", "--size", "720p", "-o", tmp_path / "b"), "--size")
    bogus = tmp_path / "notours.pt"
    bogus.write_bytes(b"this is not a model file")
    r = run_cli("compile", str(bogus), "-o", tmp_path / "c")
    assert r.code == 2 and r.err.strip().startswith("error:") and "Traceback" not in r.err
    _one_line_error(run_cli("bench", "ecbsr", "-s", "2", "--target", "android-arm64"), "cross-compiled")
    assert not any(p.name in ("a", "b", "c") for p in tmp_path.iterdir())


def test_parse_size() -> None:
    assert parse_size("1280x720") == (1280, 720)
    for bad in ("1280", "0x10", "axb", "12x-3"):
        with pytest.raises(InputError, match="WIDTHxHEIGHT"):
            parse_size(bad)


def test_bench_prints_all_engines(run_cli) -> None:
    r = run_cli("bench", "ecbsr", "-s", "2", "--size", "32x16", "--repeat", "1", "--threads", "1")
    assert r.code == 0, r.err
    rows = {ln.split()[0]: ln.split() for ln in r.out.splitlines() if ln.split()[:1] and
            ln.split()[0] in ("tvm", "torch", "onnxruntime")}
    assert set(rows) == {"tvm", "torch", "onnxruntime"}
    for cols in rows.values():
        median, lo, hi, gflops, fps = map(float, cols[1:6])
        assert 0 < lo <= median <= hi
        # the median is printed to 0.01 ms, fps from the unrounded median: it lies within the rounding's bounds
        assert 1e3 / (median + 0.005) * 0.99 <= fps <= 1e3 / max(median - 0.005, 1e-6) * 1.01
    assert "GMACs per frame" in r.out


@pytest.mark.skipif(not (shutil.which("clang") and shutil.which("ld.lld")), reason="clang/lld not installed")
def test_compile_cross_target_checks_its_schedules_on_host(run_cli, tmp_path) -> None:
    out = tmp_path / "arm"
    r = run_cli("compile", "ecbsr", "-s", "2", "--size", "40x16", "--target", "android-arm64", "-o", out)
    assert r.code == 0, r.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"]["triple"] == "aarch64-linux-android" and manifest["target"]["vec"] == 4
    assert manifest["numerics"]["max_abs_diff"] <= 1e-4
    assert "4-lane fp32 schedules" in manifest["numerics"]["checked_on"]
    header = subprocess.run(["readelf", "-h", str(out / "model.so")], capture_output=True, text=True).stdout
    assert re.search(r"Machine:\s+AArch64", header)
