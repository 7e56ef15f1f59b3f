"""`srprune supernet ...`: train the weight-sharing supernet, list and score genomes, extract a standalone model.

The config (YAML) holds the search space and the training settings; the run folder gets
supernet/checkpoint.pt (resumable, also under torchrun), train.log and summary.json:

    supernet:
      space: {num_cells: 4, widths: [8, 16, 32, 64], blocks: [conv, res, wide, ecb, dws, skip],
              activation: relu, scales: [2]}
      train: {steps: 1500, batch_size: 16, patch_size: 32, lr: 0.002, num_random: 2, kd_weight: 0.5,
              seed: 0, val_every: 250, checkpoint_every: 100, sort_every: 0}
      data: builtin
      val_data: builtin

(configs/supernet-demo.yaml is a commented example.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from srprune.cli import cli
from srprune.errors import InputError
from supernet.errors import SpaceError

TRAIN_KEYS = {"steps": 1500, "batch_size": 16, "patch_size": 32, "lr": 2e-3, "min_lr_ratio": 0.01,
              "num_random": 2, "kd_weight": 0.5, "seed": 0, "val_every": 250, "checkpoint_every": 100,
              "sort_every": 0}
CHECKPOINT = "checkpoint.pt"


def read_config(path: Path) -> dict[str, Any]:
    """The `supernet` section of a YAML config (or the whole file if it has none), with defaults filled in."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the config must be a mapping")
    section = data.get("supernet", data)
    if not isinstance(section, dict):
        raise InputError(f"{path}: 'supernet' must be a mapping")
    unknown = sorted(set(section) - {"space", "train", "data", "val_data", "run_dir"})
    if unknown:
        raise InputError(f"{path}: unknown supernet setting {unknown[0]!r} (settings: space, train, data, val_data)")
    train = section.get("train") or {}
    if not isinstance(train, dict):
        raise InputError(f"{path}: supernet.train must be a mapping")
    bad = sorted(set(train) - set(TRAIN_KEYS))
    if bad:
        raise InputError(f"{path}: unknown supernet.train setting {bad[0]!r} (settings: {', '.join(TRAIN_KEYS)})")
    for key, value in train.items():
        _check_train_value(path, key, value)
    return {"space": section.get("space") or {}, "train": {**TRAIN_KEYS, **train},
            "data": section.get("data", "builtin"), "val_data": section.get("val_data", "builtin"),
            "run_dir": section.get("run_dir", data.get("run_dir"))}


def _check_train_value(path: Path, key: str, value: Any) -> None:
    """A training setting of the right type: integers for counts, numbers for rates."""
    what = f"{path}: supernet.train.{key}"
    if isinstance(TRAIN_KEYS[key], int):
        low = 1 if key in ("steps", "batch_size", "patch_size", "checkpoint_every") else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{what} must be an integer >= {low}, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InputError(f"{what} must be a number >= 0, got {value!r}")


def _protocol_psnr(sr, hr, crop: int) -> float:
    """srprune's PSNR-Y (uint8 rounding, BT.601 Y, crop = scale) of two 3xHxW tensors in [0, 1]."""
    from srprune.metrics import psnr

    def u8(x):
        return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()

    return psnr(u8(sr), u8(hr), crop_border=crop)


def _val_tensors(spec: str, scale: int) -> list:
    """(lr, hr) float tensors of a validation dataset."""
    from srprune.data import load_dataset
    from srprune.evaluate import to_tensor

    return [(to_tensor(p.lr), to_tensor(p.hr)) for p in load_dataset(spec, scale, split="val")]


def _space(cfg: dict[str, Any]):
    from supernet.space import SearchSpace

    return SearchSpace.from_dict(cfg["space"])


@cli.group("supernet")
def supernet() -> None:
    """Stage 1: the weight-sharing supernet over the search space."""


@supernet.command("train")
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--out", "-o", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: run_dir from the config); writes RUN/supernet/.")
@click.option("--scale", "-s", type=click.IntRange(2, 4), default=None, help="Scale to train (default: the first).")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch threads per process.")
@click.option("--resume", is_flag=True, help="Continue a killed run exactly from its checkpoint.")
@click.option("--force", is_flag=True, help="Discard an existing checkpoint and start over.")
@click.option("--stop-after", type=click.IntRange(1), default=None, hidden=True)
def train_cmd(config_path, run_dir, scale, threads, resume, force, stop_after) -> None:
    """Train the shared weights (sandwich rule + in-place distillation). Runs under torchrun too."""
    import torch

    from srprune.data import PatchSampler, load_dataset
    from supernet.model import SuperNet
    from supernet.proxy import proxy_psnr
    from supernet.train import init_distributed, train_supernet

    cfg = read_config(config_path)
    run_dir = run_dir or (Path(cfg["run_dir"]) if cfg["run_dir"] else None)
    if run_dir is None:
        raise InputError("no run folder: pass --out or set run_dir in the config")
    space = _space(cfg)
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
    if rank == 0:
        handler = logging.FileHandler(out / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logging.getLogger("supernet.train").addHandler(handler)
        logging.getLogger("supernet.train").setLevel(logging.INFO)
    train_pairs = load_dataset(cfg["data"], scale, split="train")
    val = _val_tensors(cfg["val_data"], scale)
    torch.manual_seed(int(t["seed"]))
    net = SuperNet(space)
    if torch.cuda.is_available():
        net = net.to(torch.device("cuda", torch.cuda.current_device()))
    sampler = PatchSampler(train_pairs, scale, t["patch_size"], t["batch_size"], seed=int(t["seed"]) + rank)
    summary = train_supernet(net, sampler, int(t["steps"]), scale=scale, lr=float(t["lr"]),
                             min_lr_ratio=float(t["min_lr_ratio"]), num_random=int(t["num_random"]),
                             kd_weight=float(t["kd_weight"]), seed=int(t["seed"]), checkpoint=ckpt,
                             checkpoint_every=int(t["checkpoint_every"]), resume=resume,
                             validate=lambda n, g: proxy_psnr(n, g, val, metric=_protocol_psnr),
                             val_every=int(t["val_every"]), stop_after=stop_after,
                             sort_every=int(t["sort_every"]))
    if rank != 0:
        return
    if not summary["done"]:
        click.echo(f"stopped at step {summary['step']}; continue with --resume")
        return
    last = next((h for h in reversed(summary["history"]) if "val_largest" in h), {})
    from srprune.atomic import write_text

    write_text(out / "summary.json", json.dumps({"steps": summary["step"], "scale": scale, "world_size": world,
                                                  "seconds_last_call": summary["seconds"], "val": last,
                                                  "space": space.to_dict()}, indent=2) + "\n")
    click.echo(f"wrote {ckpt}: val PSNR-Y largest {last.get('val_largest', float('nan')):.3f} dB, "
               f"smallest {last.get('val_smallest', float('nan')):.3f} dB")


def _space_from(config_path: Path | None, checkpoint: Path | None):
    from supernet.space import SearchSpace
    from supernet.train import load_checkpoint

    if checkpoint is not None:
        return SearchSpace.from_dict(load_checkpoint(checkpoint)["space"])
    if config_path is not None:
        return _space(read_config(config_path))
    raise InputError("give the space: --config CONFIG or --checkpoint CHECKPOINT")


@supernet.command("sample")
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Take the space from a supernet checkpoint instead of a config.")
@click.option("--kind", type=click.Choice(["random", "largest", "smallest"]), default="random", show_default=True)
@click.option("-n", "count", type=click.IntRange(1), default=5, show_default=True)
@click.option("--scale", "-s", type=click.IntRange(2, 4), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
def sample_cmd(config_path, checkpoint, kind, count, scale, seed) -> None:
    """List genomes (one JSON object per line) with params and MACs per 1280x720 output frame."""
    import numpy as np

    from supernet.complexity import genome_macs, genome_params

    space = _space_from(config_path, checkpoint)
    rng = np.random.default_rng(seed)
    if kind == "random":
        genomes = [space.sample(rng, scale) for _ in range(count)]
    else:
        genomes = [space.largest(scale) if kind == "largest" else space.smallest(scale)]
    for g in genomes:
        click.echo(json.dumps({"params": genome_params(g), "gmacs_720p": round(genome_macs(g) / 1e9, 4),
                               "genome": g.to_dict()}))


def _read_genome(text: str) -> dict:
    path = Path(text)
    if not text.lstrip().startswith("{") and path.exists():
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"GENOME is neither a JSON object nor a JSON file ({e.msg})") from None
    return data.get("genome", data) if isinstance(data, dict) else data


@supernet.command("extract")
@click.argument("genome")
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True)
@click.option("--out", "-o", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--force", is_flag=True, help="Overwrite an existing model file.")
def extract_cmd(genome, checkpoint, out_path, force) -> None:
    """Write GENOME's sub-network (JSON text or file) as a standalone model file (arch name `genome`)."""
    import torch

    from srprune.models.modelfile import save_model
    from supernet.space import Genome
    from supernet.standalone import extract
    from supernet.train import load_checkpoint, supernet_from_checkpoint

    net = supernet_from_checkpoint(checkpoint).eval()
    g = net.check(Genome.from_dict(_read_genome(genome)))
    model, _ = extract(net, g)
    model.eval()
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((model(x) - net(x, g)).abs().max())
        diff_dep = float((model.deploy()(x) - model(x)).abs().max())
    model.arch = {"name": "genome", "scale": g.scale, "config": {"genome": g.to_dict(), "deployed": False}}
    step = int(load_checkpoint(checkpoint)["step"])
    save_model(out_path, model, meta={"supernet": {"checkpoint": str(checkpoint), "step": step},
                                      "check": {"max_abs_diff_supernet": diff, "max_abs_diff_deployed": diff_dep}},
               force=force)
    click.echo(f"wrote {out_path}: x{g.scale}, {sum(p.numel() for p in model.parameters()):,} params; "
               f"max |extracted - supernet| {diff:.2e}, max |deployed - extracted| {diff_dep:.2e}")


def _genome_lines(text: str) -> list[tuple[int, dict, dict]]:
    """(line number, record, genome dict) of every non-blank JSON line; a record is a genome or holds one."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"line {n}: not JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"line {n}: expected a JSON object (a genome or {{\"genome\": ...}}), "
                             f"got {type(record).__name__}")
        genome = record.get("genome", record)
        out.append((n, record if "genome" in record else {}, genome))
    return out


@supernet.command("proxy")
@click.argument("genomes", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default="-")
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True)
@click.option("--val-data", default="builtin", show_default=True, help="Validation images ('builtin' or a folder).")
@click.option("--out", "-o", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON lines here (atomically) instead of stdout.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch threads.")
def proxy_cmd(genomes, checkpoint, val_data, out_path, force, threads) -> None:
    """Score genomes (JSON lines, e.g. from `supernet sample`; '-' = stdin) by PSNR-Y with the shared weights.

    Each output line is the input record plus params, gmacs_720p and proxy_psnr (dB, mean over the validation
    images, project protocol), in input order.
    """
    import torch

    from srprune.atomic import check_writable, write_text
    from srprune.progress import progress_bar
    from supernet.complexity import genome_macs, genome_params
    from supernet.proxy import proxy_psnr
    from supernet.space import Genome
    from supernet.train import supernet_from_checkpoint

    if out_path is not None:
        check_writable(out_path, force)
    text = click.get_text_stream("stdin").read() if str(genomes) == "-" else _read_text(genomes)
    items = _genome_lines(text)
    if not items:
        raise InputError(f"{genomes}: no genomes (expected one JSON object per line)")
    if threads:
        torch.set_num_threads(threads)
    net = supernet_from_checkpoint(checkpoint).eval()
    parsed = []
    for n, record, g in items:  # check every line before the slow part
        try:
            parsed.append((record, net.check(Genome.from_dict(g))))
        except SpaceError as e:
            raise InputError(f"line {n}: {e}") from None
    val: dict[int, list] = {}
    lines = []
    for record, g in progress_bar(parsed, desc="proxy", unit="genome"):
        if g.scale not in val:
            val[g.scale] = _val_tensors(val_data, g.scale)
        score = proxy_psnr(net, g, val[g.scale], metric=_protocol_psnr)
        lines.append(json.dumps({**record, "params": genome_params(g), "gmacs_720p": round(genome_macs(g) / 1e9, 4),
                                 "genome": g.to_dict(), "proxy_psnr": round(score, 4)}))
    if out_path is None:
        for line in lines:
            click.echo(line)
    else:
        write_text(out_path, "\n".join(lines) + "\n")
        click.echo(f"wrote {out_path}: {len(lines)} genome(s) scored")


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file of JSON lines") from None
