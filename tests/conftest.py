"""Shared test helpers: running the CLI in-process and as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


class CliResult:
    def __init__(self, code: int, out: str, err: str, output: str | None = None) -> None:
        self.code, self.out, self.err = code, out, err
        self.exit_code, self.output = code, out + err if output is None else output


def _exit_code(e: SystemExit) -> int:
    return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


def invoke_main(*args: str) -> CliResult:
    """Run `srprune ARGS...` in-process through `main` (the real error mapping) without pytest's capsys.

    `output` holds stdout and stderr interleaved, as a user sees them.
    """
    from click.testing import CliRunner

    from srprune.cli import main

    with CliRunner().isolation() as (out, err, both):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = _exit_code(e)
    return CliResult(code, out.getvalue().decode(), err.getvalue().decode(), both.getvalue().decode())


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own LR cache, so tests never write to the user's ~/.cache."""
    monkeypatch.setenv("SRPRUNE_CACHE_DIR", str(tmp_path_factory.mktemp("srprune-cache")))


@pytest.fixture
def model_x2(tmp_path):
    """An untrained ESPCN x2 model file (seeded): a real model file for the CLI tests."""
    from srprune.models import build_model
    from srprune.models.modelfile import save_model

    torch.manual_seed(0)
    path = tmp_path / "espcn_x2.pt"
    save_model(path, build_model("espcn", 2))
    return path


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: the CI box has 2 shared cores, and tiny convs lose to OpenMP spin contention."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def run_cli(capsys):
    """Run `srprune ARGS...` in-process; return exit code, stdout and stderr."""
    from srprune.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = _exit_code(e)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def torch_conv_reference(spec, x, w, b=None, alpha=None, res=None) -> torch.Tensor:
    """What a fused conv kernel of `spec` (compiler.kernels.ConvSpec) must compute, in PyTorch:
    explicit padding, conv (groups), bias, activation (compiler.epilogue.ACTIVATIONS), residual add (its channels repeat_interleave'd
    `residual_repeat` times), PixelShuffle(`shuffle`)."""
    import torch.nn.functional as F

    top, left, bottom, right = spec.pad
    ref = F.conv2d(F.pad(torch.from_numpy(x), (left, right, top, bottom)), torch.from_numpy(w),
                   None if b is None else torch.from_numpy(b), groups=spec.groups)
    acts = {"none": lambda t: t, "relu": torch.relu, "prelu": lambda t: F.prelu(t, torch.from_numpy(alpha)),
            "leaky_relu": lambda t: F.leaky_relu(t, getattr(spec, "slope", 0.0)), "tanh": torch.tanh,
            "sigmoid": torch.sigmoid, "silu": F.silu, "hardswish": F.hardswish, "gelu": F.gelu,
            "gelu_tanh": lambda t: F.gelu(t, approximate="tanh")}
    ref = acts[spec.act](ref)
    if spec.residual:
        ref = ref + torch.from_numpy(res).repeat_interleave(getattr(spec, "residual_repeat", 1), dim=1)
    if getattr(spec, "shuffle", 1) > 1:
        ref = F.pixel_shuffle(ref, spec.shuffle)
    return ref


def run_built(built) -> np.ndarray:
    """A BuiltLayer (compiler.latency.runners) run once on its own timed inputs at 1 thread: a kernel on its inputs and
    an output buffer, a Relax VM program through its `main`."""
    import numpy as np
    import tvm
    from tvm import relax

    from compiler.targets import set_runtime_threads

    set_runtime_threads(1)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in built.inputs]
    if built.vm:
        return relax.VirtualMachine(built.executable, dev)["main"](*args).numpy()
    out = tvm.runtime.tensor(np.zeros(built.out_shape, built.out_dtype), dev)
    built.executable.mod.get_function(built.entry)(*args, out)
    return out.numpy()


def srprune_subprocess(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run the installed console command in a fresh process (checks what a user sees, tracebacks included)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-c", "from srprune.cli import main; main()", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


def assert_one_line_error(result, *fragments: str, alone: bool = False) -> None:
    """Exit code 2, a single `error:` line naming the problem, and no traceback.

    `alone`: stderr holds nothing but that line (no warning or note before it), as for input refused before any work.
    """
    code = getattr(result, "code", getattr(result, "returncode", None))
    err = getattr(result, "err", getattr(result, "stderr", ""))
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    if alone:
        assert err.strip().splitlines() == lines, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
