"""One way from a model to a deployable artifact, for `srprune compile`, `srprune android stage` and the
run's compile stage (issue 17 item 6).

Each of them used to resolve the model, deploy it, check the frame size, build the input shape and the
manifest's meta on its own; now they describe what they want (`ExportRequest`) and get back the manifest and,
for the tvm format, the compiled module (the compile stage times it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srprune.errors import InputError
from srprune.frame import default_frame, input_size
from srcommon.progress import note

FORMATS = ("tvm", "c-lib")


@dataclass(frozen=True)
class ExportRequest:
    """What to compile, for which target, into which folder."""

    model: str                                # a model file or a registered architecture name
    target: Any                               # compiler.targets.TargetSpec
    out: Path
    fmt: str = "tvm"                          # tvm (Relax VM library) | c-lib (dependency-free C library)
    scale: int | None = None                  # needed with an architecture name
    size: tuple[int, int] | None = None       # output frame (W, H); None: 720p rounded down to the scale
    seed: int = 0                             # untrained weights of a name
    force: bool = False                       # replace srprune's own earlier artifact in `out`
    tune_minutes: float | None = None         # MetaSchedule first (host, tvm format only)
    rgb_only: bool = False                    # the Android app runs 3-channel models only
    extra_meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Exported:
    """The written artifact: its manifest, what was compiled, and (tvm format) the compiled module."""

    manifest: dict[str, Any]
    model: Any                                # the deployed nn.Module that was compiled
    info: Any                                 # srprune.models.ModelInfo of what was compiled
    frame: tuple[int, int]                    # output (W, H)
    shape: tuple[int, int, int, int]          # input NCHW
    compiled: Any = None                      # compiler.build.CompiledModel (tvm format)
    tuned: Any = None                         # compiler.tune.TuneReport when tuned first


def deployable(model: str, scale: int | None, seed: int = 0):
    """(deployed model in eval mode, ModelInfo, colour channels) of a model file or architecture name.

    An int8 model (srprune quantize) comes back as itself: its callers compile it with the int8 kernels
    (`export`'s c-lib format) or bench it against its float counterpart.
    """
    from srprune.models import deploy, resolve_model

    net, info = resolve_model(model, scale, seed=seed)
    return deploy(net).eval(), info, int((info.config or {}).get("colors", 3))


def frame_and_shape(size: tuple[int, int] | None, scale: int, colors: int = 3
                    ) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """(output frame (W, H), input shape NCHW) for a requested output size (None: 720p rounded to the scale)."""
    frame = size or default_frame(scale)
    in_w, in_h = input_size(frame, scale)
    return frame, (1, colors, in_h, in_w)


def export(req: ExportRequest) -> Exported:
    """Compile `req.model` for `req.target` into `req.out` (numerics checked against PyTorch on the host)."""
    from compiler.artifact import check_out_dir, write_artifact
    from compiler.build import compile_checked
    from srprune import __version__
    from srprune.data.cache import tuning_dir
    from srprune.quant.qmodel import is_quantized

    if req.fmt not in FORMATS:
        raise InputError(f"unknown format {req.fmt!r} (formats: {', '.join(FORMATS)})")
    check_out_dir(req.out, req.force)  # before any slow work
    net, info, colors = deployable(req.model, req.scale, req.seed)
    if req.rgb_only and colors != 3:
        raise InputError(f"{req.model} has {colors} colour channels; the app runs RGB models only")
    frame, shape = frame_and_shape(req.size, info.scale, colors)
    meta = {"model": info.name, "scale": info.scale, "config": info.config, "source": info.source,
            "output_size": list(frame), "srprune": __version__, **req.extra_meta}
    if (info.meta or {}).get("candidate"):  # a searched model: its genome and pruning, for the latency model
        meta["candidate"] = info.meta["candidate"]
    note(f"compiling {info.name} x{info.scale} for {req.target.name} ({req.target.threads} threads), "
         f"input {'x'.join(map(str, shape))}")
    done = Exported({}, net, info, frame, shape)
    if is_quantized(net):
        if req.fmt != "c-lib":
            raise InputError(f"{req.model} is an int8 model: the int8 kernels build a c-lib only (use --format c-lib)")
        from compiler.int8.network import build_int8_clib
        from srprune.quant.deploy import to_int8_network

        int8 = to_int8_network(net, str(req.model))
        done.manifest = build_int8_clib(int8, shape, req.target, req.out, meta=meta, force=req.force,
                                        name=f"{info.name} x{info.scale}")
        return done
    if req.fmt == "c-lib":
        from compiler.clib.export import build_clib

        done.manifest = build_clib(net, shape, req.target, req.out, meta=meta, force=req.force,
                                   name=f"{info.name} x{info.scale}")
        return done
    if req.tune_minutes:
        from compiler.tune import tune

        done.tuned = tune(net, shape, req.target, req.tune_minutes, tuning_dir())
    done.compiled = compile_checked(net, shape, req.target, tuning_root=str(tuning_dir()))
    done.manifest = write_artifact(done.compiled, req.out, meta=meta, force=req.force)
    return done
