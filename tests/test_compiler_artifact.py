"""Artifacts: host library round trip, arm64 cross-linked ELF structure, manifest, refusals."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

from compiler.artifact import LIB_NAME, MANIFEST, load_artifact, sha256, write_artifact
from compiler.build import compile_model, reference_output
from compiler.errors import CompilerError
from compiler.targets import TARGET_NAMES, get_target
from srcommon.owned import RECORD

SHAPE = (1, 3, 6, 10)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.PReLU(8), nn.Conv2d(8, 12, 3, padding=1),
                         nn.PixelShuffle(2)).eval()


def _readelf(path, *flags: str) -> str:
    return subprocess.run(["readelf", *flags, str(path)], capture_output=True, text=True, check=True).stdout


def test_host_artifact_round_trip(tmp_path) -> None:
    model = _model()
    compiled = compile_model(model, SHAPE, "host")
    manifest = write_artifact(compiled, tmp_path / "out", meta={"scale": 2, "model": "tiny"})
    on_disk = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert on_disk == manifest
    assert on_disk["input"]["shape"] == list(SHAPE) and on_disk["output"]["shape"] == [1, 3, 12, 20]
    assert on_disk["meta"] == {"scale": 2, "model": "tiny"}
    assert on_disk["checksums"][LIB_NAME] == sha256(tmp_path / "out" / LIB_NAME)
    assert on_disk["numerics"]["max_abs_diff"] <= 1e-4
    # no temp leftovers; the record of srprune's own files (what --force may replace) lists both
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([LIB_NAME, MANIFEST, RECORD])
    assert json.loads((tmp_path / "out" / RECORD).read_text())["files"] == sorted([LIB_NAME, MANIFEST])
    assert [p.name for p in tmp_path.iterdir()] == ["out"]

    _, lib = load_artifact(tmp_path / "out")
    vm = relax.VirtualMachine(lib, tvm.cpu())
    x = np.random.default_rng(7).random(SHAPE, dtype=np.float32)
    got = vm["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()
    np.testing.assert_allclose(got, reference_output(model, x), atol=1e-4, rtol=0)


def test_existing_folder_and_tampered_library_refused(tmp_path) -> None:
    compiled = compile_model(_model(), SHAPE, "host")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CompilerError, match="exists"):
        write_artifact(compiled, out)
    write_artifact(compiled, out, force=True)
    (out / LIB_NAME).write_bytes((out / LIB_NAME).read_bytes() + b"\0")
    with pytest.raises(CompilerError, match="checksum"):
        load_artifact(out)
    with pytest.raises(CompilerError, match="not a compiled srprune artifact"):
        load_artifact(tmp_path)
    compiled.check = {}
    with pytest.raises(CompilerError, match="not checked"):
        write_artifact(compiled, tmp_path / "unchecked")
    assert not (tmp_path / "unchecked").exists()


@pytest.mark.skipif(not (shutil.which("clang") and shutil.which("ld.lld")), reason="clang/lld not installed")
@pytest.mark.parametrize("target", ["linux-arm64", "android-arm64"])
def test_arm64_library_is_valid_aarch64_elf(tmp_path, target: str) -> None:
    compiled = compile_model(_model(), SHAPE, target)
    manifest = write_artifact(compiled, tmp_path / target, meta={"scale": 2})
    lib = tmp_path / target / LIB_NAME
    header = _readelf(lib, "-h")
    assert re.search(r"Machine:\s+AArch64", header)
    assert re.search(r"Type:\s+DYN", header)
    dynamic = _readelf(lib, "-d")
    assert "TEXTREL" not in dynamic
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    allowed = re.compile(r"^lib(c|m|dl|log)\.so(\.\d+)?$")
    assert needed and all(allowed.match(n) for n in needed), needed
    relocs = _readelf(lib, "-r")
    assert "R_AARCH64_" in relocs and "R_X86_64" not in relocs
    symbols = _readelf(lib, "-W", "--dyn-syms")
    assert "__tvm_ffi__library_bin" in symbols or "__tvm_dev_mblob" in symbols
    assert manifest["target"]["triple"].startswith("aarch64")
    assert manifest["numerics"] is None  # cannot run here; the manifest says so


def test_target_table() -> None:
    host = get_target("host", threads=2)
    assert host.threads == 2 and host.tvm["num-cores"] == 2 and not host.cross
    assert host.tvm["mcpu"] not in ("", "generic", "native")
    flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith(("flags", "Features"))), "").split()
    expected = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    assert host.vec == expected  # the SIMD width comes from the CPU, not a generic default
    for name in TARGET_NAMES[1:]:
        spec = get_target(name)
        assert spec.cross and spec.vec == (8 if name.endswith("fp16") else 4) and spec.triple.startswith("aarch64")
        assert "+neon" in spec.tvm["mattr"] and spec.tvm["mcpu"] == "generic"  # nothing beyond what mattr names
    assert "+dotprod" in get_target("android-arm64-dotprod").tvm["mattr"]
    assert "+fullfp16" in get_target("android-arm64-fp16").tvm["mattr"]
    assert [(get_target(n).precision, get_target(n).features) for n in TARGET_NAMES[1:]] == \
        [("fp32", ()), ("fp32", ()), ("fp16", ("fp16",)), ("fp32", ("dotprod",))]
    with pytest.raises(CompilerError, match="threads"):
        get_target("host", threads=0)


def test_runtime_pool_uses_every_core_of_the_process() -> None:
    """TVM's own default pool on x86_64 is half the logical CPUs (1 worker on a 2-core machine)."""
    import os
    import subprocess
    import sys

    code = (
        "import os, tvm\n"
        "from compiler.targets import default_threads, set_runtime_threads\n"
        "n = default_threads()\n"
        "set_runtime_threads(n)\n"
        "print(n, tvm.get_global_func('runtime.NumThreads')())\n"
        "try:\n"
        "    set_runtime_threads(n + 1)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.split("\n")
    cores, used = map(int, lines[0].split())
    assert cores == len(os.sched_getaffinity(0)) and used == cores
    assert lines[1] == "CompilerError"  # more threads than the pool: an error, not a silent cap
