"""One engine in a process of its own, for benchmarks/peers.py: convert, check, then time calls on request.

Why a process per engine: each engine keeps its thread pool, allocator and converted model warm between rounds
(as an app would), and the peers live in a separate virtual environment (.venv-peers: `make peers`), since
ExecuTorch, LiteRT and OpenVINO pull in far more than srprune needs.

Protocol (stdin/stdout, one line each): the worker prints `ready MAXDIFF CONVERT_S` (or `fail REASON`) once the
model is converted and its output compared with PyTorch's (ref.npy); then each `time` line runs one inference
and prints its wall-clock seconds; `quit` ends it. Files in FOLDER (written by peers.py): model.onnx, model.pt2
(torch.export), model_peer.ts / model_peer.pt2 (the same network with peers.py's exact rewrites, for pnnx and
litert-torch), model.pkl (the nn.Module, srprune's venv only), input.npy,
ref.npy; for the `clib` engine (benchmarks/int8_networks.py: fp32 and int8 c-libs as the product ships them)
a built c-lib folder FOLDER/clib.

Usage: python peer_worker.py ENGINE FOLDER THREADS
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Run = Callable[[], np.ndarray]


def _onnxruntime(folder: Path, x: np.ndarray, threads: int) -> Run:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    return lambda: sess.run(None, feed)[0]


def _openvino(folder: Path, x: np.ndarray, threads: int) -> Run:
    import openvino as ov

    core = ov.Core()
    # f32 forced: on CPUs with AVX-512 BF16/FP16 OpenVINO would otherwise compute in a lower precision.
    compiled = core.compile_model(core.read_model(folder / "model.onnx"), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1})
    request = compiled.create_infer_request()

    def run() -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data

    return run


def _ncnn(folder: Path, x: np.ndarray, threads: int) -> Run:
    import ncnn

    work = folder / "ncnn"
    work.mkdir(exist_ok=True)
    shape = ",".join(map(str, x.shape))
    pnnx = Path(sys.executable).with_name("pnnx")
    # fp16=0: keep fp32 weights (pnnx's default stores fp16), so every engine computes in fp32.
    cmd = [str(pnnx), str(folder / "model_peer.ts"), f"inputshape=[{shape}]", "fp16=0",
           f"pnnxparam={work / 'm.pnnx.param'}", f"pnnxbin={work / 'm.pnnx.bin'}", f"pnnxpy={work / 'm_pnnx.py'}",
           f"pnnxonnx={work / 'm.pnnx.onnx'}", f"ncnnparam={work / 'm.param'}", f"ncnnbin={work / 'm.bin'}",
           f"ncnnpy={work / 'm_ncnn.py'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    if proc.returncode != 0 or not (work / "m.param").exists():
        raise RuntimeError(f"pnnx failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    net.load_param(str(work / "m.param"))
    net.load_model(str(work / "m.bin"))
    names_in, names_out = net.input_names(), net.output_names()
    mat = ncnn.Mat(np.ascontiguousarray(x[0]))

    def run() -> np.ndarray:
        ex = net.create_extractor()
        ex.input(names_in[0], mat)
        _, out = ex.extract(names_out[0])
        return np.array(out)[None]

    return run


def _mnn(folder: Path, x: np.ndarray, threads: int) -> Run:
    import MNN

    out = folder / "model.mnn"
    conv = Path(sys.executable).with_name("mnnconvert")
    proc = subprocess.run([str(conv), "-f", "ONNX", "--modelFile", str(folder / "model.onnx"), "--MNNModel",
                           str(out), "--bizCode", "srprune"], capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"mnnconvert failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    config = {"precision": "high", "backend": "CPU", "numThread": threads}  # high: fp32 arithmetic
    rt = MNN.nn.create_runtime_manager((config,))
    net = MNN.nn.load_module_from_file(str(out), [], [], runtime_manager=rt)
    var = MNN.expr.const(x, list(x.shape), MNN.expr.NCHW)

    def run() -> np.ndarray:
        y = net.forward([var])[0]
        y = MNN.expr.convert(y, MNN.expr.NCHW)
        return np.array(y.read(), copy=True)

    return run


def _exported(folder: Path, name: str = "model.pt2"):
    import torch

    return torch.export.load(str(folder / name))


def _litert(folder: Path, x: np.ndarray, threads: int) -> Run:
    import litert_torch
    import torch
    from ai_edge_litert.interpreter import Interpreter

    path = folder / "model.tflite"
    edge = litert_torch.convert(_exported(folder, "model_peer.pt2").module(), (torch.from_numpy(x),))
    edge.export(str(path))
    interp = Interpreter(model_path=str(path), num_threads=threads)  # XNNPACK is its default CPU delegate
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]

    def run() -> np.ndarray:
        interp.set_tensor(inp, x)
        interp.invoke()
        return interp.get_tensor(out)

    return run


def _executorch(folder: Path, x: np.ndarray, threads: int) -> Run:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    path = folder / "model.pte"
    program = to_edge_transform_and_lower(_exported(folder), partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(program.buffer)
    portable_lib._unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(path).load_method("forward")
    t = torch.from_numpy(x)
    return lambda: method.execute([t])[0].numpy()


def _srprune(folder: Path, x: np.ndarray, threads: int) -> Run:
    import torch
    import tvm

    from compiler.build import compile_model
    from compiler.targets import get_target

    model = torch.load(folder / "model.pkl", weights_only=False)  # our own file, written by peers.py
    compiled = compile_model(model, tuple(x.shape), get_target("host", threads), check=False)
    vm = compiled._machine()
    xt = tvm.runtime.tensor(x, tvm.cpu())
    return lambda: vm["main"](xt).numpy()


def _clib(folder: Path, x: np.ndarray, threads: int) -> Run:
    from compiler.clib.export import LIB_NAME
    from compiler.clib.runner import CLib, aligned_empty

    lib = CLib(folder / "clib" / LIB_NAME)
    lib.set_threads(threads)
    out = aligned_empty(lib.output_shape)
    return lambda: lib.run(x, out)


def _torch(folder: Path, x: np.ndarray, threads: int) -> Run:
    import torch

    torch.set_num_threads(threads)
    model = torch.load(folder / "model.pkl", weights_only=False).eval()
    t = torch.from_numpy(x)

    def run() -> np.ndarray:
        with torch.no_grad():
            return model(t).numpy()

    return run


ENGINES: dict[str, Callable[[Path, np.ndarray, int], Run]] = {
    "srprune": _srprune, "clib": _clib, "torch": _torch, "onnxruntime": _onnxruntime, "openvino": _openvino, "ncnn": _ncnn,
    "mnn": _mnn, "litert": _litert, "executorch": _executorch}


def main() -> None:
    engine, folder, threads = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    x = np.load(folder / "input.npy")
    ref = np.load(folder / "ref.npy")
    # Converters and engines print freely, Python and C alike (MNN prints its CPU features with printf): the
    # protocol gets a private copy of stdout, and file descriptor 1 becomes stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        t0 = time.perf_counter()
        run = ENGINES[engine](folder, x, threads)
        y = np.asarray(run(), dtype=np.float32).reshape(ref.shape)
        convert_s = time.perf_counter() - t0
        diff = float(np.abs(y - ref).max())
    except Exception as e:  # noqa: BLE001 - a peer that cannot convert a network is a table entry, not a crash
        reason = " ".join(f"{type(e).__name__}: {e}".split()).replace("|", "/")[:160]
        print(f"fail {reason}", file=out, flush=True)
        return
    print(f"ready {diff:.3e} {convert_s:.1f}", file=out, flush=True)
    for line in sys.stdin:
        if line.strip() != "time":
            break
        t0 = time.perf_counter()
        run()
        print(f"{time.perf_counter() - t0:.9f}", file=out, flush=True)


if __name__ == "__main__":
    main()
