"""Side-by-side latency of TVM (our build), PyTorch eager and ONNX Runtime on one model.

Why interleaved: the machine is shared, so engines are timed round-robin (one call each per round)
with the same thread count, and compared as ratios within one run. Latency = median of the rounds
after warm-up, for a stated input shape, target and thread count (see DESIGN.md).
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from compiler.build import compile_model
from compiler.errors import CompilerError
from compiler.importer import import_module
from compiler.targets import get_target

ENGINES = ("tvm", "torch", "onnxruntime")


class PlainSR(nn.Module):
    """The compiler issue's plain network: conv3x3 3->width + ReLU, `body` conv3x3 + ReLU, a global skip over the
    body, conv3x3 -> 3*scale^2, PixelShuffle. `PlainSR()` is benchmarks' plain-c32-d6; tests use smaller ones."""

    def __init__(self, width: int = 32, body: int = 5, scale: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(body))
        self.tail = nn.Conv2d(width, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = torch.relu(self.head(x))
        b = h
        for conv in self.body:
            b = torch.relu(conv(b))
        return self.shuffle(self.tail(b + h))


def graph_macs(model: nn.Module, input_shape: tuple[int, int, int, int]) -> int:
    """Multiply-accumulates of all conv2d and conv2d_transpose ops in the imported graph: what is compiled, counted
    from the Relax graph (srprune.complexity.count_macs counts a PyTorch module; a test holds them equal)."""
    from tvm import relax

    mod = import_module(model, input_shape)
    total = 0
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            call = binding.value
            name = getattr(call.op, "name", "") if isinstance(call, relax.Call) else ""
            if name == "relax.nn.conv2d":  # output pixels x Cout x Cin/groups x taps
                out = [int(d) for d in binding.var.ty.shape.values]
                w = [int(d) for d in call.args[1].ty.shape.values]
                total += out[0] * out[1] * out[2] * out[3] * w[1] * w[2] * w[3]
            elif name == "relax.nn.conv2d_transpose":  # input pixels x Cin x Cout/groups x taps (FSRCNN's count)
                x = [int(d) for d in call.args[0].ty.shape.values]
                w = [int(d) for d in call.args[1].ty.shape.values]  # IOHW
                total += x[0] * x[1] * x[2] * x[3] * w[1] * w[2] * w[3]
    return total


# Every engine's worker threads spin for a while after a call before they sleep (TVM's pool, PyTorch's
# OpenMP, ONNX Runtime's pool). Timed back to back, each engine would share the cores with the previous
# one's spinning threads, so each timed call waits this long first.
SETTLE_MS = 50.0


def peak_gflops(threads: int, n: int = 2048, repeat: int = 5) -> dict[str, float]:
    """The machine's measured fp32 peak from large matrix products: {"blas": ..., "tvm": ..., "peak": max}.

    "blas" is PyTorch's n x n matrix product; "tvm" is our kernel template run as a matrix product
    (a 1x1 conv is C[Cout, HW] = W[Cout, Cin] @ X[Cin, HW]; here 256 x 256 by 256 x 16384), because
    on some CPUs the bundled BLAS reaches far less than the FMA units can do.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.rand(n, n), torch.rand(n, n)
        torch.mm(a, b)
        blas = 2 * n ** 3 / min(_time(lambda: torch.mm(a, b)) for _ in range(repeat)) / 1e9
    finally:
        torch.set_num_threads(old)
    gemm = nn.Conv2d(256, 256, 1, bias=False).eval()
    shape = (1, 256, 64, 256)
    compiled = compile_model(gemm, shape, get_target("host", threads))
    best = float(min(compiled.timer(number=1, repeat=repeat)()))
    ours = 2 * 256 * 256 * 64 * 256 / best / 1e9
    out = {"blas": blas, "tvm": ours}
    try:
        out["onnxruntime"] = _ort_gemm_gflops(threads, n, repeat)
    except ImportError:  # onnxruntime is a dev extra; without it the peak is the best of the other two
        pass
    return {**out, "peak": max(out.values())}


def _ort_gemm_gflops(threads: int, n: int, repeat: int) -> float:
    """ONNX Runtime's n x n MatMul (MLAS SGEMM, hand-written AVX-512 kernels): often the best GEMM on x86."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.random((n, n), dtype=np.float32), "b": rng.random((n, n), dtype=np.float32)}
    sess.run(None, feed)
    return 2 * n ** 3 / min(_time(lambda: sess.run(None, feed)) for _ in range(repeat)) / 1e9


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _onnx_runner(model: nn.Module, x: torch.Tensor, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, input_names=["input"], output_names=["output"], dynamo=False,
                          opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {"input": x.numpy()}
    return lambda: sess.run(None, feed)


def bench_engines(model: nn.Module, input_shape: tuple[int, int, int, int], *, threads: int | None = None,
                  engines: tuple[str, ...] = ENGINES, repeat: int = 10, warmup: int = 2,
                  progress: bool = True, tuning_root: str | None = None, settle_ms: float = SETTLE_MS,
                  extra: dict[str, Callable[[], object]] | None = None) -> dict:
    """{engine: {median_ms, min_ms, max_ms}} plus "macs" and "threads"; TVM is compiled for `host`.

    `tuning_root`: MetaSchedule databases to apply to the TVM build (compiler.tune); None: untuned.
    `settle_ms`: pause before each timed call (see SETTLE_MS).
    `extra`: more runners timed in the same rounds, {name: one call} (e.g. an int8 c-lib of the same network).
    """
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise CompilerError(f"unknown engine {unknown[0]!r}; known engines: {', '.join(ENGINES)}")
    if repeat < 1 or warmup < 0:
        raise CompilerError("repeat must be >= 1 and warmup >= 0")
    target = get_target("host", threads)
    threads = target.threads
    model = model.eval()
    x = torch.from_numpy(np.random.default_rng(0).random(input_shape, dtype=np.float32))
    runners: dict[str, Callable[[], object]] = {}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if "tvm" in engines:
            compiled = compile_model(model, input_shape, target, tuning_root=tuning_root)
            timer = compiled.timer(number=1, repeat=1)
            runners["tvm"] = timer
        if "torch" in engines:
            def _torch() -> object:
                with torch.no_grad():
                    return model(x)
            runners["torch"] = _torch
        if "onnxruntime" in engines:
            runners["onnxruntime"] = _onnx_runner(model, x, threads)
        runners.update(extra or {})
        times: dict[str, list[float]] = {e: [] for e in runners}
        for _ in range(warmup):
            for fn in runners.values():
                fn()
        for _ in tqdm(range(repeat), desc="bench", unit="round", disable=not progress):
            for name, fn in runners.items():
                time.sleep(settle_ms / 1e3)
                if name == "tvm":
                    times[name].append(float(fn()[0]))  # time_evaluator: device-side seconds
                else:
                    times[name].append(_time(fn))
    finally:
        torch.set_num_threads(old_threads)
    result: dict = {"macs": graph_macs(model, input_shape), "threads": threads, "input_shape": list(input_shape)}
    for name, ts in times.items():
        arr = np.asarray(ts) * 1e3
        result[name] = {"median_ms": float(np.median(arr)), "min_ms": float(arr.min()), "max_ms": float(arr.max())}
    return result


def format_table(result: dict) -> str:
    """Side-by-side text table: ms, GFLOP/s and frames per second per engine."""
    macs = result["macs"]
    lines = [f"input {'x'.join(map(str, result['input_shape']))}, {result['threads']} threads, "
             f"{macs / 1e9:.2f} GMACs per frame",
             f"{'engine':<12} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'GFLOP/s':>9} {'fps':>7}"]
    extra = [k for k, v in result.items() if k not in ENGINES and isinstance(v, dict) and "median_ms" in v]
    for name in [*ENGINES, *extra]:
        if name in result:
            r = result[name]
            gflops = 2 * macs / (r["median_ms"] / 1e3) / 1e9
            lines.append(f"{name:<12} {r['median_ms']:>10.2f} {r['min_ms']:>9.2f} {r['max_ms']:>9.2f} "
                         f"{gflops:>9.1f} {1e3 / r['median_ms']:>7.2f}")
    return "\n".join(lines)
