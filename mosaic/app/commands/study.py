"""`mosaic study`: several traces side by side -- seeds as replicates, labels compared.

Torch-free like `mosaic report`. The statistics live in :func:`analysis.study`, the work in
:func:`mosaic.api.study`; this command reads options, calls it and prints the report's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mosaic.app.commands.options import progress_option


STUDY_HELP = (
    "Compare several traces: seeds of one label (dataset, backbone, config) as replicates, labels side by side.\n\n"
    "Per label and attribute group: the effect (ΔmAP when the group is dropped, and its decomposition into "
    "information, capacity, misrouting and semantics where the traces hold fixed / counterfactual / relabel "
    "conditions) pooled over seeds with a between-seed variance component; each run's standard error resamples "
    "identities. Then ranking stability across seeds (rank range, Kendall's W, share of seeds in the top 3) and "
    "label contrasts (is g's effect larger on A than on B?) with Holm's correction.\n\n"
    "Labels: provenance['label'] when a trace names one; else --label NAME=GLOB on the trace paths; else the "
    "dataset, backbone and config recorded in the provenance, where they differ. Groups are compared on the schema "
    "the labels share; the report names any group it leaves out.\n\n"
    "Examples:\n\n"
    "  mosaic study runs/market-s*/trace.h5 runs/duke-s*/trace.h5 --out study.html\n\n"
    "  mosaic study a/*.h5 b/*.h5 --label market='a/*' --label duke='b/*' --format json --out study.json"
)


def study(
    traces: List[Path] = typer.Argument(..., help="Two or more HDF5 traces, one per trained run."),
    out: Path = typer.Option(Path("study.html"), "--out", "-o", help="Output file; its suffix picks the format."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="html, md or json (default: from the --out suffix, else html)."),
    label: Optional[List[str]] = typer.Option(None, "--label", help="NAME=GLOB: traces whose path matches GLOB get label NAME (repeatable)."),
    rank_by: str = typer.Option("drop", "--rank-by", help="Quantity whose effects are ranked: drop, information, capacity, misrouting, semantics."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the Holm / BH decisions."),
    ci_level: float = typer.Option(0.95, "--ci-level", help="Coverage of every interval."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Identity-cluster bootstrap resamples per run."),
    seed: int = typer.Option(0, "--seed", help="Seed of the resampling: same seed, same numbers."),
    df: str = typer.Option("satterthwaite", "--df", help="Degrees of freedom of the t intervals: satterthwaite, or conservative (smallest seeds - 1 of the labels involved)."),
    progress: bool = progress_option(),
) -> None:
    from mosaic import api

    result = api.study(list(traces), out, format, labels=label or None, rank_by=rank_by, alpha=alpha,
                       ci_level=ci_level, n_bootstrap=bootstrap, seed=seed, df=df, progress=progress)
    typer.echo(str(result.paths[0]))


def register(app: typer.Typer) -> None:
    app.command(name="study", help=STUDY_HELP)(study)
