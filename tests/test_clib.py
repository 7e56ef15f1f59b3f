"""The c-lib on the host: built libraries called through ctypes equal PyTorch; the C ABI refuses bad calls.

Four libraries are built once for the module (about 10 s each on 2 cores): FSRCNN through the CLI,
ESPCN and deployed ECBSR through `build_clib`, and a supernet GenomeNet holding every block type
(conv, res, wide, ecb, dws and a skip cell). Spatial sizes are small and odd so kernels' row tails run.
"""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
import torch

from compiler.artifact import sha256
from compiler.build import check_tolerance, reference_output
from compiler.clib.export import build_clib
from compiler.clib.runner import CLib, aligned_empty
from compiler.clib.toolchain import classify, elf_symbols, inspect_elf
from compiler.errors import CompilerError

TOL = 1e-4
SHAPE = (1, 3, 11, 17)


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights of a realistic scale, so no layer is an identity or zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(noise / p[0].numel() ** 0.5 if p.dim() > 1 else noise * 0.1)
    return model.eval()


def _genome_net():
    from supernet.space import Cell, Genome
    from supernet.standalone import GenomeNet

    cells = [Cell("conv", 8, []), Cell("res", 12, [8]), Cell("wide", 8, [16, 8]), Cell("ecb", 8, [16]),
             Cell("skip", 0, []), Cell("dws", 8, [])]
    net = _randomise(GenomeNet(Genome(2, 8, "relu", cells)), 7)
    return net.deploy().eval()


def _cli(*args: str) -> None:
    from srprune.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    from srprune.models import build_model, deploy, resolve_model

    root = tmp_path_factory.mktemp("clib")
    built = {}
    # FSRCNN through the CLI (output 34x22 at x2 -> input 17x11); its model is the CLI's seeded one.
    _cli("compile", "fsrcnn", "--scale", "2", "--size", "34x22", "--format", "c-lib", "-o", root / "fsrcnn")
    net, _ = resolve_model("fsrcnn", 2, seed=0)
    built["fsrcnn"] = (root / "fsrcnn", deploy(net).eval())
    for name, scale in (("espcn", 3), ("ecbsr", 4)):
        model = deploy(_randomise(build_model(name, scale), 3)).eval()
        build_clib(model, SHAPE, "host", root / name, name=name, check=False)
        built[name] = (root / name, model)
    genome = _genome_net()
    build_clib(genome, SHAPE, "host", root / "genome", name="genome", check=False)
    built["genome"] = (root / "genome", genome)
    return built


@pytest.mark.parametrize("name", ["fsrcnn", "espcn", "ecbsr", "genome"])
def test_library_equals_pytorch(libs, name):
    folder, model = libs[name]
    x = np.random.default_rng(123).random(SHAPE, dtype=np.float32)
    want = reference_output(model, x)
    with CLib(folder / "libsrmodel.so") as lib:
        assert lib.input_shape == SHAPE
        got = lib.run(x)
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    assert scale > 1e-3  # a real signal, not an all-zero output
    np.testing.assert_allclose(got, want, atol=check_tolerance(want, TOL), rtol=0)
    assert float(np.abs(got - want).max()) <= 1e-4 * scale  # also relative to the output's size
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "c-lib" and manifest["output"]["shape"] == list(want.shape)
    for fname, digest in manifest["checksums"].items():
        assert sha256(folder / fname) == digest


def test_cli_manifest_records_the_check_and_meta(libs):
    manifest = json.loads((libs["fsrcnn"][0] / "manifest.json").read_text())
    assert manifest["numerics"]["max_abs_diff"] <= TOL
    assert manifest["meta"]["model"] == "fsrcnn" and manifest["meta"]["scale"] == 2
    assert manifest["input"]["shape"] == [1, 3, 11, 17] and manifest["output"]["shape"] == [1, 3, 22, 34]
    assert (libs["fsrcnn"][0] / "srmodel.h").read_text().count("SRMODEL_API") >= 10


def test_rgb8_entry_equals_pytorch_rounded(libs):
    from skimage import data

    folder, model = libs["genome"]
    rgb = np.ascontiguousarray(data.astronaut()[100:111, 200:217])
    x = rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    want = np.clip(np.round(reference_output(model, x)[0].transpose(1, 2, 0) * 255.0), 0, 255)
    with CLib(folder / "libsrmodel.so") as lib:
        got = lib.run_rgb8(rgb)
    assert got.shape == (22, 34, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_thread_counts_and_unaligned_buffers_give_the_same_output(libs):
    folder, model = libs["ecbsr"]
    x = np.random.default_rng(5).random(SHAPE, dtype=np.float32)
    want = reference_output(model, x)
    with CLib(folder / "libsrmodel.so") as lib:
        outs = []
        for threads in (1, 2, 3):
            lib.set_threads(threads)
            outs.append(lib.run(x).copy())
        raw = np.empty(x.size + 32, np.float32)
        start = (-raw.ctypes.data % 64) // 4 + 1  # one float past a 64-byte boundary: not aligned
        xin = raw[start:start + x.size]
        xin[:] = x.ravel()
        assert xin.ctypes.data % 64 != 0
        out_raw = np.empty(want.size + 32, np.float32)
        o = (-out_raw.ctypes.data % 64) // 4 + 3
        yout = out_raw[o:o + want.size]
        assert yout.ctypes.data % 64 != 0
        assert lib.lib.srmodel_run(lib.handle, xin.ctypes.data, xin.size, yout.ctypes.data, yout.size) == 0
        outs.append(yout.reshape(want.shape).copy())
    for out in outs:
        np.testing.assert_allclose(out, want, atol=check_tolerance(want, TOL), rtol=0)
        np.testing.assert_allclose(out, outs[0], atol=1e-6, rtol=0)


def test_malformed_calls_return_codes_and_messages(libs):
    folder, _ = libs["fsrcnn"]
    lib = CLib(folder / "libsrmodel.so")
    L, h = lib.lib, lib.handle
    x, y = aligned_empty(lib.input_shape), aligned_empty(lib.output_shape)
    x[:] = 0.5
    assert L.srmodel_create(None) == 1 and "out is NULL" in lib.last_error(None)
    assert L.srmodel_run(None, x.ctypes.data, x.size, y.ctypes.data, y.size) == 1
    assert "model is NULL" in lib.last_error(None)
    assert L.srmodel_run(h, None, x.size, y.ctypes.data, y.size) == 1 and "input is NULL" in lib.last_error()
    assert L.srmodel_run(h, x.ctypes.data, x.size, None, y.size) == 1 and "output is NULL" in lib.last_error()
    assert L.srmodel_run(h, x.ctypes.data, x.size - 1, y.ctypes.data, y.size) == 2
    assert f"{x.size - 1} floats, the model takes {x.size}" in lib.last_error()
    assert L.srmodel_run(h, x.ctypes.data, x.size, y.ctypes.data, y.size + 5) == 2
    assert f"the model writes {y.size}" in lib.last_error()
    both = aligned_empty((x.size + y.size,))
    assert L.srmodel_run(h, both.ctypes.data + 4 * 8, x.size, both.ctypes.data, y.size) == 1
    assert "overlap" in lib.last_error()
    assert L.srmodel_set_threads(h, 0) == 1 and "threads must be 1..256, got 0" in lib.last_error()
    assert L.srmodel_set_threads(None, 2) == 1
    assert L.srmodel_get_threads(None) == -1
    assert L.srmodel_input_shape(h, None) == 1 and "shape is NULL" in lib.last_error()
    rgb = np.zeros((11, 17, 3), np.uint8)
    assert L.srmodel_run_rgb8(h, rgb.ctypes.data, rgb.size - 3, y.ctypes.data, 22 * 34 * 3) == 2
    assert "11x17x3" in lib.last_error()
    assert L.srmodel_run_rgb8(h, None, rgb.size, y.ctypes.data, 22 * 34 * 3) == 1
    # after all that, a valid call still works
    assert L.srmodel_run(h, x.ctypes.data, x.size, y.ctypes.data, y.size) == 0
    assert np.isfinite(y).all()
    lib.close()
    lib.close()  # idempotent; destroy(NULL) is ignored
    L.srmodel_destroy(None)


DESTROYED_CALLS = ("run", "run_rgb8", "set_threads", "get_threads", "input_shape", "output_shape", "destroy")


def test_destroyed_handles_are_refused_not_used(libs):
    """Use after destroy and a double destroy: the poisoned handle is refused with ERR_ARG and a message."""
    import ctypes

    folder, _ = libs["fsrcnn"]
    lib = CLib(folder / "libsrmodel.so")
    L, h = lib.lib, lib.handle
    x, y = aligned_empty(lib.input_shape), aligned_empty(lib.output_shape)
    x[:] = 0.5
    rgb, out_rgb = np.zeros((11, 17, 3), np.uint8), np.zeros((22, 34, 3), np.uint8)
    shape = (ctypes.c_int64 * 4)(-7, -7, -7, -7)
    L.srmodel_destroy(h)
    lib.handle = None  # destroyed here: close() must not destroy it again (its memory may be a new model's)
    calls = {"run": lambda: L.srmodel_run(h, x.ctypes.data, x.size, y.ctypes.data, y.size),
             "run_rgb8": lambda: L.srmodel_run_rgb8(h, rgb.ctypes.data, rgb.size, out_rgb.ctypes.data, out_rgb.size),
             "set_threads": lambda: L.srmodel_set_threads(h, 2),
             "get_threads": lambda: L.srmodel_get_threads(h),
             "input_shape": lambda: L.srmodel_input_shape(h, shape),
             "output_shape": lambda: L.srmodel_output_shape(h, shape),
             "destroy": lambda: L.srmodel_destroy(h)}  # a double destroy
    assert set(calls) == set(DESTROYED_CALLS)
    y[:] = -1.0
    for name, call in calls.items():
        rc = call()
        want = {"get_threads": -1, "destroy": None}.get(name, 1)  # SRMODEL_ERR_ARG; destroy returns void
        assert rc == want, name
        assert lib.last_error(None) == f"srmodel_{name}: the model was destroyed"
        assert lib.last_error(h) == lib.last_error(None)  # a destroyed model's own message is not read
    assert list(shape) == [-7] * 4 and (y == -1.0).all() and not out_rgb.any()  # nothing written
    # a pointer to memory that never was a model (readable, no magic number)
    junk = np.zeros(4096, np.uint8)
    assert L.srmodel_set_threads(junk.ctypes.data, 2) == 1
    assert lib.last_error(None) == "srmodel_set_threads: not a model handle (bad magic number)"
    assert not junk.any()
    # the library still works: a new model (which may reuse the destroyed handle's memory) runs
    with CLib(folder / "libsrmodel.so") as again:
        assert np.isfinite(again.run(x)).all()


def test_bench_executable_loads_runs_and_times(libs, tmp_path):
    folder, model = libs["espcn"]
    x = np.random.default_rng(9).random(SHAPE, dtype=np.float32)
    x.tofile(tmp_path / "in.f32")
    proc = subprocess.run([str(folder / "srmodel_bench"), str(folder / "libsrmodel.so"), "-n", "5", "-t", "2",
                           "-i", str(tmp_path / "in.f32"), "-o", str(tmp_path / "out.f32")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"median_ms=([\d.]+) min_ms=([\d.]+) max_ms=([\d.]+) runs=5 threads=2", proc.stdout)
    assert m, proc.stdout
    med, lo, hi = map(float, m.groups())
    assert 0 < lo <= med <= hi
    got = np.fromfile(tmp_path / "out.f32", np.float32).reshape(reference_output(model, x).shape)
    want = reference_output(model, x)
    np.testing.assert_allclose(got, want, atol=check_tolerance(want, TOL), rtol=0)
    bad = subprocess.run([str(folder / "srmodel_bench"), str(tmp_path / "missing.so")], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 1 and "cannot load" in bad.stdout


def test_process_timer_times_the_library_in_fresh_processes(libs, tmp_path):
    """The compile stage's timer of an int8 c-lib: one srmodel_bench process per timed run; a folder without the
    bench (or a library that cannot load) is one CompilerError, not a parse failure."""
    import shutil

    from compiler.clib.runner import process_timer

    folder, _ = libs["espcn"]
    times = process_timer(folder, 2)(3)
    assert len(times) == 3 and all(t > 0 for t in times)
    with pytest.raises(CompilerError, match="no srmodel_bench"):
        process_timer(tmp_path, 2)
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy2(folder / "srmodel_bench", broken / "srmodel_bench")
    (broken / "libsrmodel.so").write_bytes(b"not a library")
    with pytest.raises(CompilerError, match="srmodel_bench .* failed: error: cannot load"):
        process_timer(broken, 2)


BENCH_BAD_ARGS = [
    (["-n", "2305843009213693955"], "-n takes a whole number in 1..1000000, got '2305843009213693955'"),
    (["-n", "0"], "-n takes a whole number in 1..1000000, got '0'"),
    (["-n", "-1"], "got '-1'"),
    (["-n", "12abc"], "got '12abc'"),
    (["-n", ""], "got ''"),
    (["-n", " 5"], "got ' 5'"),
    (["-n", "99999999999999999999999"], "got '99999999999999999999999'"),
    (["-w", "-1"], "-w takes a whole number in 0..1000000, got '-1'"),
    (["-w", "1e3"], "got '1e3'"),
    (["-t", "0"], "-t takes a whole number in 1..256, got '0'"),
    (["-t", "-3"], "-t takes a whole number in 1..256, got '-3'"),
    (["-t", "4294967297"], "-t takes a whole number in 1..256, got '4294967297'"),
    (["-t", "257"], "got '257'"),
    (["-t", "2.5"], "got '2.5'"),
    (["-t"], "-t needs a value"),
    (["-i"], "-i needs a value"),
    (["--bogus"], "unknown argument --bogus"),
    (["second.so"], "unknown argument second.so"),
]


@pytest.mark.parametrize("args,message", BENCH_BAD_ARGS)
def test_bench_rejects_bad_arguments_with_one_line(libs, args, message):
    folder, _ = libs["espcn"]
    proc = subprocess.run([str(folder / "srmodel_bench"), str(folder / "libsrmodel.so"), *args], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.startswith("error: ") and proc.stdout.count("\n") == 1 and not proc.stderr
    assert message in proc.stdout


def test_bench_without_a_library_prints_usage(libs):
    folder, _ = libs["espcn"]
    proc = subprocess.run([str(folder / "srmodel_bench"), "-n", "3"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stdout.startswith("usage: ") and proc.stdout.count("\n") == 1


def test_library_exports_only_the_api(libs):
    lib = libs["genome"][0] / "libsrmodel.so"
    undefined, exported = elf_symbols(lib)  # global/weak symbols of both symbol tables
    assert "TVMBackendParallelLaunch" not in exported and not any(s.startswith("__tvm") for s in exported)
    assert {"malloc", "pthread_create"} <= undefined and not any("TVM" in s for s in undefined)
    assert exported == {"srmodel_abi_version", "srmodel_describe", "srmodel_create", "srmodel_destroy",
                        "srmodel_input_shape", "srmodel_output_shape", "srmodel_set_threads", "srmodel_get_threads",
                        "srmodel_run", "srmodel_run_rgb8", "srmodel_last_error"}
    assert set(inspect_elf(lib)["needed"]) <= {"libc.so.6", "libm.so.6"}
    assert not inspect_elf(lib)["textrel"]


def test_header_compiles_as_c_and_cpp(tmp_path):
    from compiler.clib.toolchain import CSRC

    for compiler, ext in (("cc", "c"), ("c++", "cpp")):
        src = tmp_path / f"use.{ext}"
        src.write_text('#include "srmodel.h"\nint f(srmodel* m) { int64_t s[4]; return srmodel_input_shape(m, s); }\n')
        proc = subprocess.run([compiler, "-Wall", "-Werror", "-I", str(CSRC), "-c", str(src), "-o",
                               str(tmp_path / f"use_{ext}.o")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_unsupported_constructs_are_one_line_errors(tmp_path):
    import tvm
    from tvm.script import relax as R

    from compiler.clib.plan import plan_from_relax

    @tvm.script.ir_module
    class Packed:
        @R.function
        def main(x: R.Tensor((1, 3, 4, 4), "float32")) -> R.Tensor((1, 3, 4, 4), "float32"):
            R.func_attr({"relax.force_pure": True})
            y = R.call_packed("my_ext_func", x, sinfo_args=R.Tensor((1, 3, 4, 4), "float32"))
            return y

    with pytest.raises(CompilerError, match="c-lib does not support call_packed my_ext_func") as err:
        plan_from_relax(Packed)
    assert "\n" not in str(err.value)
    with pytest.raises(CompilerError, match="returns its input"):
        build_clib(torch.nn.Identity(), (1, 3, 4, 4), "host", tmp_path / "identity")
    assert not (tmp_path / "identity").exists()


def test_system_symbols_are_checked_against_the_allowed_lists():
    assert classify({"expf", "malloc", "dlopen"}, android=True) == {
        "libc.so": {"malloc"}, "libm.so": {"expf"}, "libdl.so": {"dlopen"}, "liblog.so": set()}
    with pytest.raises(CompilerError, match="__errno_location"):
        classify({"__errno_location"}, android=True)  # glibc-only: bionic spells it __errno
    assert classify({"__errno_location"}, android=False)["libc.so"] == {"__errno_location"}
    with pytest.raises(CompilerError, match="TVMBackendGetFuncFromEnv"):
        classify({"TVMBackendGetFuncFromEnv"}, android=False)


def test_out_folder_is_refused_unless_forced(libs):
    folder, model = libs["espcn"]
    with pytest.raises(CompilerError, match=r"exists \(use --force"):
        build_clib(model, SHAPE, "host", folder)
    assert (folder / "libsrmodel.so").exists()  # the existing library is untouched
    (folder / "notes.txt").write_text("the user's")  # --force replaces only srprune's files: refused before work
    try:
        with pytest.raises(CompilerError, match=r"did not write \(notes.txt\)"):
            build_clib(model, SHAPE, "host", folder, force=True)
        assert (folder / "libsrmodel.so").exists() and (folder / "notes.txt").read_text() == "the user's"
    finally:
        (folder / "notes.txt").unlink()


class _Reshaper(torch.nn.Module):
    """conv 3->8, a reshape to half the channels and twice the rows (a view in the plan), conv 4->3."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = self.a(x)
        return self.b(y.reshape(1, 4, 2 * x.shape[2], x.shape[3]))


def test_reshape_views_and_an_output_kept_in_the_arena(tmp_path):
    import dataclasses

    from compiler.clib.export import link_clib
    from compiler.clib.plan import REGION_ARENA, REGION_OUTPUT, TensorDesc, build_plan
    from compiler.targets import get_target

    model = _randomise(_Reshaper(), 4)
    spec = get_target("host")
    plan = build_plan(model, (1, 3, 6, 7), spec)
    arena = [t for t in plan.tensors if t.region == REGION_ARENA]
    assert any(a.offset == b.offset and a.shape != b.shape and a.nbytes == b.nbytes for a in arena for b in arena)
    # The same plan with the result placed in the arena: the runtime must copy it out after the last kernel.
    at = (plan.arena_bytes + 63) // 64 * 64
    moved = [TensorDesc(REGION_ARENA, at + t.offset, t.shape, t.dtype) if t.region == REGION_OUTPUT else t
             for t in plan.tensors]
    copy_plan = dataclasses.replace(plan, tensors=moved, arena_bytes=at + plan.tensors[plan.output_tensor].nbytes,
                                    output_copy=True)
    x = np.random.default_rng(2).random((1, 3, 6, 7), dtype=np.float32)
    want = reference_output(model, x)
    for variant, p in (("direct", plan), ("copy", copy_plan)):
        (tmp_path / variant).mkdir()
        built = link_clib(p, spec, tmp_path / variant, variant, bench=False)
        with CLib(built.library) as lib:
            got = lib.run(x)
        np.testing.assert_allclose(got, want, atol=check_tolerance(want, TOL), rtol=0)


def test_concurrent_runs_from_several_threads_are_serialised_correctly(libs):
    from concurrent.futures import ThreadPoolExecutor

    folder, model = libs["espcn"]
    inputs = [np.random.default_rng(40 + i).random(SHAPE, dtype=np.float32) for i in range(4)]
    wants = [reference_output(model, x) for x in inputs]
    a, b = CLib(folder / "libsrmodel.so"), CLib(folder / "libsrmodel.so")
    a.set_threads(1)
    b.set_threads(3)  # the shared pool is resized between runs of a and b

    def work(i: int) -> float:
        lib = a if i % 2 else b
        return max(float(np.abs(lib.run(inputs[i % 4]) - wants[i % 4]).max()) for _ in range(3))

    with ThreadPoolExecutor(4) as pool:  # ctypes releases the GIL: the calls really overlap
        diffs = list(pool.map(work, range(8)))
    a.close()
    b.close()
    assert max(diffs) <= TOL
