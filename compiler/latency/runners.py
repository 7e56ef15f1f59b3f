"""Where compiled layers and networks are timed: one `Runner` protocol, an in-process and a TVM RPC back-end.

Why one protocol: the table build, the calibration and the validation only ever ask a runner for
`timer(built) -> f(repeat) -> [ms]` (load and warm up once, then time as often as asked), so that
they can time many things round-robin (`interleaved`) whatever the back-end.

- `LocalRunner`: in-process on this machine (targets that are not cross-compiled);
- `RPCRunner`: a TVM RPC server (`rpc://HOST:PORT`) or a tracker key (`rpc://HOST:PORT/KEY`); every
  remote step runs under a timeout, so a server that does not answer is a one-line CompilerError,
  never a hang. This is the device path for single layers (a phone runs TVM's RPC server app);
  whole-network times measured on a phone come in through `srprune android bench --json` instead.

There is no adb back-end: timing a single layer over adb would need a c-lib per layer and a layer
benchmark program on the phone, which does not exist (`srmodel_bench` times whole c-lib models).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from compiler.errors import CompilerError

if TYPE_CHECKING:  # compiler.targets imports TVM; runners are made before anything is compiled
    from compiler.targets import TargetSpec

DEFAULT_TIMEOUT_S = 30.0
Timer = Callable[[int], list[float]]  # f(repeat) -> milliseconds of `repeat` runs


@dataclass
class BuiltLayer:
    """Compiled code of one layer (or network) plus the arguments to time it with.

    `vm`: a Relax VM executable whose `main` takes `inputs`; otherwise a kernel `entry` whose
    arguments are `inputs` followed by an output buffer of `out_shape` and `out_dtype` (uint8 for an int8 layer,
    float16 for an fp16 one).
    """

    executable: Any
    entry: str
    vm: bool
    inputs: list[np.ndarray]
    out_shape: tuple[int, ...] = ()
    target: TargetSpec | None = None
    extra: dict = field(default_factory=dict)
    out_dtype: str = "float32"


class Runner(Protocol):
    """A timing back-end: `timer` loads `built` and runs it once (warm-up); the timer times `repeat` runs."""

    name: str
    threads: int

    def timer(self, built: BuiltLayer) -> Timer:
        """f(repeat) -> milliseconds of `repeat` runs (the warm-up run is done here, once)."""
        ...

    def time(self, built: BuiltLayer, repeat: int = 5) -> list[float]:
        """Milliseconds of `repeat` runs after one warm-up."""
        ...


# A thread pool keeps its workers spinning for a while after their last task (TVM's about 0.1 s, yielding; a
# c-lib's a few milliseconds), and anything timed on other threads in that window shares the cores with them: a
# c-lib timed right after a TVM layer measured 1.6-1.9x its time alone (2026-12-07, 2 cores). A timer of one
# runtime interleaved with timers of another waits this long first (CLib.timer(settle_s=...)); 50 ms sufficed.
POOL_SETTLE_S = 0.25


def interleaved(timers: list[Timer], rounds: int, span_s: float = 0.0) -> list[list[float]]:
    """Milliseconds of `rounds` runs of each timer, one timed run of each per round; with `span_s`, rounds are
    paced (a pause after a round that ends early) so that they spread over at least that many seconds.

    Why round-robin: on a shared machine the load changes over seconds, so a burst hits every
    timed thing alike instead of a few of them wholesale. Why each timed run is the second of two back to
    back: in a network a layer reads what the layer before it has just written (and a video loop runs frame
    after frame), so its data is in the caches; timed straight after the other timers of a round, a layer
    alone would read everything from memory and measure up to 30% slower than it runs in the network, more for
    memory-bound layers (a residual add, a channel pad) than for compute-bound ones (sparse kernels).
    Why a span: on a shared machine the speed shifts for seconds at a time (docs/benchmarks.md
    `measurement_noise`: on a Zen 3 VM the median of 25 back-to-back runs of one c-lib lay anywhere in 25-39 ms over
    four minutes), and rounds spread over tens of seconds sample more of those phases than one burst does.
    """
    import time

    samples: list[list[float]] = [[] for _ in timers]
    start = time.monotonic()
    for r in range(rounds):
        for i, t in enumerate(timers):
            samples[i].append(t(2)[-1])
        if span_s > 0 and r + 1 < rounds:
            time.sleep(max(0.0, start + span_s * (r + 1) / (rounds - 1) - time.monotonic()))
    return samples


def _timer(mod: Any, built: BuiltLayer, dev: Any, tensor: Callable) -> Timer:
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
    out = tensor(np.zeros(built.out_shape, dtype=built.out_dtype))
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

    def timer(self, built: BuiltLayer) -> Timer:
        """f(repeat) -> milliseconds of `repeat` runs (the warm-up run is done here, once)."""
        import tvm

        from compiler.targets import set_runtime_threads

        if built.target is not None and built.target.cross:
            raise CompilerError(f"target {built.target.name} is cross-compiled; time it over RPC")
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

    def session(self) -> Any:
        """The RPC session (connected once, under the timeout)."""
        if self._sess is None:
            from tvm import rpc

            def connect() -> Any:
                if self.tracker:
                    return rpc.connect_tracker(self.host, self.port).request(self.key, session_timeout=0)
                return rpc.connect(self.host, self.port, key=self.key)

            self._sess = with_timeout(connect, self.timeout, f"RPC server {self.address}")
            threads = self.threads
            sess = self._sess
            with_timeout(lambda: sess.get_function("runtime.config_threadpool")(1, threads), self.timeout,
                         f"RPC server {self.address}")
        return self._sess

    def timer(self, built: BuiltLayer) -> Timer:
        """Export the library, upload and load it remotely, warm up; f(repeat) times it (all under the timeout)."""
        sess = self.session()
        what = f"RPC server {self.address}"
        with tempfile.TemporaryDirectory(prefix="srprune-rpc-") as tmp:
            name = f"layer_{os.getpid()}_{id(built):x}.so"
            path = os.path.join(tmp, name)
            export_library(built, path, tmp)

            def load() -> Timer:
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


def make_runner(target: TargetSpec, rpc: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> Runner:
    """In-process for host targets; over TVM RPC when `rpc` (rpc://HOST:PORT[/KEY]) is given.

    A dead or silent RPC server fails here, before anything is compiled.
    """
    if rpc:
        runner = RPCRunner.from_url(rpc, threads=target.threads, timeout=timeout)
        runner.session()
        return runner
    if target.cross:
        raise CompilerError(f"target {target.name} is cross-compiled: measure it on the device over TVM RPC "
                            "(--rpc rpc://HOST:PORT, or rpc: in a run config)")
    return LocalRunner(target.threads)


def export_library(built: BuiltLayer, path: str, workdir: str) -> None:
    """Write the compiled layer as a shared library (cross-linked for arm64 targets)."""
    from compiler.artifact import linker_for
    from compiler.native_log import native_log

    fcompile = linker_for(built.target, workdir) if built.target is not None else None
    exe = built.executable
    try:
        with native_log():  # TVM's "Scope Saving" warnings go to the log, not the terminal
            if fcompile is None:
                exe.export_library(path)
            else:
                exe.export_library(path, fcompile=fcompile)
    except CompilerError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CompilerError(f"cannot export the layer library: {str(exc).strip().splitlines()[0]}") from exc
