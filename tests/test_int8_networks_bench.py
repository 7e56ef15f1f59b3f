"""benchmarks/int8_networks.py times only engines whose output matches an independent reference: the int8 c-lib
against compiler.int8's numpy integer reference (within one uint8 step), and a wrong output is refused untimed."""

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.int8_networks import INT8_TOL, block_sparse, checked, prepare_int8, quantize
from benchmarks.peers import start, time_interleaved
from compiler.bench import PlainSR
from compiler.clib.toolchain import toolchain_for
from srprune.quant.deploy import to_int8_network

SHAPE = (1, 3, 12, 16)


def _has_cc() -> bool:
    try:
        toolchain_for("host", "x86_64-linux-gnu").check()
    except Exception:  # noqa: BLE001 - no host C toolchain: the c-lib cannot be built here
        return False
    return True


@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = PlainSR(width=8, body=2).eval()
    net = to_int8_network(quantize(model, 2), "plain test")
    return prepare_int8(net, SHAPE, tmp_path_factory.mktemp("int8") / "int8")


@pytest.mark.skipif(not _has_cc(), reason="no host C toolchain")
def test_int8_clib_matches_integer_reference_and_is_timed(int8_folder: Path, tmp_path: Path) -> None:
    import sys

    w = checked(start("clib", int8_folder, 1, sys.executable, tmp_path / "log"), INT8_TOL)
    try:
        assert not w.fail, w.fail
        assert w.diff <= INT8_TOL
        time_interleaved([w], 2, warmup=1)
    finally:
        w.close()
    assert len(w.times_ms) == 2 and all(t > 0 for t in w.times_ms)


@pytest.mark.skipif(not _has_cc(), reason="no host C toolchain")
def test_wrong_output_is_refused_untimed(int8_folder: Path, tmp_path: Path) -> None:
    import shutil
    import sys

    folder = tmp_path / "wrong"
    shutil.copytree(int8_folder, folder)
    ref = np.load(folder / "ref.npy")
    ref[0, 0, 0, 0] = ref[0, 0, 0, 0] + 2.0 / 255.0 if ref[0, 0, 0, 0] < 0.5 else ref[0, 0, 0, 0] - 2.0 / 255.0
    np.save(folder / "ref.npy", ref)
    w = checked(start("clib", folder, 1, sys.executable, tmp_path / "log"), INT8_TOL)
    assert w.fail.startswith("wrong output")
    time_interleaved([w], 2, warmup=1)
    assert w.times_ms == []


def test_block_sparse_zeroes_whole_blocks() -> None:
    torch.manual_seed(0)
    model = PlainSR(width=16, body=2).eval()
    sparse, kept = block_sparse(model)
    assert 0.4 < kept < 0.8  # the head (3 input channels) stays dense
    for name in ("body.0", "body.1", "tail"):
        w = sparse.get_submodule(name).weight.detach().numpy()
        o, i, kh, kw = w.shape
        blocks = np.abs(w).reshape(o // 4, 4, i // 4, 4, kh, kw).max(axis=(1, 3))
        assert 0.3 < np.mean(blocks == 0) < 0.7
        dense = model.get_submodule(name).weight.detach().numpy()
        assert np.array_equal(w[w != 0], dense[w != 0])
    assert np.array_equal(sparse.head.weight.detach().numpy(), model.head.weight.detach().numpy())
