"""Stage 1: train the weight-sharing supernet into RUN/supernet/ (shared by `srprune supernet train` and `run`).

Resumes exactly from RUN/supernet/checkpoint.pt after a kill; runs under torchrun too (rank 0 writes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from srprune.errors import InputError
from srprune.search.schema import COUNT, SEED, Num, Rules, Text, check_values, read_yaml

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"


TRAIN_KEYS = {"steps": 1500, "batch_size": 16, "patch_size": 32, "lr": 2e-3, "min_lr_ratio": 0.01,
              "num_random": 2, "kd_weight": 0.5, "seed": 0, "val_every": 250, "checkpoint_every": 100,
              "sort_every": 0, "sampling": "fixed"}
# The rule of every training setting (srprune.search.schema), checked before any work.
TRAIN_RULES: Rules = {
    "steps": Num(1, COUNT, integer=True), "batch_size": Num(1, 4096, integer=True),
    "patch_size": Num(4, 4096, integer=True), "lr": Num(0, 1, above=True), "min_lr_ratio": Num(0, 1),
    "num_random": Num(0, 64, integer=True), "kd_weight": Num(0, 1), "seed": SEED,
    "val_every": Num(0, COUNT, integer=True), "checkpoint_every": Num(1, COUNT, integer=True),
    "sort_every": Num(0, COUNT, integer=True), "sampling": Text(("fixed", "fair")),
}
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
    """The supernet training settings with defaults filled in; a bad key or value raises InputError."""
    train = train or {}
    if not isinstance(train, dict):
        raise InputError(f"{where} must be a mapping")
    bad = sorted(set(train) - set(TRAIN_KEYS))
    if bad:
        raise InputError(f"{where}: unknown setting {bad[0]!r} (settings: {', '.join(TRAIN_KEYS)})")
    check_values(train, TRAIN_RULES, f"{where}.")
    return {**TRAIN_KEYS, **train}


def protocol_psnr(sr, hr, crop: int) -> float:
    """srprune's PSNR-Y (uint8 rounding, BT.601 Y, crop = scale) of two 3xHxW tensors in [0, 1]."""
    from srprune.metrics import psnr

    def u8(x):
        return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()

    return psnr(u8(sr), u8(hr), crop_border=crop)


def val_tensors(spec: str, scale: int) -> list:
    """(lr, hr) float tensors of a validation dataset."""
    from srprune.data import load_dataset
    from srprune.evaluate import to_tensor

    return [(to_tensor(p.lr), to_tensor(p.hr)) for p in load_dataset(spec, scale, split="val")]


def train_supernet_run(cfg: dict[str, Any], run_dir: Path, scale: int | None = None, *, resume: bool = False,
                       force: bool = False, threads: int | None = None, stop_after: int | None = None,
                       progress: bool = True) -> dict[str, Any] | None:
    """Train the supernet of `cfg` ({space, train, data, val_data}) into run_dir/supernet.

    Returns {"done", "step", "checkpoint", "val"} on rank 0 (None on other ranks). An existing
    checkpoint needs `resume` (continue it) or `force` (start over).
    """
    import torch

    from srprune.data import PatchSampler, load_dataset
    from supernet.model import SuperNet
    from supernet.proxy import proxy_psnr
    from supernet.space import SearchSpace
    from supernet.train import init_distributed, train_supernet

    space = SearchSpace.from_dict(cfg["space"])
    scale = space.check_scale(scale)  # a scale the space was not built for is refused before any work
    t = cfg["train"]
    out = run_dir / "supernet"
    ckpt = out / CHECKPOINT
    rank, world = init_distributed()
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
        torch.manual_seed(int(t["seed"]))
        net = SuperNet(space)
        if torch.cuda.is_available():
            net = net.to(torch.device("cuda", torch.cuda.current_device()))
        sampler = PatchSampler(train_pairs, scale, t["patch_size"], t["batch_size"], seed=int(t["seed"]) + rank)
        summary = train_supernet(net, sampler, int(t["steps"]), scale=scale, lr=float(t["lr"]),
                                 min_lr_ratio=float(t["min_lr_ratio"]), num_random=int(t["num_random"]),
                                 kd_weight=float(t["kd_weight"]), seed=int(t["seed"]), checkpoint=ckpt,
                                 checkpoint_every=int(t["checkpoint_every"]), resume=resume,
                                 validate=lambda n, g: proxy_psnr(n, g, val, metric=protocol_psnr),
                                 val_every=int(t["val_every"]), stop_after=stop_after,
                                 sort_every=int(t["sort_every"]), sampling=str(t["sampling"]), progress=progress)
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
