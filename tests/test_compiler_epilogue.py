"""The fused activations (compiler/epilogue.py): accuracy against float64 references over each function's
range, vector and scalar forms, and the vectorisation claim (no libm call in the generated code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from tvm import tirx

from compiler.epilogue import ACTIVATIONS, activation
from compiler.targets import get_target

N = 4096
SLOPE = 0.2


def _elementwise(act: str, lanes: int, target) -> tvm.runtime.Module:
    """out[i] = act(data[i]) for N floats, `lanes` at a time."""
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T  # noqa: N812

    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            data = T.arg("data", T.buffer((N,), "float32"))
            alpha = T.arg("alpha", T.buffer((1,), "float32"))
            out = T.arg("out", T.buffer((N,), "float32"))
            with T.serial(0, N // lanes) as i:
                idx = tirx.Ramp(i * lanes, 1, lanes) if lanes > 1 else i
                value = activation(act, tirx.BufferLoad(data, [idx]), lanes, tirx.BufferLoad(alpha, [0]), SLOPE)
                T.buffer_store(out, value, [idx])
    return tvm.tirx.build(ib.get().with_attr("tir.is_scheduled", True), target=target)


def reference(act: str, x: np.ndarray, alpha: float = 0.25) -> np.ndarray:
    """act(x) in float64."""
    t = torch.from_numpy(x.astype(np.float64))
    fns = {"none": lambda t: t, "relu": torch.relu, "prelu": lambda t: torch.where(t > 0, t, alpha * t),
           "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, SLOPE), "tanh": torch.tanh,
           "sigmoid": torch.sigmoid, "silu": torch.nn.functional.silu, "hardswish": torch.nn.functional.hardswish,
           "gelu": torch.nn.functional.gelu, "gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh")}
    return fns[act](t).numpy()


# max |error| allowed, in float32 ULPs of max(|reference|, 1) (1 ULP = 1.2e-7 at 1): 8 ULP = 9.5e-7 absolute for
# results within [-1, 1], 9.5e-7 relative above. Measured worst (x86, AVX-512 and scalar alike): gelu 5.1 (at x = -5.6,
# where PyTorch's own float32 gelu is 6.8 off), tanh 1.7, silu 1.6, hardswish 1.7, gelu_tanh 1.5, sigmoid 0.7.
ULPS = 8.0
INPUTS = np.concatenate([np.linspace(-12, 12, N - 16), [-100, -88, -30, -9.5, -4.5, -1e-4, -1e-30, 0.0, 1e-30, 1e-4,
                                                        4.5, 9.5, 30, 88, 100, 1e4]]).astype(np.float32)


def max_error(act: str, lanes: int) -> tuple[float, float]:
    """(max abs error, max error in ULPs of max(|reference|, 1)) of the kernel over INPUTS."""
    lib = _elementwise(act, lanes, get_target("host").tvm_target())
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.full(N, np.nan, np.float32), dev)
    lib(tvm.runtime.tensor(INPUTS, dev), tvm.runtime.tensor(np.array([0.25], np.float32), dev), out)
    got, want = out.numpy().astype(np.float64), reference(act, INPUTS)
    err = np.abs(got - want)
    ulp = np.spacing(np.maximum(np.abs(want), 1.0).astype(np.float32)).astype(np.float64)
    return float(err.max()), float((err / ulp).max())


@pytest.mark.parametrize("lanes", [16, 4, 1])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_accuracy(act: str, lanes: int) -> None:
    abs_err, ulps = max_error(act, lanes)
    assert ulps <= ULPS, (abs_err, ulps)


@pytest.mark.parametrize("target", ["host", "linux-arm64"])
def test_activations_vectorise_without_libm(target: str) -> None:
    """The generated code calls no math library: tanh/sigmoid via tirx would call expf per lane."""
    for act in ACTIVATIONS:
        asm = _elementwise(act, 16, get_target(target).tvm_target()).inspect_source("asm")
        calls = {line.split()[-1] for line in asm.splitlines() if line.strip().startswith(("call", "bl\t", "bl "))}
        assert not any(name.split("@")[0] in ("expf", "tanhf", "erff", "exp", "tanh", "erf") for name in calls), calls
        if act in ("tanh", "sigmoid", "gelu"):  # the one divide runs on whole vectors
            wide = "zmm" in asm or get_target("host").vec < 16  # AVX-512 hosts: 16 lanes a register
            assert ("vdivps" in asm and wide) if target == "host" else "fdiv\tv" in asm, act
