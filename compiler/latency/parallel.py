"""Layers compiled in worker processes, one per core, and loaded back here to be timed alone.

Why: much of a latency build is compiling, and LLVM's code generation runs on one core (a profile of the demo's
latency stage on 2 cores: about half of it in `tvm.compile`, linking and checking builds), while timing must run with
nothing else on the machine. So a chunk of layers is compiled by a pool of worker processes (each runs the same
`build_layer` and exports its build as a shared library), then the parent loads the libraries and times them as
before, with the workers idle. The code timed is the code the compiler emits either way; only where it was compiled
differs.

Host targets only (the RPC runner exports and uploads its own libraries); one usable core, or
SRPRUNE_COMPILE_WORKERS=1, builds in this process.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any, Callable, Iterator

from compiler.errors import CompilerError
from compiler.latency.runners import BuiltLayer, LocalRunner, Runner, export_library

if TYPE_CHECKING:
    from compiler.targets import TargetSpec

WORKERS_ENV = "SRPRUNE_COMPILE_WORKERS"
# Fewer builds than this are compiled in this process: starting the workers costs a few seconds (each imports TVM
# and torch), about what a handful of small builds take.
MIN_POOL_JOBS = 8


def compile_workers() -> int:
    """Worker processes for compiling: SRPRUNE_COMPILE_WORKERS if set, else the cores this process may use."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise CompilerError(f"{WORKERS_ENV} must be a whole number >= 1, got {value!r}")
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def workers_for(runner: Runner, jobs: int) -> int:
    """Worker processes for `jobs` builds that `runner` will time: the pool for host runs of MIN_POOL_JOBS or more
    builds; 1 (this process) for the RPC runner, which exports and uploads its own libraries, and for small runs."""
    return compile_workers() if isinstance(runner, LocalRunner) and jobs >= MIN_POOL_JOBS else 1


def _export(built: BuiltLayer, path: str) -> BuiltLayer:
    """`built` written to `path` as a shared library; what returns to the parent is the rest of it."""
    export_library(built, path, os.path.dirname(path))
    return replace(built, executable=None)


def _each_layer(result: Any, path: str, fn: Callable[[BuiltLayer, str], Any]) -> Any:
    """`result` with fn(layer, `path`.K.so) in place of each BuiltLayer in it (alone, or the K-th of a tuple)."""
    if isinstance(result, BuiltLayer):
        return fn(result, f"{path}.0.so")
    if isinstance(result, tuple):
        return tuple(fn(r, f"{path}.{k}.so") if isinstance(r, BuiltLayer) else r for k, r in enumerate(result))
    return result


def _in_worker(fn: Callable[..., Any], args: tuple, path: str) -> Any:
    """In a worker: fn(*args), every BuiltLayer in its result exported next to `path` and sent back without its code;
    any other result as it is."""
    return _each_layer(fn(*args), path, _export)


def _load(built: BuiltLayer, path: str) -> BuiltLayer:
    """A layer exported by a worker, loaded: a kernel as a tvm.runtime.Executable, a Relax VM as its module."""
    import tvm

    from compiler.native_log import native_log

    with native_log():  # loading a Relax executable prints a "Scope Loaded" warning per memory scope
        mod = tvm.runtime.load_module(path)
    os.remove(path)  # the loaded library stays mapped; a killed run leaves only the libraries not yet loaded
    return replace(built, executable=mod if built.vm else tvm.runtime.Executable(mod))


# How often a worker checks that the process that started it is still alive (seconds).
PARENT_POLL_S = 1.0


def _exit_with(parent: int) -> None:
    """End this worker once `parent` is gone. A pool worker waits on its task queue forever, and a parent killed
    outright (SIGKILL, the OOM killer) cannot tell it to stop: without this, each kill of a run would leave its
    workers, each holding TVM and torch in memory, until the machine restarts."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _init_worker(parent: int) -> None:
    """Exit with the parent (_exit_with); one torch thread per worker (the pool already uses every core); TVM's pool
    is left as it is, since a network build checks its output at the target's threads."""
    import torch  # a dependency of every build (compiler.latency.measure imports it)

    threading.Thread(target=_exit_with, args=(parent,), name="srprune-parent-watch", daemon=True).start()
    torch.set_num_threads(1)


class BuildPool:
    """Builds in a pool of `workers` processes (made once, idle while the parent times), or in this process.

    Use as a context manager: `with BuildPool(target) as pool: for i, result in pool.map(calls): ...`.
    """

    def __init__(self, target: TargetSpec, workers: int | None = None) -> None:
        self.target = target
        self.workers = compile_workers() if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self._calls = 0

    def __enter__(self) -> BuildPool:
        if self.workers > 1 and not self.target.cross:
            # spawn, not fork: the parent holds TVM's and torch's thread pools, which a forked child cannot use
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                             initargs=(os.getpid(),))
            self._dir = tempfile.TemporaryDirectory(prefix="srprune-layers-")
            self._start_workers()
        return self

    @property
    def scratch(self) -> str | None:
        """The folder the workers export builds to (each library is removed once loaded here); None in-process."""
        return self._dir.name if self._dir is not None else None

    def _start_workers(self) -> None:
        """Start every worker now, with the caller's main script hidden from them. A spawned worker otherwise runs
        the parent's main module again (as __mp_main__), and a script without an `if __name__ == "__main__"` guard
        would start its whole job in each worker; the workers need nothing of it (they run module-level functions
        of srprune and compiler). The pool starts no workers later (all `workers` are started here)."""
        main = sys.modules["__main__"]
        saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
        try:
            for fut in [self._pool.submit(os.getpid) for _ in range(self.workers)]:
                fut.result()
        finally:
            main.__dict__.update(saved)
            if "__spec__" not in saved:
                main.__dict__.pop("__spec__", None)

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self._dir is not None:
            self._dir.cleanup()  # loaded libraries stay mapped; only their files go

    def map(self, calls: list[tuple[Callable[..., Any], tuple]]) -> Iterator[tuple[int, Any]]:
        """(index into `calls`, fn(*args)) for every (fn, args) of `calls`, in the order they finish: in the workers,
        where each fn is a module-level function whose BuiltLayers (returned alone or in a tuple) come back loaded; a
        failure raises its error here and cancels the calls not started; a worker that dies is a CompilerError."""
        if self._pool is None:
            for i, (fn, args) in enumerate(calls):
                yield i, fn(*args)
            return
        self._calls += 1
        pending: dict[Future, tuple[int, str]] = {}
        for i, (fn, args) in enumerate(calls):
            path = os.path.join(self._dir.name, f"call{self._calls}_{i}")
            pending[self._pool.submit(_in_worker, fn, args, path)] = (i, path)
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i, path = pending.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        raise CompilerError(
                            f"a compile worker process died (out of memory, or killed); run again to resume, "
                            f"with {WORKERS_ENV}=1 to compile in this process") from None
                    yield i, _each_layer(result, path, _load)  # the workers' exports, loaded
        finally:
            for fut in pending:
                fut.cancel()
