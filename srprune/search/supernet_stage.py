"""Stage 1: train the weight-sharing supernet into RUN/supernet/ (shared by `srprune supernet train` and `run`).

Resumes exactly from RUN/supernet/checkpoint.pt after a kill; runs under torchrun too (rank 0 writes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srprune.errors import InputError
from srprune.layout import RunLayout
from srprune.search.schema import Num, Rules, Text, check_values, read_yaml
from supernet.settings import RULES as SETTING_RULES
from supernet.settings import Bound, Choice, TrainSettings

if TYPE_CHECKING:
    from srcommon.devices import Placement

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"


# The section's keys with their defaults, and each key's rule in the config reader's terms (srprune.search.schema):
# both derived from supernet.settings (TrainSettings and its RULES), the one home of the training settings.
TRAIN_KEYS: dict[str, Any] = TrainSettings.defaults()


def _rule(rule: Bound | Choice) -> Num | Text:
    """A supernet.settings rule as a schema rule (same bounds, the config reader's messages)."""
    if isinstance(rule, Choice):
        return Text(rule.options)
    return Num(rule.low, rule.high, integer=rule.integer, above=rule.above)


TRAIN_RULES: Rules = {key: _rule(rule) for key, rule in SETTING_RULES.items()}
SECTION_KEYS = ("space", "train", "data", "val_data", "run_dir")
SECTION_RULES: Rules = {"data": Text(), "val_data": Text(), "run_dir": Text(optional=True)}


def read_config(path: Path) -> dict[str, Any]:
    """The `supernet` section of a YAML config (or the whole file if it has none), with defaults filled in."""
    data = read_yaml(path)
    section = data.get("supernet", data)
    if not isinstance(section, dict):
        raise InputError(f"{path}: 'supernet' must be a mapping")
    unknown = sorted(set(section) - set(SECTION_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown supernet setting {unknown[0]!r} (settings: space, train, data, val_data)")
    out = {"space": section.get("space") or {}, "data": section.get("data", "builtin"),
           "val_data": section.get("val_data", "builtin"), "run_dir": section.get("run_dir", data.get("run_dir"))}
    check_values(out, SECTION_RULES, f"{path}: supernet.")
    out["train"] = check_train_settings(section.get("train"), f"{path}: supernet.train")
    if not isinstance(out["space"], dict):
        raise InputError(f"{path}: supernet.space must be a mapping, got {type(out['space']).__name__}")
    return out


def check_train_settings(train: Any, where: str) -> dict[str, Any]:
    """The supernet training settings with defaults filled in, as plain data (the run's config document);
    a bad key or value raises InputError naming it. TrainSettings.from_dict turns the result into the typed
    settings (train_supernet_run does, once)."""
    train = train or {}
    if not isinstance(train, dict):
        raise InputError(f"{where} must be a mapping")
    bad = sorted(set(train) - set(TRAIN_KEYS))
    if bad:
        raise InputError(f"{where}: unknown setting {bad[0]!r} (settings: {', '.join(TRAIN_KEYS)})")
    check_values(train, TRAIN_RULES, f"{where}.")
    return {**TRAIN_KEYS, **train}


def protocol_psnr(sr, hr, crop: int) -> float:
    """The protocol's PSNR-Y (uint8 rounding, BT.601 Y, crop = scale) of two 3xHxW tensors in [0, 1] (srcommon.metrics)."""
    from srcommon.metrics import psnr_y

    return psnr_y(sr, hr, crop)


def val_tensors(spec: str, scale: int) -> list:
    """(lr, hr) float tensors of a validation dataset."""
    from srprune.data import load_dataset
    from srprune.evaluate import to_tensor

    return [(to_tensor(p.lr), to_tensor(p.hr)) for p in load_dataset(spec, scale, split="val")]


def train_supernet_run(cfg: dict[str, Any], run_dir: Path, scale: int | None = None, *, resume: bool = False,
                       force: bool = False, threads: int | None = None, stop_after: int | None = None,
                       progress: bool = True, where: Placement | None = None) -> dict[str, Any] | None:
    """Train the supernet of `cfg` ({space, train, data, val_data}) into run_dir/supernet.

    `where`: device (default auto: CUDA when present, cuda:LOCAL_RANK under torchrun), mixed precision, batch
    workers.
    Returns {"done", "step", "checkpoint", "val"} on rank 0 (None on other ranks). An existing
    checkpoint needs `resume` (continue it) or `force` (start over).
    """
    import torch

    from srprune.data import PatchSampler, load_dataset
    from supernet.model import SuperNet
    from supernet.proxy import proxy_psnr
    from supernet.errors import SpaceError
    from supernet.space import SearchSpace
    from srcommon.devices import Placement, resolve_device
    from supernet.train import init_distributed, train_supernet

    space = SearchSpace.from_dict(cfg["space"])
    scale = space.check_scale(scale)  # a scale the space was not built for is refused before any work
    try:
        settings = TrainSettings.from_dict(cfg["train"], scale=scale)
    except SpaceError as e:
        raise InputError(f"supernet.train: {e}") from None
    out = RunLayout(run_dir).supernet
    ckpt = out / CHECKPOINT
    where = (where or Placement()).check()
    device = resolve_device(where.device)
    rank, world = init_distributed(device)
    if ckpt.exists() and force and rank == 0:
        ckpt.unlink()
    if world > 1:
        torch.distributed.barrier()
    if ckpt.exists() and not resume:
        raise InputError(f"{ckpt} exists: pass --resume to continue it or --force to start over")
    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("supernet.train")
    handler = None
    if rank == 0:
        handler = logging.FileHandler(out / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        train_pairs = load_dataset(cfg["data"], scale, split="train")
        val = val_tensors(cfg["val_data"], scale)
        torch.manual_seed(settings.seed)
        net = SuperNet(space).to(device)
        sampler = PatchSampler(train_pairs, scale, settings.patch_size, settings.batch_size, seed=settings.seed + rank)
        batches = where.batches(sampler)
        try:
            summary = train_supernet(net, batches, settings, checkpoint=ckpt, resume=resume,
                                     validate=lambda n, g: proxy_psnr(n, g, val, metric=protocol_psnr),
                                     stop_after=stop_after, progress=progress, amp=where.amp)
        finally:
            batches.close()
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
    if rank != 0:
        return None
    last = next((h for h in reversed(summary["history"]) if "val_largest" in h), {})
    if summary["done"]:
        from srcommon.atomic import write_text

        write_text(out / SUMMARY, json.dumps({"steps": summary["step"], "scale": scale, "world_size": world,
                                              "seconds_last_call": summary["seconds"], "val": last,
                                              "space": space.to_dict()}, indent=2) + "\n")
    return {"done": summary["done"], "step": summary["step"], "checkpoint": ckpt, "val": last}
