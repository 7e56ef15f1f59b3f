"""Compile one layer configuration alone with the project's compiler path and time it on a target.

A `conv` layer is exactly the kernel `compiler.rewrite` emits for its chain: the same `ConvSpec`,
the schedule `choose_schedule` picks for the target's SIMD width, built from
`compiler.kernels.conv2d_primfunc`. `adapter` and `tail` layers are the small torch subgraphs the
networks contain, compiled with `compiler.build.compile_model`, so they lower as in a whole network.

Back-ends (same `time(built, repeat)` contract, results in milliseconds per run):
- `LocalRunner`: in-process on this machine (targets that are not cross-compiled);
- `RPCRunner`: a TVM RPC server (`rpc://HOST:PORT`) or a tracker key; every remote step runs under a
  timeout so a server that does not answer is a one-line CompilerError, never a hang;
- `AdbRunner`: push a benchmark executable and the library to /data/local/tmp and run it (needs a
  phone; here only its command lines and output parsing are exercised).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compiler.errors import CompilerError
from compiler.latency.config import LayerConfig
from compiler.targets import TargetSpec

DEFAULT_TIMEOUT_S = 30.0


# --- layer -> compiled code ------------------------------------------------------------------------


class _Adapter(nn.Module):
    """The channel pad or slice a skip connection needs across a width change (supernet.blocks.skip_add)."""

    def __init__(self, cout: int) -> None:
        super().__init__()
        self.cout = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        cin = x.shape[1]
        if cin > self.cout:
            return x[:, : self.cout]
        return F.pad(x, (0, 0, 0, 0, 0, self.cout - cin))


class _Tail(nn.Module):
    """Tail conv3x3 + fixed bicubic skip (grouped 5x5 on the edge-padded image) + PixelShuffle.

    The image the skip reads is the first 3 trunk channels here (the layer has one input); the
    slice is a constant-size copy the calibrated overhead absorbs.
    """

    def __init__(self, cin: int, scale: int) -> None:
        super().__init__()
        out = 3 * scale * scale
        self.scale = scale
        self.tail = nn.Conv2d(cin, out, 3, padding=1)
        self.up = nn.Conv2d(3, out, 5, groups=3, bias=False)
        del self.up.weight
        self.up.register_buffer("weight", torch.rand(out, 1, 5, 5) / 25)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = h[:, :3]
        y = self.tail(h) + self.up(F.pad(x, (2, 2, 2, 2), mode="replicate"))
        return F.pixel_shuffle(y, self.scale)


def layer_module(cfg: LayerConfig) -> nn.Module:
    """The torch module of a graph-kind layer (adapter, tail), as the networks write it."""
    if cfg.op == "adapter":
        return _Adapter(cfg.cout).eval()
    if cfg.op == "tail":
        if cfg.cin < 3:
            raise CompilerError(f"a tail layer needs at least 3 input channels, got {cfg.cin}")
        return _Tail(cfg.cin, cfg.scale).eval()
    raise CompilerError(f"layer op {cfg.op!r} is not a graph layer")


@dataclass
class BuiltLayer:
    """Compiled code of one layer plus the arguments to time it with.

    `vm`: a Relax VM executable whose `main` takes `inputs`; otherwise a kernel `entry` whose
    arguments are `inputs` followed by an output buffer of `out_shape`.
    """

    executable: Any
    entry: str
    vm: bool
    inputs: list[np.ndarray]
    out_shape: tuple[int, ...] = ()
    target: TargetSpec | None = None
    extra: dict = field(default_factory=dict)


def _kernel_inputs(cfg: LayerConfig, oc_tile: int, rng: np.random.Generator) -> list[np.ndarray]:
    from compiler.kernels import pack_weight

    oh, ow = cfg.out_hw
    weight = rng.standard_normal((cfg.cout, cfg.cin // cfg.groups, cfg.k, cfg.k), dtype=np.float32)
    args = [rng.random((1, cfg.cin, cfg.h, cfg.w), dtype=np.float32), pack_weight(weight, oc_tile)]
    if cfg.bias:
        args.append(rng.standard_normal(cfg.cout, dtype=np.float32))
    if cfg.act == "prelu":
        args.append(np.full(cfg.cout, 0.25, dtype=np.float32))
    if cfg.residual:
        args.append(rng.random((1, cfg.cout, oh, ow), dtype=np.float32))
    return args


def conv_spec(cfg: LayerConfig):
    """The `compiler.kernels.ConvSpec` the rewrite builds for this conv layer."""
    from compiler.kernels import ConvSpec

    p = cfg.pad
    return ConvSpec(1, cfg.cin, cfg.h, cfg.w, cfg.cout, cfg.k, cfg.k, (p, p, p, p), cfg.groups, cfg.bias,
                    cfg.act, cfg.residual)


def build_layer(cfg: LayerConfig, target: TargetSpec, seed: int = 0) -> BuiltLayer:
    """Compile `cfg` alone for `target` with the compiler's own code path."""
    import tvm

    rng = np.random.default_rng(seed)
    if cfg.scheme != "dense" and cfg.op != "conv":
        raise CompilerError(f"only conv layers can be pruned, got {cfg.key()}")
    if cfg.scheme != "dense":
        return _build_sparse(cfg, target, rng)
    if cfg.op == "conv":
        from compiler.kernels import choose_schedule, conv2d_primfunc

        spec = conv_spec(cfg)
        sched = choose_schedule(spec, target.vec, target.registers)
        func = conv2d_primfunc(spec, sched).with_attr("global_symbol", "layer")
        try:
            exe = tvm.compile(tvm.IRModule({"layer": func}), target=target.tvm_target())
        except Exception as exc:  # noqa: BLE001
            raise CompilerError(f"cannot build layer {cfg.key()}: {str(exc).strip().splitlines()[0]}") from exc
        oh, ow = cfg.out_hw
        return BuiltLayer(exe, "layer", False, _kernel_inputs(cfg, sched.oc_tile, rng), (1, cfg.cout, oh, ow), target)
    from compiler.build import compile_model

    compiled = compile_model(layer_module(cfg), (1, cfg.cin, cfg.h, cfg.w), target, check=False)
    return BuiltLayer(compiled.executable, "main", True, [rng.random((1, cfg.cin, cfg.h, cfg.w), dtype=np.float32)],
                      compiled.output_shape, target)


def structured_weight(cfg: LayerConfig, rng: np.random.Generator) -> np.ndarray:
    """A random OIHW weight with the zero structure of `cfg`'s pruning scheme at its ratio (seeded).

    block: whole (rows x cols) blocks of the (out x in*kh*kw) matrix are zero; pattern: every kept
    3x3 kernel keeps 4 taps (a pattern) and whole kernels are removed (connectivity) to reach the ratio;
    unstructured: single weights. The time of a sparse kernel depends on the structure, not the values.
    """
    cout, cin, k = cfg.cout, cfg.cin // cfg.groups, cfg.k
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    keep = 1.0 - cfg.ratio
    if cfg.scheme == "block":
        rows, cols = cfg.block
        mat = w.reshape(cout, -1)
        if rows < 1 or cols < 1 or cout % rows or mat.shape[1] % cols:
            raise CompilerError(f"block {rows}x{cols} does not tile the {cout}x{mat.shape[1]} weight of {cfg.key()}")
        nb = (cout // rows) * (mat.shape[1] // cols)
        kept = np.zeros(nb, bool)
        kept[rng.permutation(nb)[: max(1, round(keep * nb))]] = True
        mask = np.repeat(np.repeat(kept.reshape(cout // rows, -1), rows, 0), cols, 1)
        return (mat * mask).reshape(w.shape)
    if cfg.scheme == "pattern":
        if k != 3 or keep > 4 / 9 + 1e-9:
            raise CompilerError(f"pattern pruning keeps 4 of 9 taps of 3x3 kernels (ratio >= 0.5556), got {cfg.key()}")
        patterns = [(1, 3, 4, 5), (1, 4, 5, 7), (3, 4, 5, 7), (1, 3, 4, 7), (0, 1, 3, 4), (1, 2, 4, 5)]
        taps = np.zeros((cout * cin, 9), bool)
        for i, p in enumerate(rng.integers(len(patterns), size=cout * cin)):
            taps[i, list(patterns[p])] = True
        n_kernels = max(1, round(keep * 9 / 4 * cout * cin))
        taps[rng.permutation(cout * cin)[n_kernels:]] = False
        return w * taps.reshape(cout, cin, 3, 3)
    mask = rng.random(w.shape) < keep
    return w * mask


def _build_sparse(cfg: LayerConfig, target: TargetSpec, rng: np.random.Generator) -> BuiltLayer:
    """The kernel the rewrite picks for a pruned conv: `compiler.sparse.choose_kernel` on a weight of the structure.

    Sparse kernels bake the structure (and bias/slopes) into their code, so the weight is generated
    first (seeded) and the timed code is the one the compiler would emit for such a weight; where the
    compiler's cost model keeps the dense kernel, the dense kernel is timed.
    """
    import tvm

    try:
        from compiler import sparse
    except ImportError:
        raise CompilerError(f"no sparse kernels in this compiler; cannot time {cfg.key()}") from None

    dense_cfg = LayerConfig(**{**cfg.to_dict(), "scheme": "dense", "ratio": 0.0, "block": (0, 0)})
    spec = conv_spec(cfg)
    weight = structured_weight(cfg, rng)
    plan = sparse.choose_kernel(spec, weight, target.vec, target.registers)
    if plan is None:
        return build_layer(dense_cfg, target)
    bias = rng.standard_normal(cfg.cout).astype(np.float32) if cfg.bias else None
    alpha = np.full(cfg.cout, 0.25, np.float32) if cfg.act == "prelu" else None
    func = sparse.sparse_conv2d_primfunc(spec, plan, weight, bias, alpha).with_attr("global_symbol", "layer")
    try:
        exe = tvm.compile(tvm.IRModule({"layer": func}), target=target.tvm_target())
    except Exception as exc:  # noqa: BLE001
        raise CompilerError(f"cannot build layer {cfg.key()}: {str(exc).strip().splitlines()[0]}") from exc
    oh, ow = cfg.out_hw
    args = [rng.random((1, cfg.cin, cfg.h, cfg.w), dtype=np.float32)]
    if len(func.params) == 3 + int(cfg.residual):  # the packed weights are an argument, not baked in
        args.append(sparse.pack_sparse_weight(weight, plan))
    if cfg.residual:
        args.append(rng.random((1, cfg.cout, oh, ow), dtype=np.float32))
    return BuiltLayer(exe, "layer", False, args, (1, cfg.cout, oh, ow), target,
                      {"sparse": True, "weight": weight, "bias": bias})


def build_model(model: nn.Module, input_shape: tuple[int, int, int, int], target: TargetSpec) -> BuiltLayer:
    """A whole network compiled with `compile_model` (checked against PyTorch on host), ready to time."""
    from compiler.build import compile_model

    return built_network(compile_model(model, input_shape, target))


def built_network(compiled: Any) -> BuiltLayer:
    """A compiled network (compiler.build.CompiledModel) with a seeded random input, ready to time."""
    x = np.random.default_rng(0).random(compiled.input_shape, dtype=np.float32)
    return BuiltLayer(compiled.executable, "main", True, [x], compiled.output_shape, compiled.target)


def interleaved(timers: list[Callable[[int], list[float]]], rounds: int) -> list[list[float]]:
    """Milliseconds of `rounds` runs of each timer, one run of each per round.

    Why round-robin: on a shared machine the load changes over seconds, so a burst hits every
    timed thing alike instead of a few of them wholesale.
    """
    samples: list[list[float]] = [[] for _ in timers]
    for _ in range(rounds):
        for i, t in enumerate(timers):
            samples[i].extend(t(1))
    return samples


# --- runners ---------------------------------------------------------------------------------------


def _timer(mod: Any, built: BuiltLayer, dev: Any, tensor: Callable) -> Callable[[int], list[float]]:
    """Load the arguments once, run one warm-up, and return f(repeat) -> per-run milliseconds."""
    from tvm import relax

    args = [tensor(a) for a in built.inputs]
    if built.vm:
        vm = relax.VirtualMachine(mod, dev)
        vm.set_input("main", *args)
        vm.invoke_stateful("main")  # warm-up

        def run(repeat: int) -> list[float]:
            res = vm.time_evaluator("invoke_stateful", dev, number=1, repeat=repeat)("main")
            return [float(r) * 1e3 for r in res.results]
        return run
    out = tensor(np.zeros(built.out_shape, dtype=np.float32))
    mod.get_function(built.entry)(*args, out)  # warm-up

    def run_kernel(repeat: int) -> list[float]:
        res = mod.time_evaluator(built.entry, dev, number=1, repeat=repeat)(*args, out)
        return [float(r) * 1e3 for r in res.results]
    return run_kernel


class LocalRunner:
    """Times layers in this process (host targets)."""

    name = "local"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def timer(self, built: BuiltLayer) -> Callable[[int], list[float]]:
        """f(repeat) -> milliseconds of `repeat` runs (the warm-up run is done here, once)."""
        import tvm

        from compiler.targets import set_runtime_threads

        if built.target is not None and built.target.cross:
            raise CompilerError(f"target {built.target.name} is cross-compiled; time it over RPC or adb")
        set_runtime_threads(self.threads)
        dev = tvm.cpu()
        mod = built.executable if built.vm else built.executable.mod
        return _timer(mod, built, dev, lambda a: tvm.runtime.tensor(a, dev))

    def time(self, built: BuiltLayer, repeat: int = 5) -> list[float]:
        """Milliseconds of `repeat` runs after one warm-up."""
        return self.timer(built)(repeat)


def with_timeout(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run `fn` in a daemon thread; if it does not return within `timeout` s raise a one-line CompilerError.

    Why a thread: TVM's RPC client blocks in C++ on a socket with no timeout of its own; the FFI
    call releases the GIL, so the caller can give up on it (the thread dies with the process).
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True, name=f"srprune-rpc-{what}")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise CompilerError(f"{what}: no answer within {timeout:g} s")
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, CompilerError):
            raise exc
        first = str(exc).strip().splitlines()
        msg = next((ln.strip() for ln in first if "failed" in ln.lower() or "error" in ln.lower()),
                   first[0] if first else type(exc).__name__)
        raise CompilerError(f"{what}: {msg}") from None
    return box.get("value")


_RPC_URL = re.compile(r"^rpc://(?P<host>[^:/]+):(?P<port>\d+)(?:/(?P<key>[^/]+))?/?$")


def parse_rpc_url(url: str) -> tuple[str, int, str]:
    """'rpc://HOST:PORT[/KEY]' -> (host, port, key); a key means HOST:PORT is a tracker."""
    m = _RPC_URL.match(url.strip())
    if not m:
        raise CompilerError(f"RPC address must look like rpc://HOST:PORT or rpc://HOST:PORT/KEY, got {url!r}")
    return m.group("host"), int(m.group("port")), m.group("key") or ""


class RPCRunner:
    """Times layers on a TVM RPC server (`key` empty) or on a device the tracker at HOST:PORT hands out for `key`."""

    name = "rpc"

    def __init__(self, host: str, port: int, key: str = "", *, threads: int, timeout: float = DEFAULT_TIMEOUT_S,
                 tracker: bool | None = None) -> None:
        self.host, self.port, self.key = host, int(port), key
        self.tracker = bool(key) if tracker is None else tracker
        self.threads, self.timeout = threads, float(timeout)
        self._sess = None

    @classmethod
    def from_url(cls, url: str, *, threads: int, timeout: float = DEFAULT_TIMEOUT_S) -> RPCRunner:
        """A runner for 'rpc://HOST:PORT' (a server) or 'rpc://HOST:PORT/KEY' (a tracker key)."""
        host, port, key = parse_rpc_url(url)
        return cls(host, port, key, threads=threads, timeout=timeout)

    @property
    def address(self) -> str:
        """rpc://host:port[/key] for messages."""
        return f"rpc://{self.host}:{self.port}" + (f"/{self.key}" if self.key else "")

    def session(self):
        """The RPC session (connected once, under the timeout)."""
        if self._sess is None:
            from tvm import rpc

            def connect():
                if self.tracker:
                    return rpc.connect_tracker(self.host, self.port).request(self.key, session_timeout=0)
                return rpc.connect(self.host, self.port, key=self.key)

            self._sess = with_timeout(connect, self.timeout, f"RPC server {self.address}")
            threads = self.threads
            sess = self._sess
            with_timeout(lambda: sess.get_function("runtime.config_threadpool")(1, threads), self.timeout,
                         f"RPC server {self.address}")
        return self._sess

    def timer(self, built: BuiltLayer) -> Callable[[int], list[float]]:
        """Export the library, upload and load it remotely, warm up; f(repeat) times it (all under the timeout)."""
        sess = self.session()
        what = f"RPC server {self.address}"
        with tempfile.TemporaryDirectory(prefix="srprune-rpc-") as tmp:
            name = f"layer_{os.getpid()}_{id(built):x}.so"
            path = os.path.join(tmp, name)
            export_library(built, path, tmp)

            def load() -> Callable[[int], list[float]]:
                import tvm

                sess.upload(path)
                mod = sess.load_module(name)
                dev = sess.cpu()
                return _timer(mod, built, dev, lambda a: tvm.runtime.tensor(a, dev))

            run = with_timeout(load, self.timeout, what)
        timeout = self.timeout
        return lambda repeat: with_timeout(lambda: run(repeat), timeout * max(1, repeat), what)

    def time(self, built: BuiltLayer, repeat: int = 5) -> list[float]:
        """Milliseconds of `repeat` runs on the remote device after one warm-up."""
        return self.timer(built)(repeat)


def export_library(built: BuiltLayer, path: str, workdir: str) -> None:
    """Write the compiled layer as a shared library (cross-linked for arm64 targets)."""
    from compiler.artifact import linker_for

    fcompile = linker_for(built.target, workdir) if built.target is not None else None
    exe = built.executable
    try:
        if fcompile is None:
            exe.export_library(path)
        else:
            exe.export_library(path, fcompile=fcompile)
    except CompilerError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CompilerError(f"cannot export the layer library: {str(exc).strip().splitlines()[0]}") from exc


# --- adb -------------------------------------------------------------------------------------------

ADB_DIR = "/data/local/tmp/srprune"
BENCH_EXE = "srprune_bench"
_ADB_TIME = re.compile(r"^\s*run\s+\d+\s*:\s*([0-9.eE+-]+)\s*ms\s*$")


@dataclass
class AdbRunner:
    """Times a library on a phone with adb: push `bench_exe` and the library, run, parse "run i: T ms" lines.

    The benchmark executable (built with the Android app's C++ engine on the TVM runtime) loads the
    library, runs `main` (VM) or the kernel `entry` on random input `warmup` + `repeat` times and
    prints one line per timed run. NEEDS A DEVICE: nothing here runs it without a phone.
    """

    bench_exe: str
    serial: str | None = None
    threads: int = 4
    adb: str = "adb"
    remote_dir: str = ADB_DIR
    timeout: float = 120.0
    name: str = "adb"

    def _adb(self) -> list[str]:
        return [self.adb] + (["-s", self.serial] if self.serial else [])

    def commands(self, lib_path: str, built: BuiltLayer, repeat: int, warmup: int = 1) -> list[list[str]]:
        """The adb command lines, in order, that push and time one library."""
        lib = f"{self.remote_dir}/{os.path.basename(lib_path)}"
        exe = f"{self.remote_dir}/{os.path.basename(self.bench_exe)}"
        shape = ",".join("x".join(str(d) for d in a.shape) for a in built.inputs)
        run = (f"cd {shlex.quote(self.remote_dir)} && LD_LIBRARY_PATH={shlex.quote(self.remote_dir)} "
               f"{shlex.quote(exe)} --lib {shlex.quote(lib)} --entry {shlex.quote(built.entry)} "
               f"--{'vm' if built.vm else 'kernel'} --inputs {shape} --threads {self.threads} "
               f"--warmup {warmup} --repeat {repeat}")
        return [self._adb() + ["shell", "mkdir", "-p", self.remote_dir],
                self._adb() + ["push", self.bench_exe, exe],
                self._adb() + ["push", lib_path, lib],
                self._adb() + ["shell", run],
                self._adb() + ["shell", "rm", "-f", lib]]

    @staticmethod
    def parse_output(text: str, repeat: int | None = None) -> list[float]:
        """The per-run milliseconds printed by the benchmark; anything else in the output is ignored."""
        times = [float(m.group(1)) for m in map(_ADB_TIME.match, text.splitlines()) if m]
        if not times:
            last = text.strip().splitlines()[-1:] or ["no output"]
            raise CompilerError(f"adb benchmark printed no timings (last line: {last[0][:120]!r})")
        if repeat is not None and len(times) != repeat:
            raise CompilerError(f"adb benchmark printed {len(times)} timings, expected {repeat}")
        return times

    def timer(self, built: BuiltLayer) -> Callable[[int], list[float]]:
        """f(repeat): each call pushes and runs the benchmark (which does its own warm-up)."""
        return lambda repeat: self.time(built, repeat)

    def time(self, built: BuiltLayer, repeat: int = 5) -> list[float]:
        """Push, run and parse on the phone (needs adb and a connected device)."""
        if shutil.which(self.adb) is None:
            raise CompilerError(f"{self.adb} is not installed (the adb back-end needs the Android platform tools)")
        with tempfile.TemporaryDirectory(prefix="srprune-adb-") as tmp:
            path = os.path.join(tmp, "layer.so")
            export_library(built, path, tmp)
            out = ""
            for cmd in self.commands(path, built, repeat):
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, check=False)
                except subprocess.TimeoutExpired:
                    raise CompilerError(f"adb: no answer within {self.timeout:g} s ({' '.join(cmd[:4])})") from None
                if proc.returncode != 0:
                    msg = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]
                    raise CompilerError(f"adb: {' '.join(cmd[:4])} failed: {msg[0]}")
                if "shell" in cmd and "--repeat" in cmd[-1]:
                    out = proc.stdout
        return self.parse_output(out, repeat)


# --- table builds ----------------------------------------------------------------------------------


def measure_into(table: Any, configs: list[LayerConfig], target: TargetSpec, runner: Any, *, repeat: int = 5,
                 progress: bool = True, chunk: int = 32) -> int:
    """Measure every configuration of `configs` the table lacks; returns how many were measured now.

    Why chunks timed round-robin: on a shared machine the load changes over seconds, so the layers of
    a chunk are compiled first and then timed one run each per round, `repeat` rounds (after one
    warm-up run each): a load burst hits all of them alike instead of a few entries wholesale. The
    table is saved after each chunk, so a killed build keeps every finished chunk and resumes.
    The bar counts layers (compiled and timed) with rate and ETA.
    """
    from tqdm import tqdm

    todo = table.missing(configs)
    done = 0
    bar = tqdm(total=2 * len(todo), desc=f"latency {target.name}", unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    try:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            built = []
            for cfg in part:
                bar.set_postfix_str(f"compile {cfg.key()[:40]}", refresh=False)
                built.append(build_layer(cfg, target))
                bar.update(1)
            timers = [runner.timer(b) for b in built]  # loads and warms up each layer once
            bar.set_postfix_str(f"time {len(part)} layers x {repeat} rounds", refresh=False)
            samples = interleaved(timers, repeat)
            for cfg, ts in zip(part, samples):
                table.add(cfg, ts)
            bar.update(len(part))
            done += len(part)
            table.save()
            del built, timers
    finally:
        bar.close()
    return done
