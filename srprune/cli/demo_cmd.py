"""`srprune demo`: the main job on built-in data (see srprune.demo)."""

from __future__ import annotations

from pathlib import Path

import click

from srprune.cli import cli


@cli.command("demo")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Run folder.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Training steps per model [default: 3000].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Redo every step even if its results exist.")
def demo_cmd(out_dir: Path, steps: int | None, seed: int, force: bool) -> None:
    """Train and evaluate baselines on scikit-image's bundled photographs (no download)."""
    from srprune.demo import DEMO_STEPS, run_demo

    run_demo(out_dir, steps=steps or DEMO_STEPS, seed=seed, force=force)
    click.echo(f"results: {out_dir / 'eval' / 'metrics.md'}")
