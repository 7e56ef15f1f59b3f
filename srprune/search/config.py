"""The run configuration of `srprune run`: one YAML file, every default written out, checked before any work.

Each section is a frozen dataclass whose fields carry their default, their rule and their meaning (one home:
DEFAULTS and RUN_RULES are derived from them); `resolve` checks a YAML document against them and returns the
resolved dict (hashed per stage and written to RUN/config.yaml), `RunConfig.from_dict` its typed view, which
the stages read.

Why one checked document: every stage reads its own section, and a stage is skipped when the
sections it depends on (and the results of the stages before it) are unchanged, so the resolved
config (RUN/config.yaml) is what decides what must be redone. configs/demo.yaml documents every key.
"""

from __future__ import annotations

import copy
import os
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from srprune.errors import InputError
from srprune.frame import input_size, parse_size
from srprune.search.schema import COUNT, SEED, Flag, ListOf, Num, Rule, Rules, Text, check_values, read_yaml

if TYPE_CHECKING:
    from srprune.pruning.finetune import FinetuneConfig

def setting(default: Any, rule: Rule, doc: str = "") -> Any:
    """A config field: its default, its rule (type, range, finiteness) and what it means, in one place."""
    meta = {"rule": rule, "doc": doc}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


SAMPLERS = ("tpe", "gp", "random")
SEARCH_SCHEMES = ("dense", "block", "pattern")
SEARCH_PRECISIONS = ("fp32", "fp16", "int8")  # compiler.latency.config.PRECISIONS, in this order when resolved
LATENCY_SOURCES = ("measure", "estimate")


@dataclass(frozen=True)
class LatencySettings:
    """`latency:` how the layer table of the target is measured."""

    repeat: int = setting(5, Num(1, 1000, integer=True), "timed runs per layer (median)")
    calibrate: int = setting(4, Num(1, 1000, integer=True), "whole networks measured to calibrate the layer sum")
    source: str = setting("measure", Text(LATENCY_SOURCES), "measure (on the target: this machine or rpc) | "
                          "estimate (static: llvm-mca on the emitted code, no device; see docs/latency_estimate.md)")
    cpu: str | None = setting(None, Text(optional=True), "source estimate: the CPU (cortex-a77, snapdragon-865, ...; "
                              "host on target host)")
    span_s: float = setting(20.0, Num(0, 3600), "the deployed model's timing spreads over at least this many "
                            "seconds, and a result outside the budget window is timed again as long before a replan "
                            "(a shared machine's speed shifts for seconds at a time; 0 on a quiet device)")


@dataclass(frozen=True)
class SearchSettings:
    """`search:` stages 2 and 3 (Optuna), the budget window and replanning."""

    sampler: str = setting("tpe", Text(SAMPLERS), "tpe | gp | random (Optuna); stage 2 and stage 3")
    trials: int = setting(60, Num(1, COUNT, integer=True), "stage 2: architecture + pruning scheme per layer")
    startup_trials: int = setting(15, Num(0, COUNT, integer=True), "random trials before the sampler's model")
    schemes: list[str] = setting(["dense", "block", "pattern"], ListOf(Text(
        SEARCH_SCHEMES, why="channel pruning is the width search, unstructured has no fast kernel")))
    blocks: list[list[int]] = setting([[4, 8]], ListOf(ListOf(Num(1, 1024, integer=True), length=2)),
                                      "block sizes (rows, cols) the block scheme may use")
    precisions: list[str] = setting(["fp32"], ListOf(Text(SEARCH_PRECISIONS)),
                                    "arithmetic a layer may take (stage 2 picks one per layer; fp32 always stays "
                                    "possible): int8 on host (VNNI/AVX2) and arm64, fp16 on android-arm64-fp16")
    scheme_ratio: float = setting(0.5, Num(0, 0.95), "the ratio stage 2 scores a pruned layer at (pattern: >= 0.5556)")
    ratio_trials: int = setting(40, Num(1, COUNT, integer=True), "stage 3: per-layer pruning ratio")
    ratios: list[float] = setting([0.25, 0.5, 0.6, 0.75], ListOf(Num(0, 1, above=True, below=True)),
                                  "ratio choices of a pruned layer in stage 3")
    margin: float = setting(0.05, Num(0, 0.5), "search under budget * (1 - margin): room for the prediction error")
    min_fill: float = setting(0.85, Num(0, 1), "... and above budget * min_fill: far under budget wastes quality (none "
                             "there: the best under budget, with a warning)")
    replans: int = setting(2, Num(0, 100, integer=True), "a deployed model measured outside [min_fill, 1] x budget: "
                           "next candidate, this often")
    adapt_steps: int = setting(0, Num(0, COUNT, integer=True), "Adam steps on fixed batches before a candidate is "
                               "scored (0: raw shared weights)")
    adapt_lr: float = setting(0.0001, Num(0, 1, above=True))
    seed: int = setting(0, SEED)
    storage: str | None = setting(None, Text(optional=True), "Optuna storage URL; default sqlite:///RUN/search/study.db")


@dataclass(frozen=True)
class FinetuneSettings:
    """`finetune:` pruning + fine-tuning of the chosen candidate (+ quantisation-aware steps for its int8 layers)."""

    steps: int = setting(600, Num(0, COUNT, integer=True))
    batch_size: int = setting(16, Num(1, 4096, integer=True))
    patch_size: int = setting(32, Num(4, 4096, integer=True))
    lr: float = setting(0.0005, Num(0, 1, above=True))
    distill: float = setting(0.5, Num(0, 100), "L1 to the supernet's largest network, added to L1 to HR")
    seed: int = setting(0, SEED)
    qat_steps: int = setting(200, Num(0, COUNT, integer=True), "a chosen candidate with int8 layers: "
                             "quantisation-aware steps after the pruning fine-tuning (0: calibration only)")

    def finetune_config(self) -> "FinetuneConfig":
        """The pruner's budget (srprune.pruning.FinetuneConfig) with six of these settings; its other knobs
        (gradual-phase length, mask updates, group lasso) keep the defaults `srprune prune` also starts from."""
        from srprune.pruning.finetune import FinetuneConfig

        return FinetuneConfig(steps=self.steps, batch_size=self.batch_size, patch_size=self.patch_size,
                              lr=float(self.lr), distill=float(self.distill), seed=self.seed)


@dataclass(frozen=True)
class AndroidSettings:
    """`android:` what the run ships for the Android demo app (srprune/search/stages/apk.py)."""

    apk: bool = setting(False, Flag(), "end the run with the signed demo APK in RUN/android/ (stage apk; needs "
                        "scripts/install-system-deps.sh's Android tools)")


@dataclass(frozen=True)
class SupernetSection:
    """`supernet:` the search space and the supernet's training; checked by the supernet's own parsers
    (supernet.space.SearchSpace, srprune.search.supernet_stage.TRAIN_RULES)."""

    space: dict[str, Any] = setting({}, None, "supernet.space.SearchSpace fields")
    train: dict[str, Any] = setting({}, None, "`srprune supernet train` settings (steps, batch_size, ...)")


@dataclass(frozen=True)
class RunConfig:
    """The whole `srprune run` configuration, typed; built once from the resolved (checked) YAML."""

    run_dir: str | None = setting(None, Text(optional=True))
    scale: int = setting(2, Num(2, 4, integer=True))
    data: str = setting("builtin", Text(), "training images")
    val_data: str = setting("builtin", Text(), "validation images: proxy PSNR and the checks during fine-tuning")
    eval_data: list[str] = setting(["builtin"], ListOf(Text(), single=True), "datasets of the final PSNR/SSIM table")
    target: str = setting("host", Text())
    threads: int | None = setting(None, Num(1, 1024, integer=True, optional=True),
                                  "None: all cores of the host, 4 on arm64 targets")
    rpc: str | None = setting(None, Text(optional=True), "rpc://HOST:PORT[/KEY] to measure a cross-compiled target")
    output_size: str = setting("1280x720", Text(), "the frame the budget is for (output size)")
    budget_ms: float | None = setting(None, Num(0, 1e6, above=True), "latency budget per frame (required)")
    device: str = setting("auto", Text(), "where the supernet and the fine-tuning train: auto (CUDA when present), "
                          "cpu, cuda, cuda:N, mps")
    amp: str = setting("off", Text(("off", "bf16", "fp16")), "mixed precision while training: bf16 (GPU or CPU), "
                       "fp16 (GPU only)")
    data_workers: int = setting(0, Num(0, 256, integer=True), "processes assembling training batches "
                                "(0: the training process itself); results do not depend on it")
    supernet: SupernetSection = field(default_factory=SupernetSection)
    latency: LatencySettings = field(default_factory=LatencySettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    android: AndroidSettings = field(default_factory=AndroidSettings)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "RunConfig":
        """The typed view of a resolved config dict (resolve() has checked every value)."""
        return _build(cls, cfg)

    @property
    def placement(self) -> Any:
        """Where the supernet and the fine-tuning train (srcommon.devices.Placement)."""
        from srcommon.devices import Placement

        return Placement(self.device, self.amp, self.data_workers)

    @property
    def out_hw(self) -> tuple[int, int]:
        """(height, width) of the output frame."""
        w, h = parse_size(self.output_size, "config: output_size")
        return h, w


def _build(cls: type, values: dict[str, Any]) -> Any:
    kwargs = {}
    for f in fields(cls):
        v = values[f.name]
        kwargs[f.name] = _build(f.default_factory, v) if is_dataclass(f.default_factory) else v
    return cls(**kwargs)


def _defaults(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cls):
        if is_dataclass(f.default_factory):
            out[f.name] = _defaults(f.default_factory)
        else:
            out[f.name] = f.default_factory() if f.default is MISSING else f.default
    return out


def _rules(cls: type) -> Rules:
    out: Rules = {}
    for f in fields(cls):
        if is_dataclass(f.default_factory):
            if f.name != "supernet":  # checked by the supernet's own parsers
                out[f.name] = _rules(f.default_factory)
        else:
            out[f.name] = f.metadata["rule"]
    return out


# Every key with its default (a nested dict is a section) and its rule, derived from the dataclasses above.
DEFAULTS: dict[str, Any] = _defaults(RunConfig)
RUN_RULES: Rules = _rules(RunConfig)


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


def check_dataset(spec: Any, what: str) -> None:
    """A dataset spec that exists ('builtin' or a folder of images / a DIV2K root / a benchmark set)."""
    if spec == "builtin":
        return
    path = Path(os.path.expanduser(str(spec)))
    if not path.is_dir():
        raise InputError(f"config: {what}: dataset {spec!r} not found (a dataset is 'builtin' or a folder)")


def _check_supernet(cfg: dict[str, Any]) -> None:
    """The supernet section, by the supernet's own parsers; the run's scale must be one of the space's."""
    from srprune.search.supernet_stage import check_train_settings
    from supernet.errors import SpaceError
    from supernet.space import SearchSpace

    try:
        space = SearchSpace.from_dict(cfg["supernet"]["space"])
    except SpaceError as e:
        raise InputError(f"config: supernet.space: {e}") from None
    cfg["supernet"]["space"] = space.to_dict()
    cfg["supernet"]["train"] = check_train_settings(cfg["supernet"]["train"], "config: supernet.train")
    if cfg["scale"] not in space.scales:
        raise InputError(f"config: scale {cfg['scale']!r} is not one the search space is built for "
                         f"(supernet.space.scales: {space.scales})")


def _check_target(cfg: dict[str, Any]) -> None:
    """A known target; an RPC address that parses; a cross-compiled target needs one."""
    from compiler.errors import CompilerError
    from compiler.latency.runners import parse_rpc_url
    from compiler.targets import get_target

    try:
        target = get_target(str(cfg["target"]), cfg["threads"])
        if cfg["rpc"] is not None:
            parse_rpc_url(cfg["rpc"])
    except CompilerError as e:
        raise InputError(f"config: {'rpc' if 'RPC' in str(e) else 'target'}: {e}") from None
    cfg["threads"] = target.threads
    _check_precisions(cfg["search"], target)
    if cfg["latency"]["source"] == "estimate":
        from srprune.latency.estimated import check_cpu

        check_cpu(cfg["latency"]["cpu"], target, "config: latency.cpu")
        return
    if cfg["latency"]["cpu"] is not None:
        raise InputError("config: latency.cpu is for latency.source: estimate (measure measures the target itself)")
    if target.cross and not cfg["rpc"]:
        raise InputError(f"config: target {target.name} is cross-compiled; set rpc: rpc://HOST:PORT (a TVM RPC "
                         "server on the device) to measure it, or latency: {source: estimate, cpu: cortex-a77} "
                         "for a static estimate")


def _check_precisions(s: dict[str, Any], target: Any) -> None:
    """search.precisions: fp32 included, each one the target can run (compiler.int8.isa.precision_unsupported);
    resolved to SEARCH_PRECISIONS order without repeats, so equal sets hash equally."""
    from compiler.int8.isa import precision_unsupported

    given = s["precisions"]
    if "fp32" not in given:
        raise InputError("config: search.precisions must include 'fp32' (layers that stay wider)")
    for p in given:
        why = precision_unsupported(target, p)
        if why:
            raise InputError(f"config: search.precisions: {p} cannot run on target {target.name}: {why}")
    s["precisions"] = [p for p in SEARCH_PRECISIONS if p in given]


def _check_search(s: dict[str, Any]) -> None:
    """What the per-key rules cannot say: the schemes and ratios must fit together."""
    if s["min_fill"] > 1.0 - s["margin"]:
        raise InputError(f"config: search.min_fill must be <= 1 - search.margin ({1.0 - s['margin']:g}), "
                         f"got {s['min_fill']!r}")
    if "dense" not in s["schemes"]:
        raise InputError("config: search.schemes must be a list that includes 'dense'")
    s["ratios"] = sorted(float(r) for r in s["ratios"])
    if "pattern" in s["schemes"] and max(s["ratios"]) < 5 / 9:
        raise InputError("config: search.ratios: the pattern scheme needs a ratio >= 0.5556 (4 of 9 taps kept)")


def _check_run_dir(cfg: dict[str, Any], source: str) -> None:
    if cfg["run_dir"] is None:
        raise InputError(f"{source}: run_dir is required (or pass --out)")
    cfg["run_dir"] = str(cfg["run_dir"])
    path = Path(cfg["run_dir"])
    if path.exists() and not path.is_dir():
        raise InputError(f"config: run_dir {path} is a file, not a folder")


def resolve(raw: Any, source: str = "config") -> dict[str, Any]:
    """The full configuration: defaults filled in, every value checked (InputError naming the key)."""
    cfg = _merge(DEFAULTS, raw, "")
    if cfg["amp"] is False:  # YAML 1.1 reads an unquoted `amp: off` as false
        cfg["amp"] = "off"
    if cfg["budget_ms"] is None:
        raise InputError("config: budget_ms (latency budget per frame on the target, in ms) is required")
    check_values(cfg, RUN_RULES, "config: ")
    _check_supernet(cfg)
    input_size(parse_size(cfg["output_size"], "config: output_size"), cfg["scale"], "config: output_size")
    _check_target(cfg)
    for key in ("data", "val_data"):
        check_dataset(cfg[key], key)
    if isinstance(cfg["eval_data"], str):
        cfg["eval_data"] = [cfg["eval_data"]]
    for i, spec in enumerate(cfg["eval_data"]):
        check_dataset(spec, f"eval_data[{i}]")
    _check_search(cfg["search"])
    _check_device(cfg)
    _check_run_dir(cfg, source)
    if cfg["android"]["apk"]:  # the apk stage comes last: missing tools must stop the run before any work
        from srprune.apk import find_tools

        try:
            find_tools()
        except InputError as e:
            raise InputError(f"config: android.apk: {e}") from None
    return cfg


def _check_device(cfg: dict[str, Any]) -> None:
    """A device this machine lacks, or fp16 on the CPU: one line now, not when training starts."""
    from srcommon.devices import DeviceError, check_amp, resolve_device

    try:
        check_amp(resolve_device(cfg["device"]), cfg["amp"])
    except DeviceError as e:
        raise InputError(f"config: {e}") from None


def load(path: Path, run_dir: Path | None = None) -> dict[str, Any]:
    """Read and resolve a YAML config file; `run_dir` overrides the file's."""
    raw = read_yaml(path)
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
