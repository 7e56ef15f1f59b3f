"""Latency back-ends: in-process and TVM RPC over loopback really run; pruned layers time the weights they are given."""

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
from compiler.latency.measure import build_layer, layer_module, measure_into
from compiler.latency.runners import LocalRunner, RPCRunner, Runner, make_runner, parse_rpc_url
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


def _block_weight(cfg: LayerConfig, rng: np.random.Generator) -> np.ndarray:
    """A weight whose (rows x cols) blocks are zero at random, to the configuration's ratio (a test's own structure)."""
    rows, cols = cfg.block
    w = rng.standard_normal((cfg.cout, cfg.cin, cfg.k, cfg.k)).astype(np.float32)
    mat = w.reshape(cfg.cout, -1)
    kept = rng.permutation((cfg.cout // rows) * (mat.shape[1] // cols)) >= round(cfg.ratio * mat.size / (rows * cols))
    mask = np.repeat(np.repeat(kept.reshape(cfg.cout // rows, -1), rows, 0), cols, 1)
    return (mat * mask).reshape(w.shape)


def test_sparse_layer_times_the_sparse_kernel_on_the_given_weight(host):
    """A block-pruned conv is timed with compiler.sparse's kernel on exactly the weight passed in."""
    cfg = LayerConfig("conv", 16, 16, 6, 32, act="relu", residual=True, scheme="block", ratio=0.75, block=(4, 1))
    weight = _block_weight(cfg, np.random.default_rng(0))
    built = build_layer(cfg, host, weight=weight)
    assert built.extra.get("sparse") is True
    np.testing.assert_array_equal(built.extra["weight"], weight)
    x, resid = built.inputs[0], built.inputs[-1]
    want = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight),
                                                 torch.from_numpy(built.extra["bias"]), padding=1))
    want = want + torch.from_numpy(resid)
    np.testing.assert_allclose(_run_kernel(built, host), want.numpy(), rtol=1e-4, atol=1e-4)


def test_pruned_layers_need_a_weight_of_their_structure(host):
    """No weight, a wrong shape, or a zero fraction far from the ratio: a one-line CompilerError, nothing timed."""
    cfg = LayerConfig("conv", 8, 8, 4, 4, scheme="block", ratio=0.5, block=(4, 1))
    rng = np.random.default_rng(1)
    with pytest.raises(CompilerError, match="needs its weight"):
        build_layer(cfg, host)
    with pytest.raises(CompilerError, match="expected \\(8, 8, 3, 3\\)"):
        build_layer(cfg, host, weight=np.ones((8, 8, 1, 1), np.float32))
    with pytest.raises(CompilerError, match="0.000 zeros, not its ratio 0.5"):
        build_layer(cfg, host, weight=rng.standard_normal((8, 8, 3, 3)))


def test_local_runner_times_kernels_and_graphs(built):
    runner: Runner = LocalRunner(1)
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
    """A build that fails part-way (here: the weight source refuses a layer) keeps its finished chunks."""
    path = tmp_path / "table.json"
    table = open_table(path, "host", 1)
    small = [LayerConfig("conv", 4, 8, 4, 16), LayerConfig("conv", 8, 4, 4, 16, k=1, pad=0)]
    sparse = LayerConfig("conv", 8, 8, 4, 16, k=1, pad=0, scheme="block", ratio=0.5, block=(4, 1))

    def refuse(cfg: LayerConfig) -> np.ndarray:
        raise CompilerError(f"no weight for {cfg.key()}")

    with pytest.raises(CompilerError, match="no weight for"):
        measure_into(table, small + [sparse], host, LocalRunner(1), repeat=2, progress=False, chunk=2,
                     weight_for=refuse)
    saved = load_table(path)
    assert set(saved.entries) == {c.key() for c in small}
    assert all(len(e.samples_ms) == 2 for e in saved.entries.values())
    resumed = open_table(path, "host", 1)
    assert measure_into(resumed, small + [sparse], host, LocalRunner(1), repeat=1, progress=False,
                        weight_for=lambda c: _block_weight(c, np.random.default_rng(0))) == 1
    assert len(load_table(path)) == 3


def test_measure_into_keeps_the_dense_builds_asked_for(tmp_path, host):
    """`keep`: the dense layers built now whose keys it names come back built as `build_layer` builds them (the
    calibration times them again without compiling twice); pruned builds (their code is their weight's) and
    layers not built now are not kept."""
    table = open_table(tmp_path / "table.json", "host", 1)
    small = [LayerConfig("conv", 4, 8, 4, 16), LayerConfig("conv", 8, 4, 4, 16, k=1, pad=0)]
    sparse = LayerConfig("conv", 8, 8, 4, 16, k=1, pad=0, scheme="block", ratio=0.5, block=(4, 1))
    absent = LayerConfig("conv", 8, 8, 4, 16)
    keep = {small[1].key(): None, sparse.key(): None, absent.key(): None}
    measure_into(table, small + [sparse], host, LocalRunner(1), repeat=1, progress=False,
                 weight_for=lambda c: _block_weight(c, np.random.default_rng(0)), keep=keep)
    kept, ref = keep[small[1].key()], build_layer(small[1], host)
    assert keep[sparse.key()] is None and keep[absent.key()] is None and set(keep) == {small[1].key(), sparse.key(),
                                                                                       absent.key()}
    assert (kept.entry, kept.vm, kept.out_shape, kept.extra) == (ref.entry, ref.vm, ref.out_shape, ref.extra)
    for a, b in zip(kept.inputs, ref.inputs, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(_run_kernel(kept, host), _run_kernel(ref, host))


def test_pruned_entries_of_another_weight_source_are_dropped(tmp_path):
    """A table whose pruned entries were timed on other weights re-measures them; dense entries stay."""
    table = open_table(tmp_path / "table.json", "host", 1, machine="m")
    dense = LayerConfig("conv", 8, 8, 4, 16)
    pruned = LayerConfig("conv", 8, 8, 4, 16, scheme="block", ratio=0.5, block=(4, 1))
    table.add(dense, [1.0])
    table.add(pruned, [0.5])
    assert table.use_pruned_weights("pruner v1") == 1 and set(table.entries) == {dense.key()}
    table.add(pruned, [0.6])
    table.save()
    again = open_table(tmp_path / "table.json", "host", 1)
    assert again.use_pruned_weights("pruner v1") == 0 and len(again) == 2
    assert again.use_pruned_weights("pruner v2") == 1 and again.header["pruned_weights"] == "pruner v2"


def test_runner_factory():
    host = get_target("host", 1)
    assert isinstance(make_runner(host), LocalRunner)
    with pytest.raises(CompilerError, match="cross-compiled"):
        make_runner(get_target("android-arm64"))


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
