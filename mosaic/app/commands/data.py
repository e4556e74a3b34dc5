"""`mosaic data check`: load a dataset the way training will, and report what is in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from mosaic.app.commands.options import progress_option
from mosaic.core.errors import MosaicError

data_app = typer.Typer(
    name="data",
    help="Inspect datasets: Market-1501, DukeMTMC-reID (with the Lin et al. attribute files) or a manifest.",
    no_args_is_help=True,
)

class DataCheckFailed(MosaicError):
    """The dataset loaded, but the check found errors: exit code 1 (2 stays "could not read it")."""

    exit_code = 1


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


CHECK_HELP = (
    "Report images, identities, cameras and attribute coverage per split, and every trap found.\n\n"
    "Traps: identities without attributes, missing values, colours with no or several states marked, "
    "pooled colour states, junk and distractor images, queries the evaluation will skip, attribute "
    "states with no training image.\n\n"
    "Exit code 1 when any finding is an error, 2 when the dataset cannot be read at all, 0 otherwise."
)


@data_app.command("check", help=CHECK_HELP)
def check(
    root: Path = typer.Argument(
        ...,
        help="Dataset folder (holding bounding_box_train/, query/, bounding_box_test/), "
        "or a manifest.csv / a folder holding one.",
    ),
    attributes: Optional[Path] = typer.Option(
        None,
        "--attributes",
        "-a",
        help="Lin et al. attribute file (market_attribute.mat / duke_attribute.mat). "
        "Default: the file of that name in ROOT, then in ROOT's parent, then in the cache that "
        "`mosaic data get-attributes` fills.",
    ),
    format: Optional[str] = typer.Option(
        None,
        "--format",
        "-f",
        help="market1501, dukemtmc or manifest. Default: recognised from the file names or manifest.csv.",
    ),
    schema: Optional[str] = typer.Option(
        None,
        "--schema",
        help="Attribute schema: shipped name (market1501, dukemtmc) or YAML file. Default: the format's own "
        "schema; for a manifest, schema.yaml beside it.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
) -> None:
    """Load a dataset the way training will and print (or return as JSON) what ``DataReport`` holds."""
    from mosaic import api

    report = api.check_data(root, format=format, attributes=attributes, schema=schema)
    ds = report.dataset
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    if report.errors:
        n = len(report.errors)
        raise DataCheckFailed(
            f"{ds.name}: {n} error finding{'s' if n > 1 else ''} ({', '.join(sorted({f.code for f in report.errors}))}): "
            "fix the data or the attribute file before training"
        )


GET_ATTRIBUTES_HELP = (
    "Download the Lin et al. attribute files (market_attribute.mat, duke_attribute.mat) from their published "
    "repositories at pinned commits, verify their SHA-256, and store them with their licence and citation "
    "notices in the user cache ($MOSAIC_DATA_DIR/attributes, else ~/.cache/mosaic/attributes) or --out DIR.\n\n"
    "`mosaic data check` and `mosaic train` find them in the cache when no attribute file is named and none lies "
    "beside the images. Files already present with the right checksum are kept. On any failure nothing is "
    "written (exit code 2)."
)


@data_app.command("get-attributes", help=GET_ATTRIBUTES_HELP)
def get_attributes_command(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write into. Default: the user cache."),
    dataset: Optional[list[str]] = typer.Option(
        None, "--dataset", "-d", help="market1501 or dukemtmc; repeat for both. Default: both."
    ),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="Where the raw files are served (a mirror). Default: $MOSAIC_ATTRIBUTES_URL, else GitHub."
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for a connection or the next bytes."),
    progress: bool = progress_option(),
) -> None:
    """Fetch, verify and store the attribute files; print where they are."""
    from mosaic import api

    lines = (lambda line: typer.echo(line, err=True)) if progress else None
    for path in api.get_attributes(out, datasets=dataset or None, base_url=base_url, timeout=timeout, progress=lines):
        typer.echo(str(path))


def _percent(value: float) -> str:
    return "-" if value != value else f"{100 * value:.0f}%"  # NaN: split without identity images


def _print_report(report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=max(Console().width, 110))
    ds = report.dataset
    console.print(f"[bold]{ds.name}[/bold]  format {ds.format}  root {ds.root}")
    console.print(
        f"schema {ds.schema.name}: {len(ds.schema.groups)} groups, {ds.schema.n_experts} experts"
        + (f"  attributes {ds.attribute_file}" if ds.attribute_file else "")
    )

    splits = Table(title="Splits", title_justify="left")
    for column in ("split", "images", "identities", "cameras", "distractor images"):
        splits.add_column(column, justify="left" if column == "split" else "right")
    for split, row in report.summary.iterrows():
        splits.add_row(split, *(f"{int(v):,}" for v in row.to_numpy()))
    console.print(splits)

    cov = Table(
        title="Attribute coverage (share of identity images / of identities annotated)", title_justify="left"
    )
    for column in ("group", "family", "states", "train", "query", "gallery"):
        cov.add_column(column, justify="right" if column in {"states", "train", "query", "gallery"} else "left")
    for group, row in report.coverage.iterrows():
        cells = [f"{_percent(row[f'{s}_images'])} / {_percent(row[f'{s}_ids'])}" for s in ("train", "query", "gallery")]
        cov.add_row(group, row["family"], str(row["states"]), *cells)
    console.print(cov)

    findings = Table(title="Findings", title_justify="left")
    findings.add_column("severity")
    findings.add_column("code")
    findings.add_column("count", justify="right")
    findings.add_column("message", overflow="fold")
    for f in sorted(report.findings, key=lambda f: SEVERITY_ORDER[f.severity]):
        style = SEVERITY_STYLE[f.severity]
        findings.add_row(f"[{style}]{f.severity}[/{style}]", f.code, f"{f.count:,}", f.message)
    console.print(findings)

    n_err, n_warn = len(report.errors), len(report.warnings)
    verdict = "[bold red]not usable as is[/bold red]" if n_err else "[green]usable[/green]"
    console.print(f"{n_err} errors, {n_warn} warnings: {verdict}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
