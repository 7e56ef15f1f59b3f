"""Call a built c-lib from Python through ctypes (tests, verification, benchmarks on the host)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from compiler.errors import CompilerError

_ALIGN = 64


def aligned_empty(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary (no internal copy)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(n * dtype.itemsize + _ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % _ALIGN
    return raw[start:start + n * dtype.itemsize].view(dtype).reshape(shape)


def process_timer(folder: str | os.PathLike, threads: int, settle_s: float = 0.0):
    """f(repeat) -> milliseconds of `repeat` runs, each in a fresh process: the folder's srmodel_bench (the host
    build's), one warm-up run then one timed run per call, as an app process runs the library.

    Why not in this process: in a long-lived Python process that had trained and timed other runtimes, the
    compile stage measured a mixed int8 c-lib at 20.7 ms that its srmodel_bench (and a fresh Python process)
    runs in 9.2 ms, every round, with other runtimes' pools asleep (2026-12-07, 2 cores; cause not found).
    """
    import re
    import subprocess
    import time

    folder = Path(folder)
    exe = folder / "srmodel_bench"
    lib = folder / "libsrmodel.so"
    if not exe.is_file():
        raise CompilerError(f"{folder}: no srmodel_bench to time the library with (a host c-lib folder has one)")

    def once() -> float:
        r = subprocess.run([str(exe), str(lib), "-n", "1", "-w", "1", "-t", str(int(threads))], capture_output=True,
                           text=True, timeout=600)
        m = re.search(r"median_ms=([0-9.]+)", r.stdout)
        if r.returncode != 0 or m is None:
            last = (r.stdout.strip().splitlines() or ["no output"])[-1]
            raise CompilerError(f"srmodel_bench {lib} failed: {last}")
        return float(m.group(1))

    once()  # the first start pays for loading the library from disk

    def run(repeat: int) -> list[float]:
        if settle_s > 0:  # what this process timed just before: its pool asleep first (CLib.timer)
            time.sleep(settle_s)
        return [once() for _ in range(repeat)]
    return run


class CLib:
    """One loaded srmodel library and one model instance of it; `close()` (or `with`) frees it."""

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            self.lib = ctypes.CDLL(os.path.abspath(path))
        except OSError as exc:
            raise CompilerError(f"cannot load c-lib {path}: {exc}") from exc
        L = self.lib
        L.srmodel_create.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        L.srmodel_destroy.argtypes = [ctypes.c_void_p]
        L.srmodel_destroy.restype = None
        for name in ("srmodel_input_shape", "srmodel_output_shape"):
            getattr(L, name).argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)]
        L.srmodel_set_threads.argtypes = [ctypes.c_void_p, ctypes.c_int]
        L.srmodel_get_threads.argtypes = [ctypes.c_void_p]
        L.srmodel_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
        L.srmodel_run_rgb8.argtypes = L.srmodel_run.argtypes
        L.srmodel_last_error.argtypes = [ctypes.c_void_p]
        L.srmodel_last_error.restype = ctypes.c_char_p
        L.srmodel_describe.restype = ctypes.c_char_p
        handle = ctypes.c_void_p()
        if L.srmodel_create(ctypes.byref(handle)) != 0:
            raise CompilerError(f"srmodel_create failed: {self.last_error(None)}")
        self.handle = handle
        self.input_shape = self._shape(L.srmodel_input_shape)
        self.output_shape = self._shape(L.srmodel_output_shape)

    def _shape(self, fn) -> tuple[int, int, int, int]:
        buf = (ctypes.c_int64 * 4)()
        self._check(fn(self.handle, buf))
        return tuple(int(v) for v in buf)

    def last_error(self, handle=...) -> str:
        """The library's message for the last failure (handle None: the global one)."""
        h = self.handle if handle is ... else handle
        return self.lib.srmodel_last_error(h).decode("utf-8", "replace")

    def _check(self, rc: int) -> None:
        if rc != 0:
            raise CompilerError(f"c-lib call failed (code {rc}): {self.last_error()}")

    @property
    def describe(self) -> str:
        """The library's own description of its model."""
        return self.lib.srmodel_describe().decode()

    def set_threads(self, n: int) -> None:
        """Threads for the following runs."""
        self._check(self.lib.srmodel_set_threads(self.handle, int(n)))

    def run(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float32 NCHW in, float32 NCHW out (pass an aligned `out` to reuse it)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if out is None:
            out = aligned_empty(self.output_shape)
        self._check(self.lib.srmodel_run(self.handle, x.ctypes.data, x.size, out.ctypes.data, out.size))
        return out

    def timer(self, seed: int = 0, settle_s: float = 0.0):
        """f(repeat) -> per-run milliseconds on a fixed random input, after one warm-up run (the Timer of
        compiler.latency.runners, so a c-lib is timed interleaved with layers like any built network).

        `settle_s`: sleep that long before each call's runs, so that the thread pools of what was timed just
        before (TVM's, another c-lib's) have stopped spinning (compiler.latency.runners.POOL_SETTLE_S)."""
        import time

        x = np.random.default_rng(seed).random(self.input_shape, dtype=np.float32)
        out = aligned_empty(self.output_shape)
        self.run(x, out)

        def run(repeat: int) -> list[float]:
            if settle_s > 0:
                time.sleep(settle_s)
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                self.run(x, out)
                times.append((time.perf_counter() - t0) * 1e3)
            return times
        return run

    def run_rgb8(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB HxWx3 in and out."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        _, _, oh, ow = self.output_shape
        out = np.empty((oh, ow, 3), np.uint8)
        self._check(self.lib.srmodel_run_rgb8(self.handle, rgb.ctypes.data, rgb.size, out.ctypes.data, out.size))
        return out

    def close(self) -> None:
        """Destroy the model (the pool's threads end with the last model)."""
        if getattr(self, "handle", None):
            self.lib.srmodel_destroy(self.handle)
            self.handle = None

    def __enter__(self) -> CLib:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass
