"""`srprune supernet ...`: train the weight-sharing supernet, list and score genomes, extract a standalone model.

The config (YAML) holds the search space and the training settings; the run folder gets
supernet/checkpoint.pt (resumable, also under torchrun), train.log and summary.json:

    supernet:
      space: {num_cells: 4, widths: [8, 16, 32, 64], blocks: [conv, res, wide, ecb, dws, skip],
              activation: relu, scales: [2]}
      train: {steps: 1500, batch_size: 16, patch_size: 32, lr: 0.002, num_random: 2, kd_weight: 0.5,
              seed: 0, val_every: 250, checkpoint_every: 100, sort_every: 0, sampling: fixed}
      data: builtin
      val_data: builtin

(configs/supernet-demo.yaml is a commented example.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from srprune.cli.group import cli
from srprune.cli.placement import placement, placement_options
from srprune.errors import InputError
from srprune.search.supernet_stage import TRAIN_KEYS, read_config  # noqa: F401 (TRAIN_KEYS: re-exported)
from supernet.errors import SpaceError

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
@placement_options
def train_cmd(config_path, run_dir, scale, threads, resume, force, stop_after, device, amp, workers) -> None:
    """Train the shared weights (sandwich rule + in-place distillation). Runs under torchrun too."""
    from srcommon.lock import FolderLock
    from srprune.outputs import check_output_folder
    from srprune.search.supernet_stage import train_supernet_run

    cfg = read_config(config_path)
    where = placement(device, amp, workers)
    run_dir = run_dir or (Path(cfg["run_dir"]) if cfg["run_dir"] else None)
    if run_dir is None:
        raise InputError("no run folder: pass --out or set run_dir in the config")
    check_output_folder(run_dir)
    if os.environ.get("RANK", "0") == "0":  # torchrun's other ranks write nothing of their own
        FolderLock(run_dir, "srprune supernet train").acquire()
    result = train_supernet_run(cfg, run_dir, scale, resume=resume, force=force, threads=threads,
                                stop_after=stop_after, where=where)
    if result is None:  # not rank 0 of a distributed run
        return
    if not result["done"]:
        click.echo(f"stopped at step {result['step']}; continue with --resume")
        return
    last = result["val"]
    click.echo(f"wrote {result['checkpoint']}: val PSNR-Y largest {last.get('val_largest', float('nan')):.3f} dB, "
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
    from srprune.outputs import check_output_file
    from supernet.space import Genome
    from supernet.standalone import extract
    from supernet.train import load_checkpoint, supernet_from_checkpoint

    check_output_file(out_path, force)
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

    from srcommon.atomic import write_text
    from srprune.outputs import check_output_file
    from srcommon.progress import progress_bar
    from srprune.search.supernet_stage import protocol_psnr, val_tensors
    from supernet.complexity import genome_macs, genome_params
    from supernet.proxy import proxy_psnr
    from supernet.space import Genome
    from supernet.train import supernet_from_checkpoint

    if out_path is not None:
        check_output_file(out_path, force)
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
            val[g.scale] = val_tensors(val_data, g.scale)
        score = proxy_psnr(net, g, val[g.scale], metric=protocol_psnr)
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
