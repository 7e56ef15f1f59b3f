"""The run configuration of `srprune run`: one YAML file, every default written out, checked before any work.

Why one checked document: every stage reads its own section, and a stage is skipped when the
sections it depends on (and the results of the stages before it) are unchanged, so the resolved
config (RUN/config.yaml) is what decides what must be redone. configs/demo.yaml documents every key.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from srprune.errors import InputError
from srprune.frame import parse_size

# Every key with its default; a nested dict is a section. `None` means "no default / optional".
DEFAULTS: dict[str, Any] = {
    "run_dir": None,
    "scale": 2,
    "data": "builtin",            # training images
    "val_data": "builtin",        # validation images: proxy PSNR and the checks during fine-tuning
    "eval_data": ["builtin"],     # datasets of the final PSNR/SSIM table
    "target": "host",
    "threads": None,              # None: all cores of the host, 4 on arm64 targets
    "rpc": None,                  # rpc://HOST:PORT[/KEY] to measure a cross-compiled target on the device
    "output_size": "1280x720",    # the frame the budget is for (output size)
    "budget_ms": None,            # latency budget per frame on the target (required)
    "supernet": {
        "space": {},              # supernet.space.SearchSpace fields
        "train": {},              # `srprune supernet train` settings (steps, batch_size, ...)
    },
    "latency": {
        "repeat": 5,              # timed runs per layer (median)
        "calibrate": 4,           # whole networks measured to calibrate the layer sum
    },
    "search": {
        "sampler": "tpe",         # tpe | gp | random (Optuna); stage 2 and stage 3
        "trials": 60,             # stage 2: architecture + pruning scheme per layer
        "startup_trials": 15,     # random trials before the sampler's model takes over
        "schemes": ["dense", "block", "pattern"],
        "blocks": [[4, 8]],       # block sizes (rows, cols) the block scheme may use
        "scheme_ratio": 0.5,      # the ratio stage 2 scores a pruned layer at (pattern: at least 0.5556)
        "ratio_trials": 40,       # stage 3: per-layer pruning ratio
        "ratios": [0.25, 0.5, 0.6, 0.75],   # ratio choices of a pruned layer in stage 3
        "margin": 0.05,           # search under budget * (1 - margin): room for the prediction error
        "min_fill": 0.85,         # ... and above budget * min_fill: a network far under budget wastes quality
        "replans": 2,             # a deployed model measured outside [min_fill, 1] x budget: next candidate, this often
        "adapt_steps": 0,         # Adam steps on fixed batches before a candidate is scored (0: raw shared weights)
        "adapt_lr": 0.0001,
        "seed": 0,
        "storage": None,          # Optuna storage URL; default sqlite:///RUN/search/study.db
    },
    "finetune": {
        "steps": 600,
        "batch_size": 16,
        "patch_size": 32,
        "lr": 0.0005,
        "distill": 0.5,           # L1 to the supernet's largest network, added to L1 to HR
        "seed": 0,
    },
}

SAMPLERS = ("tpe", "gp", "random")
SEARCH_SCHEMES = ("dense", "block", "pattern")


def _merge(defaults: dict, given: Any, where: str) -> dict:
    """Defaults overlaid with `given`; an unknown key is an error naming its full path."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise InputError(f"config: {where or 'the file'} must be a mapping, got {type(given).__name__}")
    out = copy.deepcopy(defaults)
    free = where in ("supernet.space", "supernet.train")  # checked by the supernet's own parsers
    for key, value in given.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in defaults and not free:
            raise InputError(f"config: unknown key {path!r} (known: {', '.join(defaults)})")
        if isinstance(defaults.get(key), dict):
            out[key] = _merge(defaults[key], value, path)
        else:
            out[key] = value
    return out


def _number(cfg: dict, path: str, low: float, high: float | None = None, integer: bool = False) -> None:
    section, _, key = path.rpartition(".")
    holder = cfg
    for part in filter(None, section.split(".")):
        holder = holder[part]
    v = holder[key]
    ok = not isinstance(v, bool) and isinstance(v, int if integer else (int, float))
    if not ok or v < low or (high is not None and v > high):
        kind = "an integer" if integer else "a number"
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InputError(f"config: {path} must be {kind} {rng}, got {v!r}")


def check_dataset(spec: Any, what: str) -> None:
    """A dataset spec that exists ('builtin' or a folder of images / a DIV2K root / a benchmark set)."""
    if spec == "builtin":
        return
    path = Path(os.path.expanduser(str(spec)))
    if not path.is_dir():
        raise InputError(f"config: {what}: dataset {spec!r} not found (a dataset is 'builtin' or a folder)")


def resolve(raw: Any, source: str = "config") -> dict[str, Any]:
    """The full configuration: defaults filled in, every value checked (InputError naming the key)."""
    cfg = _merge(DEFAULTS, raw, "")
    from supernet.errors import SpaceError
    from supernet.space import SearchSpace

    try:
        space = SearchSpace.from_dict(cfg["supernet"]["space"])
    except SpaceError as e:
        raise InputError(f"config: supernet.space: {e}") from None
    cfg["supernet"]["space"] = space.to_dict()
    from srprune.search.supernet_stage import check_train_settings

    cfg["supernet"]["train"] = check_train_settings(cfg["supernet"]["train"], "config: supernet.train")
    if cfg["scale"] not in space.scales:
        raise InputError(f"config: scale {cfg['scale']!r} is not one the search space is built for "
                         f"(supernet.space.scales: {space.scales})")
    if cfg["budget_ms"] is None:
        raise InputError("config: budget_ms (latency budget per frame on the target, in ms) is required")
    _number(cfg, "budget_ms", 1e-3)
    parse_size(cfg["output_size"], "config: output_size")
    if cfg["threads"] is not None:
        _number(cfg, "threads", 1, integer=True)
    from compiler.errors import CompilerError
    from compiler.targets import get_target

    try:
        target = get_target(str(cfg["target"]), cfg["threads"])
    except CompilerError as e:
        raise InputError(f"config: target: {e}") from None
    cfg["threads"] = target.threads
    if target.cross and not cfg["rpc"]:
        raise InputError(f"config: target {target.name} is cross-compiled; set rpc: rpc://HOST:PORT (a TVM RPC "
                         "server on the device) to measure it")
    for key in ("data", "val_data"):
        check_dataset(cfg[key], key)
    if isinstance(cfg["eval_data"], str):
        cfg["eval_data"] = [cfg["eval_data"]]
    if not isinstance(cfg["eval_data"], list) or not cfg["eval_data"]:
        raise InputError("config: eval_data must be a dataset or a non-empty list of datasets")
    for i, spec in enumerate(cfg["eval_data"]):
        check_dataset(spec, f"eval_data[{i}]")
    _number(cfg, "latency.repeat", 1, integer=True)
    _number(cfg, "latency.calibrate", 1, integer=True)
    s = cfg["search"]
    if s["sampler"] not in SAMPLERS:
        raise InputError(f"config: search.sampler must be one of {', '.join(SAMPLERS)}, got {s['sampler']!r}")
    for key in ("trials", "ratio_trials"):
        _number(cfg, f"search.{key}", 1, integer=True)
    _number(cfg, "search.startup_trials", 0, integer=True)
    _number(cfg, "search.seed", 0, integer=True)
    _number(cfg, "search.adapt_steps", 0, integer=True)
    _number(cfg, "search.replans", 0, integer=True)
    _number(cfg, "search.adapt_lr", 1e-9)
    _number(cfg, "search.margin", 0.0, 0.5)
    _number(cfg, "search.min_fill", 0.0, 1.0 - float(cfg["search"]["margin"]))
    _number(cfg, "search.scheme_ratio", 0.0, 0.95)
    if not isinstance(s["schemes"], list) or not s["schemes"] or "dense" not in s["schemes"]:
        raise InputError("config: search.schemes must be a list that includes 'dense'")
    for scheme in s["schemes"]:
        if scheme not in SEARCH_SCHEMES:
            raise InputError(f"config: search.schemes: {scheme!r} is not a searchable scheme "
                             f"({', '.join(SEARCH_SCHEMES)}; channel pruning is the width search, "
                             "unstructured has no fast kernel)")
    if not isinstance(s["blocks"], list) or not s["blocks"] or not all(
            isinstance(b, list) and len(b) == 2 and all(isinstance(v, int) and v > 0 for v in b) for b in s["blocks"]):
        raise InputError(f"config: search.blocks must be a list of [rows, cols] pairs, got {s['blocks']!r}")
    if not isinstance(s["ratios"], list) or not s["ratios"] or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r < 1 for r in s["ratios"]):
        raise InputError(f"config: search.ratios must be a list of numbers in (0, 1), got {s['ratios']!r}")
    s["ratios"] = sorted(float(r) for r in s["ratios"])
    if "pattern" in s["schemes"] and max(s["ratios"]) < 5 / 9:
        raise InputError("config: search.ratios: the pattern scheme needs a ratio >= 0.5556 (4 of 9 taps kept)")
    for key, low in (("steps", 0), ("batch_size", 1), ("patch_size", 4), ("seed", 0)):
        _number(cfg, f"finetune.{key}", low, integer=True)
    _number(cfg, "finetune.lr", 1e-9)
    _number(cfg, "finetune.distill", 0.0)
    if cfg["run_dir"] is None:
        raise InputError(f"{source}: run_dir is required (or pass --out)")
    cfg["run_dir"] = str(cfg["run_dir"])
    return cfg


def load(path: Path, run_dir: Path | None = None) -> dict[str, Any]:
    """Read and resolve a YAML config file; `run_dir` overrides the file's."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a config file") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the config must be a mapping")
    if run_dir is not None:
        raw = {**raw, "run_dir": str(run_dir)}
    try:
        return resolve(raw, str(path))
    except InputError as e:
        msg = str(e)
        raise InputError(msg.replace("config:", f"{path}:", 1) if msg.startswith("config:") else msg) from None


def dump(cfg: dict[str, Any]) -> str:
    """YAML text of a resolved config (key order kept)."""
    return yaml.safe_dump(cfg, sort_keys=False)
