"""`srprune run | search | report | demo | baselines`: the pipeline (srprune.search) and the reference models."""

from __future__ import annotations

from pathlib import Path

import click

from srprune.cli.group import cli
from srprune.errors import InputError

WAIT = click.option("--wait", is_flag=True, help="If another srprune process holds the run folder, wait for it "
                    "instead of stopping.")
REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEMO_CONFIG = REPO_CONFIGS / "demo.yaml"


def _summary(run) -> None:
    """The run's headline numbers, from its stage results."""
    states = run.states()
    dep = (states.get("compile") or {}).get("result") or {}
    ev = (states.get("evaluate") or {}).get("result") or {}
    if dep:
        from srprune.search.latency_label import deployed_ms, latency_word

        click.echo(f"latency on {run.target.name}: {latency_word(dep)} {deployed_ms(dep):.1f} ms per frame "
                   f"(predicted {dep['predicted_ms']:.1f}), budget {dep['budget_ms']:g} ms "
                   f"-> {dep['budget_fill']:.0%} of it{'' if dep['within_budget'] else ', OVER BUDGET'}")
        if "time_it" in dep:
            click.echo(f"time the compiled c-lib on the phone: {dep['time_it']}")
        min_fill = run.config.search.min_fill
        if dep["within_budget"] and dep["budget_fill"] < min_fill:
            click.echo(f"under search.min_fill ({min_fill:.0%}) of the budget: the search and its replanning found no "
                       "network that fills more (the report says which stage fell back)")
    for name, r in ev.items():
        click.echo(f"PSNR-Y on {name}: {r['final']:.3f} dB (bicubic {r['bicubic']:.3f})")
    if run.layout.report.exists():
        click.echo(f"report: {run.layout.report}")


def _stages(stage: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if stage is None:
        return allowed
    if stage not in allowed:
        raise InputError(f"unknown stage {stage!r} (stages: {', '.join(allowed)})")
    return (stage,)


@cli.command("run")
@click.option("--config", "-c", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--out", "-o", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: run_dir of the config).")
@click.option("--stage", default=None, help="Run only this stage (its inputs must be done): latency, supernet, "
              "arch, ratios, finetune, compile, evaluate, report, apk (with android: {apk: true}).")
@click.option("--force", is_flag=True, help="Redo the stage(s) even if done with the same inputs.")
@WAIT
def run_cmd(config_path: Path, run_dir: Path | None, stage: str | None, force: bool, wait: bool) -> None:
    """The whole job: latency model, supernet, search (stages 2-3), fine-tune, compile + measure, eval, report.

    A finished stage is skipped while its inputs are unchanged; a killed run resumes where it stopped.
    """
    from srprune.search.pipeline import STAGES, prepare, run_pipeline

    stages = _stages(stage, STAGES)
    run = prepare(config_path, run_dir, wait=wait)
    run_pipeline(run, stages, force=force)
    _summary(run)


@cli.command("search")
@click.option("--config", "-c", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--out", "-o", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--storage", default=None, help="Optuna storage URL shared by several search processes "
              "(default: search.storage of the config, else sqlite:///RUN/search/study.db).")
@click.option("--stage", type=click.Choice(["arch", "ratios"]), default=None, help="Only stage 2 or 3.")
@click.option("--force", is_flag=True, help="Discard the stored trials and search again.")
@WAIT
def search_cmd(config_path: Path, run_dir: Path | None, storage: str | None, stage: str | None, force: bool,
               wait: bool) -> None:
    """Stages 2-3 alone (the latency and supernet stages must be done). Start it in several processes, on one
    machine or several, to share one study: together they run exactly the configured number of trials."""
    from srprune.search.pipeline import SEARCH_STAGES, prepare, run_pipeline

    run = prepare(config_path, run_dir, storage=storage, shared=True, wait=wait)
    results = run_pipeline(run, _stages(stage, SEARCH_STAGES), force=force)
    chosen = results.get("ratios") or results.get("arch") or {}
    if chosen:
        click.echo(f"chosen: proxy PSNR-Y {chosen['proxy_psnr']:.3f} dB, predicted {chosen['predicted_ms']:.1f} ms "
                   f"({run.dir / 'search'})")


@cli.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def report_cmd(run_dir: Path) -> None:
    """Write RUN/report.html (single file, opens offline) from the run folder's results."""
    from srprune.search.hashes import stale_stages
    from srprune.search.report import write_report

    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run folder")
    click.echo(f"wrote {write_report(run_dir, stale_stages(run_dir))}")


@cli.command("demo")
@click.option("--out", "-o", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Run folder.")
@click.option("--config", "-c", "config_path", type=click.Path(path_type=Path), default=DEMO_CONFIG,
              show_default=True, help="The demo's config (built-in images, small space, budget for this machine).")
@click.option("--force", is_flag=True, help="Redo every stage.")
@WAIT
def demo_cmd(run_dir: Path, config_path: Path, force: bool, wait: bool) -> None:
    """The pipeline on scikit-image's bundled photographs (no download), about 15 minutes on 2 cores."""
    from srprune.search.pipeline import STAGES, prepare, run_pipeline

    run = prepare(config_path, run_dir, wait=wait)
    run_pipeline(run, STAGES, force=force)
    _summary(run)


@cli.command("baselines")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/baselines"), show_default=True, help="Run folder.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Training steps per model [default: 3000].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Redo every step even if its results exist.")
def baselines_cmd(out_dir: Path, steps: int | None, seed: int, force: bool) -> None:
    """Train and evaluate the reference models (FSRCNN, ECB-style) against bicubic on the built-in images."""
    from srprune.baselines import DEMO_STEPS, run_demo

    run_demo(out_dir, steps=steps or DEMO_STEPS, seed=seed, force=force)
    click.echo(f"results: {out_dir / 'eval' / 'metrics.md'}")
