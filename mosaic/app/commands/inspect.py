"""`mosaic inspect TRACE`: what a trace holds, how it was made, and its headline metrics.

Reads only the small arrays (conditions, coordinates) and the attributes, never the gates, and
never imports torch, so it answers at once even for large traces; ``--check`` reads everything
and runs every value rule of the format (:mod:`mosaic.tracefile.check`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _fmt(value: float | None, pct: bool = True) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{100 * value:.1f}" if pct else f"{value:.3f}"


def _print_summary(summary: dict[str, Any], *, max_conditions: int | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    prov = summary["provenance"]
    ckpt = prov.get("checkpoint", {})
    sizes = summary["sizes"]
    console.print(f"[bold]{summary['path']}[/bold]  mosaic trace schema {summary['schema_version']}, "
                  f"written by mosaic {summary['mosaic_version']} at {summary['created']}")
    console.print(f"sha256 {summary['sha256']}  ({summary['size_bytes'] / 2**20:.1f} MiB)")
    if summary.get("checksums"):
        console.print(f"checksums: {summary['checksums']} on every dataset (verified by --check and by every read)")
    else:
        console.print("checksums: no checksums (written before trace schema 1.3.0): corruption cannot be detected")
    console.print(
        "dimensions: " + ", ".join(f"{k}={v}" for k, v in sizes.items())
        + f"  (valid queries: {summary['n_valid_queries']} of {sizes.get('query', 0)})"
    )
    console.print(f"schema {summary['attribute_schema']!r}: {', '.join(summary['groups'])}")
    dataset = summary["dataset"]
    if dataset:
        console.print("dataset: " + ", ".join(f"{k}={v}" for k, v in dataset.items() if not isinstance(v, (dict, list))))
    lines = [
        ("command", prov.get("command")),
        ("checkpoint", f"{ckpt.get('path')} (sha256 {str(ckpt.get('sha256', ''))[:12]}…, step {ckpt.get('step')})" if ckpt else None),
        ("git commit", prov.get("git_commit")),
        ("seed", prov.get("seed")),
        ("device", prov.get("device")),
        ("precision", f"{summary['precision']} network; distances, ranking and routing decisions float32"),
        ("processes", prov.get("world_size") if prov.get("world_size", 1) != 1 else None),
        ("versions", ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items()) or None),
    ]
    for label, value in lines:
        if value is not None and value != "":
            console.print(f"{label}: {value}")

    table = Table(title=f"{len(summary['conditions'])} conditions (metrics in %, over valid queries)", title_justify="left")
    for column, justify in (("condition", "left"), ("kind", "left"), ("router", "left"), ("groups on", "right"),
                            ("mAP", "right"), ("mINP", "right"), ("R1", "right"), ("R5", "right"), ("R10", "right")):
        table.add_column(column, justify=justify)
    rows = summary["conditions"]
    shown = rows if max_conditions is None else rows[:max_conditions]
    for row in shown:
        table.add_row(
            row["condition"], row["kind"], row["router"], str(row["n_enabled"]),
            _fmt(row["mAP"]), _fmt(row["mINP"]), _fmt(row["rank1"]), _fmt(row["rank5"]), _fmt(row["rank10"]),
        )
    console.print(table)
    if len(shown) < len(rows):
        console.print(f"… {len(rows) - len(shown)} more conditions (use --all)")
    _print_decomposition(console, summary["decomposition"])


def _print_decomposition(console, decomposition: dict[str, Any]) -> None:
    from rich.table import Table

    from analysis.methods.decomposition import QUANTITIES

    shown = [q for q in QUANTITIES if any(f"{q}_mAP" in row for row in decomposition["groups"])]
    if shown:
        table = Table(title="decomposition per group: ΔmAP / ΔR1 in points (condition − reference; negative = the "
                            "model loses; intervals in `mosaic report`)", title_justify="left")
        table.add_column("group")
        for quantity in shown:
            table.add_column(f"{QUANTITIES[quantity].label}\n{QUANTITIES[quantity].meaning.split(':')[0]}",
                             justify="right")
        for row in decomposition["groups"]:
            table.add_row(row["group"], *(
                f"{_fmt(row.get(f'{q}_mAP'))} / {_fmt(row.get(f'{q}_rank1'))}" if f"{q}_mAP" in row else "-"
                for q in shown))
        console.print(table)
    share = decomposition["code_share"]
    if share:
        console.print(f"code share of the oracle's gain over none, (code − none) / (oracle − none): "
                      f"mAP {_fmt(share.get('mAP'))}%, R1 {_fmt(share.get('rank1'))}%")
    for quantity, reason in decomposition["unavailable"].items():
        console.print(f"unavailable: {quantity.replace('_', ' ')}: {reason}")


def inspect(
    trace: Path = typer.Argument(..., help="Trace file written by `mosaic trace` (.h5).", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (for scripts) instead of tables."),
    show_all: bool = typer.Option(False, "--all", help="List every condition (default: the first 40)."),
    check: bool = typer.Option(
        False, "--check",
        help="Read every array and run every value rule of the format (ranges, NaN placement, stored means "
        "against per-query values, gates, shapes, dimension scales); list all violations. Exit 2 if any.",
    ),
) -> None:
    """Show what a trace holds: dimensions, conditions, provenance, headline metrics per condition, and the
    decomposition per group (information, capacity, misrouting, semantics) with the code share.

    Reads only the attributes and the per-condition arrays (never the gates) and never loads torch. For the per-query tables use `analysis.read_trace(TRACE)` in Python; for the file layout see docs/trace-format.md.
    """
    from mosaic import api

    if check:
        _check(Path(trace), as_json=as_json)
        return
    summary = api.inspect(trace)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        _print_summary(summary, max_conditions=None if show_all else 40)


def _check(path: Path, *, as_json: bool) -> None:
    """Print every rule's outcome; a broken rule makes the command fail with exit code 2."""
    from mosaic import api
    from mosaic.core.errors import MosaicError
    from mosaic.tracefile.check import VALUE_RULES

    violations = api.check_trace(path)
    if as_json:
        typer.echo(json.dumps({"path": str(path), "rules": list(VALUE_RULES),
                               "violations": [v.to_dict() for v in violations]}, indent=2, ensure_ascii=False))
    else:
        for violation in violations:
            typer.echo(str(violation))
        if not violations:
            checksums = api.inspect(path)["checksums"]
            typer.echo(f"{path}: every value rule holds ({len(VALUE_RULES)} rules, shapes and labels); "
                       + (f"every dataset matches its {checksums} checksum" if checksums else "no checksums (written before trace schema 1.3.0)"))
    if violations:
        rules = sorted({v.rule.name for v in violations})
        raise MosaicError(
            f"{path} breaks {len(violations)} value rule{'s' if len(violations) > 1 else ''} ({', '.join(rules)}): "
            "the file is corrupt; re-run `mosaic trace` to rewrite it"
        )


def register(app: typer.Typer) -> None:
    app.command(name="inspect")(inspect)
