"""The srprune model file: one `torch.save` dict of plain data and tensors, no pickled classes.

    {"format": "srprune-model", "version": 1,
     "arch": {"name": str, "scale": int, "config": dict},
     "state_dict": {str: Tensor}, "meta": dict}

Loading uses `torch.load(weights_only=True)`, so a model file can never run code, and the
module is rebuilt from the registry with `build_model(**arch)`. Every way a file can be wrong
ends in one InputError line that names the file and the problem.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srcommon.atomic import atomic_path
from srprune.outputs import check_writable
from srprune.errors import InputError
from srprune.models.registry import build_model, check_plain, is_registered, list_models

FORMAT = "srprune-model"
VERSION = 1


def save_model(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any] | None = None,
               force: bool = False) -> Path:
    """Write `model` (which must carry `.arch` from `build_model`) and `meta` to `path` atomically.

    Refuses to overwrite an existing file unless `force`. `meta` must be JSON-like plain data
    (training info, metrics). Tensors are stored on the CPU. Returns the path written.
    """
    arch = getattr(model, "arch", None)
    if not (isinstance(arch, dict) and {"name", "scale", "config"} <= set(arch)):
        raise InputError(f"cannot save {type(model).__name__} to {path}: it has no .arch description "
                         "(build it with srprune.models.build_model)")
    if meta is not None and not isinstance(meta, dict):
        raise InputError(f"cannot save {path}: meta must be a dict, got {type(meta).__name__}")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": {"name": str(arch["name"]), "scale": int(arch["scale"]),
                 "config": check_plain(dict(arch["config"]), f"arch config of {path}")},
        "state_dict": {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()},
        "meta": check_plain(meta or {}, f"meta of {path}"),
    }
    target = check_writable(path, force)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate the dict in a model file without building the module."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file {path} does not exist")
    if not path.is_file():
        raise InputError(f"model file {path} is not a file")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them: one line only
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise InputError(f"{path} is not an srprune model file: it holds pickled Python objects{what} "
                         "that a safe load refuses") from None
    except Exception:  # torch raises RuntimeError/EOFError/KeyError/... for bytes it cannot read
        try:
            with open(path, "rb") as f:
                is_zip = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
        except OSError as exc:  # unreadable at all (permissions, I/O): say so, not "damaged"
            raise InputError(f"model file {path} cannot be read ({exc.strerror or exc})") from None
        problem = "damaged (corrupt or truncated)" if is_zip else "not a torch file"
        raise InputError(f"{path} is {problem}: it cannot be read as a model file") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            what = "a plain state_dict"
        else:
            what = f"a {type(obj).__name__}" + (f" with keys {', '.join(map(str, list(obj)[:5]))}"
                                                  if isinstance(obj, dict) else "")
        raise InputError(f"{path} is a torch file but not an srprune model file: it holds {what}, "
                         f"not a dict with format {FORMAT!r}")
    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"{path}: invalid model file version {version!r}")
    if version > VERSION:
        raise InputError(f"{path} has model file format version {version}; this srprune reads up to "
                         f"version {VERSION} (upgrade srprune)")
    arch = obj.get("arch")
    if not (isinstance(arch, dict) and isinstance(arch.get("name"), str)
            and isinstance(arch.get("scale"), int) and isinstance(arch.get("config"), dict)):
        raise InputError(f"{path}: 'arch' must be a dict with name (str), scale (int) and config (dict)")
    if not is_registered(arch["name"]):
        raise InputError(f"{path}: unknown architecture {arch['name']!r} (known: {', '.join(list_models())})")
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: 'state_dict' must be a dict of tensors")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise InputError(f"{path}: 'meta' must be a dict, got {type(meta).__name__}")
    return obj


def _check_weights(path: Path, model: nn.Module, state: dict[str, torch.Tensor], label: str) -> None:
    """Raise one line listing missing, unexpected and mis-shaped weights, if any."""
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            problems.append(f"{title}: {', '.join(items[:3])}{more}")
    if problems:
        raise InputError(f"{path}: weights do not match architecture {label} ({'; '.join(problems)})")


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the module stored in `path` (on the CPU, in eval mode).

    Returns `(model, info)` with info = {"path", "name", "scale", "config", "meta", "version"}.
    """
    path = Path(path)
    obj = read_model_file(path)
    arch = obj["arch"]
    label = f"{arch['name']} x{arch['scale']}"
    try:
        model = build_model(arch["name"], arch["scale"], **arch["config"])
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    _check_weights(path, model, obj["state_dict"], label)
    model.load_state_dict(obj["state_dict"])
    model.eval()
    info = {"path": str(path), "name": arch["name"], "scale": arch["scale"], "config": model.arch["config"],
            "meta": obj.get("meta", {}), "version": obj["version"]}
    return model, info
