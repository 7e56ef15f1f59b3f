"""`srprune data ...`: check datasets on disk and build their LR sets by the protocol."""

from __future__ import annotations

import click

from srprune.cli.group import cli


@cli.group("data")
def data() -> None:
    """Datasets: check DIV2K and the benchmark sets, build LR images."""


@data.command("prepare")
@click.argument("root", type=click.Path(path_type=str))
@click.option("--scales", default="2,3,4", show_default=True, help="Comma-separated scales to build LR sets for.")
@click.option("--force", is_flag=True, help="Rebuild LR files that already exist.")
@click.option("--check", "check_only", is_flag=True, help="Only print the table; write nothing.")
def prepare(root: str, scales: str, force: bool, check_only: bool) -> None:
    """Check DIV2K and Set5/Set14/B100/Urban100/Manga109 under ROOT and build missing LR sets.

    LR = MATLAB-bicubic downscale of the HR image mod-cropped to the scale,
    written as <name>x<scale>.png beside the HR folder (DIV2K_*_LR_bicubic/X2,
    Set5/LR_bicubic/X2). Nothing is downloaded; see data/README.md.
    """
    from srprune.data.prepare import build, format_table, parse_scales, scan
    from srprune.errors import InputError

    scale_list = parse_scales(scales)
    statuses = scan(root, scale_list)
    click.echo(format_table(statuses, scale_list))
    if check_only:
        return
    result = build(statuses, force=force)
    click.echo(f"wrote {result.written} LR file(s)" if result.written else "nothing to build")
    if result.kept_wrong:
        raise InputError(
            f"{len(result.kept_wrong)} LR file(s) have the wrong size, e.g. {result.kept_wrong[0]}; "
            f"rerun with --force to rebuild them"
        )
