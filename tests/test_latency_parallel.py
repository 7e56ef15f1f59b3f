"""compiler.latency.parallel: layers and networks compiled in worker processes are the code this process compiles.

The latency table, the calibration and the validation time what the pool hands back (exported by a worker, loaded
here), so each kind of build must come back computing exactly what an in-process build computes, its errors must
arrive as one line, and a caller's script must not run again in the workers.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from compiler.errors import CompilerError
from compiler.latency.config import LayerConfig
from compiler.latency.measure import build_one
from compiler.latency.parallel import WORKERS_ENV, BuildPool, compile_workers
from compiler.targets import get_target
from tests.conftest import ROOT, run_built

LAYERS = [
    LayerConfig("conv", 8, 16, 6, 20, act="relu", residual=True),  # direct kernel
    LayerConfig("conv", 16, 16, 12, 48),  # the rewrite's Winograd choice where it pays (then with a direct twin)
    LayerConfig("adapter", 8, 12, 6, 20, k=1, pad=0, bias=False),  # a Relax VM graph
    LayerConfig("conv", 8, 8, 6, 20, precision="int8"),  # int8 kernel
]
PRUNED = LayerConfig("conv", 8, 8, 4, 16, k=1, pad=0, scheme="block", ratio=0.5, block=(4, 1))


def _pruned_weight() -> np.ndarray:
    w = np.random.default_rng(1).standard_normal((8, 8, 1, 1)).astype(np.float32)
    w[:, ::2] = 0.0  # every other input channel: whole 4 x 1 blocks, half the weight
    return w


@pytest.fixture(scope="module")
def host():
    return get_target("host", 1)


def test_pool_builds_compute_what_in_process_builds_compute(host, capfd):
    jobs = [(c, None, True) for c in LAYERS] + [(PRUNED, _pruned_weight(), True)]
    with BuildPool(host, 2) as pool:
        assert pool._pool is not None  # really in workers
        got = dict(pool.map([(build_one, (cfg, host, weight, twin)) for cfg, weight, twin in jobs]))
    assert sorted(got) == list(range(len(jobs)))
    for i, (cfg, weight, twin) in enumerate(jobs):
        here, here_twin = build_one(cfg, host, weight, twin)
        there, there_twin = got[i]
        assert there.extra.get("kernel") == here.extra.get("kernel"), cfg.key()
        assert np.array_equal(run_built(there), run_built(here)), cfg.key()  # bit for bit: the same code
        assert (there_twin is None) == (here_twin is None)
        if there_twin is not None:
            assert np.array_equal(run_built(there_twin), run_built(here_twin)), cfg.key()
    assert got[len(LAYERS)][0].extra.get("kernel") == "sparse"


def test_a_failed_build_is_its_one_line_error(host):
    with BuildPool(host, 2) as pool:
        with pytest.raises(CompilerError, match="needs its weight with the pruner's zeros"):
            dict(pool.map([(build_one, (LAYERS[0], host)), (build_one, (PRUNED, host))]))


def test_workers_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert compile_workers() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(WORKERS_ENV, bad)
        with pytest.raises(CompilerError, match=WORKERS_ENV):
            compile_workers()
    monkeypatch.delenv(WORKERS_ENV)
    assert compile_workers() >= 1


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """Spawned workers would import the caller's main script again; a script without the guard must not start over
    in each of them."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "print('script body ran', flush=True)\n"
        "from compiler.latency.config import LayerConfig\n"
        "from compiler.latency.measure import build_one\n"
        "from compiler.latency.parallel import BuildPool\n"
        "from compiler.targets import get_target\n"
        "with BuildPool(get_target('host', 1), 2) as pool:\n"
        "    done = dict(pool.map([(build_one, (LayerConfig('conv', 4, 4, 4, 16), get_target('host', 1)))]))\n"
        "print('built', len(done), flush=True)\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("script body ran") == 1 and "built 1" in res.stdout


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting for its reaper counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_workers_end_when_their_parent_is_killed(tmp_path):
    """A run killed outright (SIGKILL: no clean-up runs) must not leave its compile workers behind."""
    script = tmp_path / "killed.py"
    script.write_text(
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from compiler.latency.parallel import BuildPool\n"
        "from compiler.targets import get_target\n"
        "with BuildPool(get_target('host', 1), 2) as pool:\n"
        "    pids = {pid for _, pid in pool.map([(os.getpid, ())] * 8)}\n"
        "    print(*pids, flush=True)\n"
        "    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert select.select([proc.stdout], [], [], 300)[0], "the script printed no worker ids in 300 s"
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert workers and all(_alive(p) for p in workers) and os.getpid() not in workers
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "compile workers outlived their killed parent"


def _die() -> None:
    """Run in a worker: end it as the OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_that_dies_is_a_one_line_error(host):
    """A worker killed mid-build (the OOM killer) ends the map with a CompilerError that says how to go on."""
    with BuildPool(host, 2) as pool:
        with pytest.raises(CompilerError, match=f"worker process died.*{WORKERS_ENV}=1"):
            list(pool.map([(_die, ())]))


def test_loaded_libraries_leave_the_scratch_folder(host):
    """Each exported build is removed once loaded, so a killed run leaves at most the few not yet loaded."""
    with BuildPool(host, 2) as pool:
        done = dict(pool.map([(build_one, (cfg, host)) for cfg in LAYERS[:1]]))
        assert done and os.listdir(pool.scratch) == []


def test_the_pool_is_for_host_runs_of_enough_builds(monkeypatch):
    from compiler.latency.parallel import MIN_POOL_JOBS, workers_for
    from compiler.latency.runners import LocalRunner, RPCRunner

    monkeypatch.setenv(WORKERS_ENV, "2")
    assert workers_for(LocalRunner(1), MIN_POOL_JOBS) == 2
    assert workers_for(LocalRunner(1), MIN_POOL_JOBS - 1) == 1  # a handful of builds: spawning would cost more
    assert workers_for(RPCRunner("127.0.0.1", 9, threads=1), 100) == 1  # the RPC runner uploads its own libraries


def test_a_network_from_the_pool_is_the_network_built_here(host, capfd):
    """A whole network (what the calibration and `latency validate` time) comes back as the same Relax VM program;
    TVM's warnings on loading it ("Scope Loaded", one per memory scope) go to the log, not the terminal."""
    import torch
    from torch import nn

    from compiler.latency.measure import build_network

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2)).eval()
    with BuildPool(host, 2) as pool:
        (_, there), = pool.map([(build_network, (net, (1, 3, 8, 16), host))])
    assert "Scope" not in capfd.readouterr().err
    here = build_network(net, (1, 3, 8, 16), host)
    assert there.vm and np.array_equal(run_built(there), run_built(here))
    want = net(torch.from_numpy(there.inputs[0])).detach().numpy()
    assert np.abs(run_built(there) - want).max() < 1e-4  # and it is the network
