"""`mosaic data check`: load a dataset the way training will, and report what is in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from mosaic.errors import MosaicError

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
        "Default: the file of that name in ROOT, then in ROOT's parent.",
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
    from mosaic.data import DataReport, load_dataset

    ds = load_dataset(root, format=format, attributes=attributes, schema=schema, allow_missing_attributes=True)
    report = DataReport.from_dataset(ds)
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
