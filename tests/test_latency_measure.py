"""Latency back-ends: in-process and TVM RPC over loopback really run; adb command lines and parsing."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from compiler.errors import CompilerError
from compiler.latency.config import LayerConfig
from compiler.latency.measure import (
    AdbRunner,
    LocalRunner,
    RPCRunner,
    build_layer,
    layer_module,
    measure_into,
    parse_rpc_url,
    structured_weight,
)
from compiler.latency.table import load_table, open_table
from compiler.targets import get_target

CONV = LayerConfig("conv", 8, 16, 6, 20, act="relu", residual=True)
ADAPTER = LayerConfig("adapter", 8, 12, 6, 20, k=1, pad=0, bias=False)


@pytest.fixture(scope="module")
def host():
    return get_target("host", 1)


@pytest.fixture(scope="module")
def built(host):
    """The two layer kinds compiled once: a kernel (conv) and a Relax VM graph (adapter)."""
    return {"conv": build_layer(CONV, host), "adapter": build_layer(ADAPTER, host)}


def _run_kernel(built, host) -> np.ndarray:
    import tvm

    from compiler.targets import set_runtime_threads

    set_runtime_threads(1)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in built.inputs]
    out = tvm.runtime.tensor(np.zeros(built.out_shape, np.float32), dev)
    built.executable.mod.get_function(built.entry)(*args, out)
    return out.numpy()


def test_conv_layer_is_the_kernel_pytorch_agrees_with(host, built):
    """The timed code computes conv + bias + ReLU + residual (checked against PyTorch on its own inputs)."""
    built = built["conv"]
    x, wpacked, bias, resid = built.inputs
    ot = wpacked.shape[-1]
    weight = wpacked.transpose(0, 4, 1, 2, 3).reshape(16, 8, 3, 3)  # unpack [O/ot, I, H, W, ot] -> OIHW
    assert ot >= 1
    want = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight),
                                                 torch.from_numpy(bias), padding=1)) + torch.from_numpy(resid)
    np.testing.assert_allclose(_run_kernel(built, host), want.numpy(), rtol=1e-4, atol=1e-4)


def test_sparse_layer_times_the_sparse_kernel_on_its_structure(host):
    """A block-pruned conv is timed with compiler.sparse's kernel; it computes the conv of the structured weight."""
    cfg = LayerConfig("conv", 16, 16, 6, 32, act="relu", residual=True, scheme="block", ratio=0.75, block=(4, 1))
    weight = structured_weight(cfg, np.random.default_rng(0))  # build_layer(seed=0) draws this weight first
    mat = weight.reshape(16, -1)
    blocks = mat.reshape(4, 4, -1).any(axis=1)  # (row-blocks of 4, columns): kept or not
    assert blocks.mean() == pytest.approx(0.25) and np.all((mat != 0) == np.repeat(blocks, 4, axis=0))
    built = build_layer(cfg, host)
    assert built.extra.get("sparse") is True
    np.testing.assert_array_equal(built.extra["weight"], weight)
    x, resid = built.inputs[0], built.inputs[-1]
    want = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight),
                                                 torch.from_numpy(built.extra["bias"]), padding=1))
    want = want + torch.from_numpy(resid)
    np.testing.assert_allclose(_run_kernel(built, host), want.numpy(), rtol=1e-4, atol=1e-4)


def test_structured_weights_have_the_ratio():
    rng = np.random.default_rng(1)
    pat = structured_weight(LayerConfig("conv", 8, 8, 4, 4, scheme="pattern", ratio=0.8), rng)
    taps = (pat != 0).reshape(64, 9)
    assert set(taps.sum(axis=1)) <= {0, 4}  # each kernel: a 4-tap pattern or removed
    assert 1 - taps.mean() == pytest.approx(0.8, abs=0.01)
    uns = structured_weight(LayerConfig("conv", 32, 32, 4, 4, scheme="unstructured", ratio=0.5), rng)
    assert 1 - np.count_nonzero(uns) / uns.size == pytest.approx(0.5, abs=0.03)
    with pytest.raises(CompilerError, match="does not tile"):
        structured_weight(LayerConfig("conv", 8, 6, 4, 4, scheme="block", ratio=0.5, block=(4, 1)), rng)


def test_local_runner_times_kernels_and_graphs(built):
    runner = LocalRunner(1)
    for b in built.values():
        times = runner.time(b, repeat=3)
        assert len(times) == 3 and all(t > 0 for t in times)


def test_graph_layers_match_torch():
    x = torch.rand(1, 8, 6, 20)
    assert layer_module(ADAPTER)(x).shape == (1, 12, 6, 20)
    assert torch.equal(layer_module(ADAPTER)(x)[:, :8], x)
    tail = layer_module(LayerConfig("tail", 8, 12, 6, 20, scale=2))
    assert tail(x).shape == (1, 3, 12, 40)


def test_measure_into_keeps_what_was_measured(tmp_path, host):
    """A build that fails part-way (here: a pattern layer on a 1x1 conv, which cannot exist) keeps its finished chunks."""
    path = tmp_path / "table.json"
    table = open_table(path, "host", 1)
    small = [LayerConfig("conv", 4, 8, 4, 16), LayerConfig("conv", 8, 4, 4, 16, k=1, pad=0)]
    sparse = LayerConfig("conv", 8, 8, 4, 16, k=1, pad=0, scheme="pattern", ratio=0.8)
    with pytest.raises(CompilerError, match="pattern pruning keeps 4 of 9 taps"):
        measure_into(table, small + [sparse], host, LocalRunner(1), repeat=2, progress=False, chunk=2)
    saved = load_table(path)
    assert set(saved.entries) == {c.key() for c in small}
    assert all(len(e.samples_ms) == 2 for e in saved.entries.values())
    resumed = open_table(path, "host", 1)
    assert measure_into(resumed, small + [LayerConfig("conv", 4, 4, 4, 16)], host, LocalRunner(1), repeat=1,
                        progress=False) == 1
    assert len(load_table(path)) == 3


# --- TVM RPC over loopback -------------------------------------------------------------------------


_SERVER = """
import sys, time
from tvm.rpc.server import _popen_start_rpc_server
print(_popen_start_rpc_server("127.0.0.1", 19090, 19190, silent=True), flush=True)
while True:
    time.sleep(3600)
"""


@pytest.fixture(scope="module")
def rpc_port():
    """TVM's own RPC server on loopback, in a child process of its own session (killed as a group after)."""
    proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the RPC server did not start"
        yield int(proc.stdout.readline())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_rpc_loopback_measures(rpc_port, built):
    runner = RPCRunner("127.0.0.1", rpc_port, threads=1, timeout=60)
    for b in built.values():
        times = runner.time(b, repeat=2)
        assert len(times) == 2 and all(t > 0 for t in times)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_rpc_dead_port_is_one_line_error(built):
    port = _free_port()
    runner = RPCRunner.from_url(f"rpc://127.0.0.1:{port}", threads=1, timeout=5)
    t0 = time.time()
    with pytest.raises(CompilerError, match=f"RPC server rpc://127.0.0.1:{port}") as e:
        runner.time(built["conv"], repeat=1)
    assert "\n" not in str(e.value) and time.time() - t0 < 5


def test_rpc_silent_server_times_out(host):
    """A socket that accepts connections but never speaks: the timeout ends the wait, no hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        runner = RPCRunner("127.0.0.1", listener.getsockname()[1], threads=1, timeout=1.0)
        t0 = time.time()
        with pytest.raises(CompilerError, match="no answer within 1 s") as e:
            runner.session()
        assert "\n" not in str(e.value) and time.time() - t0 < 10
    finally:
        listener.close()


def test_rpc_url_parsing():
    assert parse_rpc_url("rpc://10.0.0.2:9190/pixel7") == ("10.0.0.2", 9190, "pixel7")
    assert parse_rpc_url("rpc://localhost:9090") == ("localhost", 9090, "")
    with pytest.raises(CompilerError, match="rpc://HOST:PORT"):
        parse_rpc_url("http://x:1")


# --- adb (command lines and parsing here; running needs a phone) ------------------------------------


def test_adb_command_lines(built):
    built = built["conv"]
    runner = AdbRunner("/opt/bench/srprune_bench", serial="R58M123", threads=4)
    cmds = runner.commands("/tmp/x/layer.so", built, repeat=7)
    assert cmds[0] == ["adb", "-s", "R58M123", "shell", "mkdir", "-p", "/data/local/tmp/srprune"]
    assert cmds[1] == ["adb", "-s", "R58M123", "push", "/opt/bench/srprune_bench", "/data/local/tmp/srprune/srprune_bench"]
    assert cmds[2] == ["adb", "-s", "R58M123", "push", "/tmp/x/layer.so", "/data/local/tmp/srprune/layer.so"]
    run = cmds[3]
    assert run[:4] == ["adb", "-s", "R58M123", "shell"]
    assert run[4] == ("cd /data/local/tmp/srprune && LD_LIBRARY_PATH=/data/local/tmp/srprune "
                      "/data/local/tmp/srprune/srprune_bench --lib /data/local/tmp/srprune/layer.so --entry layer "
                      "--kernel --inputs 1x8x6x20,2x8x3x3x8,16,1x16x6x20 --threads 4 --warmup 1 --repeat 7")
    assert cmds[4][-2:] == ["-f", "/data/local/tmp/srprune/layer.so"]
    assert AdbRunner("b").commands("l.so", built, 1)[0][:2] == ["adb", "shell"]  # no serial: the only device


def test_adb_output_parsing():
    out = "srprune_bench: loaded layer.so\nwarmup 0: 9.1 ms\nrun 0: 4.25 ms\nrun 1: 4.5 ms\nrun 2: 4.0 ms\n"
    assert AdbRunner.parse_output(out, repeat=3) == [4.25, 4.5, 4.0]
    with pytest.raises(CompilerError, match="printed 3 timings, expected 5"):
        AdbRunner.parse_output(out, repeat=5)
    with pytest.raises(CompilerError, match="no timings.*CANNOT LINK"):
        AdbRunner.parse_output('CANNOT LINK EXECUTABLE "srprune_bench"\n')


@pytest.mark.skip(reason="needs an Android phone on adb and the srprune_bench executable (not available in CI)")
def test_adb_on_device(host):  # pragma: no cover
    runner = AdbRunner("android_app/build/srprune_bench")
    assert len(runner.time(build_layer(CONV, get_target("android-arm64")), repeat=3)) == 3
