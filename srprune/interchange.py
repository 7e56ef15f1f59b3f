"""`srprune export MODEL --format onnx|pt2 -o FILE`: the deployed model for another runtime.

Why a file of its own and not srprune.export: that module makes TVM artifacts (our kernels, a fixed frame size);
this one hands the network to someone else's runtime (ONNX Runtime Mobile, LiteRT, ncnn via pnnx, ExecuTorch),
so the file is standalone (no srprune code needed to load it) and takes any input height and width.

What is exported is what `srprune compile` compiles: `srprune.export.deployable` (re-parameterised, channel-pruned
layers compacted as the model file holds them, masked layers with their exact zeros). Every file is checked before
it replaces anything: the written file is loaded back (ONNX Runtime, or torch.export.load) and run on an input of
another size than the one it was traced with, against PyTorch, within 1e-4.

Quantised models (the `quantized` architecture of `srprune quantize`) are written as QDQ ONNX by
srprune.quant.qdq (`_write_qdq`, chosen by `_check_exportable`; weights int8, or uint8 with `qdq_weights`); the
written file is run in ONNX Runtime and compared with the model's integer path (`srprune eval`'s) within
`srprune.quant.qdq.check_close`'s tolerance (one uint8 level on all but 0.1% of pixels, never more than 4), since
runtimes requantise with their own rounding. Where this CPU's ONNX Runtime saturates int8 weights (x86 without VNNI:
srprune.quant.qdq), an int8-weight file is run with ONNX Runtime's graph optimisations off, and the result says so.
pt2 of an int8 model is refused with one line; so is a file whose meta says quantised but that is no int8 model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from srcommon.atomic import atomic_path
from srprune.errors import InputError

FORMATS = ("onnx", "pt2")
TOLERANCE = 1e-4
TRACE_HW = (32, 48)     # (H, W) the export is traced with
CHECK_HW = (24, 40)     # (H, W) the written file is checked at: not the traced size (multiples of 8 for U-Nets)
OPSET = 18


@dataclass(frozen=True)
class ExportedFile:
    """What `export_model` wrote and how it was checked."""

    path: Path
    fmt: str
    name: str
    scale: int
    max_abs_diff: float
    checked_with: str
    check_shape: tuple[int, int, int, int]
    against: str = "PyTorch"
    note: str = ""  # what the check could not show on this machine


def format_for(out: Path, fmt: str | None) -> str:
    """The format asked for, or the one the file's suffix names; a suffix that names the other format is refused."""
    by_suffix = {".onnx": "onnx", ".pt2": "pt2"}.get(out.suffix.lower())
    if fmt is None:
        if by_suffix is None:
            raise InputError(f"{out}: cannot tell the format from the suffix; use --format onnx|pt2")
        return by_suffix
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r} (formats: {', '.join(FORMATS)})")
    if by_suffix is not None and by_suffix != fmt:
        raise InputError(f"{out}: the suffix says {by_suffix}, but --format is {fmt}")
    return fmt


def _check_exportable(info, net: nn.Module | None = None, fmt: str = "onnx") -> str:
    """The WRITERS key for this model and format, or "onnx-qdq" for int8 models (onnx only: `_write_qdq`)."""
    from srprune.quant.qmodel import is_quantized

    label = info.path or info.name
    if net is not None and is_quantized(net):
        if fmt != "onnx":
            raise InputError(f"{label} is an int8 model; {fmt} export of int8 models is not supported, "
                             "use --format onnx (QDQ)")
        return "onnx-qdq"
    meta = info.meta or {}
    if meta.get("quant") or meta.get("quantization"):
        raise InputError(f"{label} is a quantised model but not of the int8 `quantized` architecture; exporting it "
                         "is not supported yet")
    return fmt


def _dynamic(net: nn.Module, colors: int):
    """(example input, dynamic_shapes) with free batch, height and width (a batch of 2 traced, so 1 is not baked in)."""
    x = torch.rand(2, colors, *TRACE_HW, generator=torch.Generator().manual_seed(0))
    dim = torch.export.Dim.DYNAMIC
    return x, ({0: dim, 2: dim, 3: dim},)


def _trace(net: nn.Module, colors: int):
    x, dyn = _dynamic(net, colors)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(net, (x,), dynamic_shapes=dyn)
    except Exception as exc:  # noqa: BLE001  (a network torch.export cannot trace with free sizes)
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"torch.export cannot export this model with free batch, height and width: {first}") from None


def _write_pt2(net: nn.Module, colors: int, tmp: Path) -> Callable[[np.ndarray], np.ndarray]:
    torch.export.save(_trace(net, colors), str(tmp))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.load(str(tmp)).module()(torch.from_numpy(x)).numpy()
    return run


def _write_onnx(net: nn.Module, colors: int, tmp: Path) -> Callable[[np.ndarray], np.ndarray]:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise InputError("exporting ONNX needs the onnx and onnxscript packages "
                         "(pip install 'srprune[onnx]')") from None
    import contextlib
    import io
    import logging

    ep = _trace(net, colors)
    noisy = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            warnings.simplefilter("ignore")
            program = torch.onnx.export(ep, input_names=["input"], output_names=["output"], opset_version=OPSET,
                                        dynamo=True, external_data=False, verbose=False, optimize=True)
    finally:
        noisy.setLevel(level)
    program.save(str(tmp), external_data=False)
    return onnx_runner(tmp)


def onnx_runner(path: Path, optimized: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """A runner of a written ONNX file in ONNX Runtime (CPU): how every ONNX export is checked before it is kept
    (`optimized=False`: graph optimisations off, so a QDQ graph is evaluated as written, not fused into int8
    kernels)."""

    def run(x: np.ndarray) -> np.ndarray:
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("checking the exported ONNX needs onnxruntime (pip install 'srprune[onnx]')") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if not optimized:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return sess.run(None, {"input": x})[0]
    return run


def _write_qdq(net: nn.Module, tmp: Path, weights: str, optimized: bool) -> Callable[[np.ndarray], np.ndarray]:
    from srprune.quant.qdq import write_qdq

    write_qdq(net, tmp, OPSET, weights)
    return onnx_runner(tmp, optimized)


# The writer of each float format (int8 models: `_write_qdq`).
WRITERS: dict[str, Callable[[nn.Module, int, Path], Callable[[np.ndarray], np.ndarray]]] = {
    "onnx": _write_onnx, "pt2": _write_pt2}
CHECKED_WITH = {"onnx": "onnxruntime", "pt2": "torch.export.load", "onnx-qdq": "onnxruntime"}


def export_model(spec: str, out: str | Path, fmt: str | None = None, *, scale: int | None = None, seed: int = 0,
                 force: bool = False, qdq_weights: str | None = None) -> ExportedFile:
    """Write MODEL's deployed form to `out` as ONNX or a .pt2 ExportedProgram, checked against PyTorch first
    (an int8 model: QDQ ONNX, its weights in `qdq_weights` form, default int8, checked against its integer path)."""
    from srprune.export import deployable
    from srprune.outputs import check_output_file

    out = Path(out)
    fmt = format_for(out, fmt)
    target = check_output_file(out, force)  # before any slow work
    net, info, colors = deployable(spec, scale, seed)
    writer = _check_exportable(info, net, fmt)
    note = ""
    if writer == "onnx-qdq":
        from srprune.quant.qdq import ort_int8_saturates

        qdq_weights = qdq_weights or "int8"  # an unknown form: qdq_graph's one-line error, nothing written
        fused = not (qdq_weights == "int8" and ort_int8_saturates())
        if not fused:
            note = ("checked with ONNX Runtime's graph optimisations off: on this CPU (x86 without VNNI) its fused "
                    "int8-weight convs saturate; for ONNX Runtime on such CPUs export with --qdq-weights uint8")
    elif qdq_weights is not None:
        raise InputError("--qdq-weights is for int8 models (srprune quantize), which are exported as QDQ ONNX")
    x = np.random.default_rng(1).random((1, colors, *CHECK_HW), dtype=np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    with atomic_path(target) as tmp:
        run = _write_qdq(net, tmp, qdq_weights, fused) if writer == "onnx-qdq" else WRITERS[writer](net, colors, tmp)
        try:
            got = run(x)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001  (the written file does not load or run: never hand it out)
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise InputError(f"the exported {fmt} file does not run in {CHECKED_WITH[fmt]}: {first}") from None
        if writer == "onnx-qdq":  # the integer path vs the runtime's int8 kernels: not bit-exact
            from srprune.quant.qdq import FRACTION, check_close

            diff, beyond, ok = check_close(got, want)
            if not ok:
                raise InputError(f"the exported QDQ onnx file differs from the integer path by {diff:.2e} "
                                 f"({beyond:.2%} of values beyond one uint8 level, > {FRACTION:.1%} or > 4 levels)"
                                 f" at {CHECK_HW[1]}x{CHECK_HW[0]}; nothing was written")
            return ExportedFile(target, fmt, info.name, info.scale, diff, CHECKED_WITH[writer], tuple(x.shape),
                                f"the integer path (QDQ, {qdq_weights} weights)", note)
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        if not diff <= TOLERANCE:
            raise InputError(f"the exported {fmt} file differs from PyTorch by {diff:.2e} (> {TOLERANCE:g}) at "
                             f"{CHECK_HW[1]}x{CHECK_HW[0]}; nothing was written")
    return ExportedFile(target, fmt, info.name, info.scale, diff, CHECKED_WITH[fmt], tuple(x.shape))
