"""``mosaic configs``: the training configs shipped with mosaic, listed, shown and copied out to edit."""

from __future__ import annotations

from pathlib import Path

import typer

configs_app = typer.Typer(
    name="configs",
    help="The training configs shipped with mosaic: --config takes their names as well as YAML files.",
    no_args_is_help=True,
)


@configs_app.command("list")
def list_configs() -> None:
    """List the shipped configs: the name to pass to --config, and what each one is for."""
    from mosaic import api

    shipped = api.configs()
    width = max(len(config.name) for config in shipped)
    for config in shipped:
        typer.echo(f"{config.name:<{width}}  {config.summary}")


@configs_app.command("show")
def show(name: str = typer.Argument(..., help="A shipped config's name (mosaic configs list).")) -> None:
    """Print a shipped config's YAML, comments included."""
    from mosaic.configs import shipped_config

    typer.echo(shipped_config(name).path.read_text(encoding="utf-8"), nl=False)


@configs_app.command("copy")
def copy(
    name: str = typer.Argument(..., help="A shipped config's name (mosaic configs list)."),
    dest: Path = typer.Argument(..., help="The file to write, or a folder to write NAME.yaml into."),
    force: bool = typer.Option(False, "--force", help="Replace DEST if it exists."),
) -> None:
    """Copy a shipped config out to edit it, then train with --config DEST.

    Example: mosaic configs copy market1501_clip_vitb16 my_market.yaml
    """
    from mosaic import api

    written = api.copy_config(name, dest, overwrite=force)
    typer.echo(f"wrote {written}; train with: mosaic train --config {written}")


def register(app: typer.Typer) -> None:
    app.add_typer(configs_app)
