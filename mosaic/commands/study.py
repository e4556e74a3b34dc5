"""`mosaic study`: several traces side by side -- seeds as replicates, labels compared.

Torch-free like `mosaic report`: it imports only ``analysis`` and ``reports``. The statistics live
in :func:`analysis.study`; this command reads options, calls it and writes the report.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import List, Optional

import typer

from mosaic.errors import MosaicError

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


def write_study(traces: list, outputs, *, fmt_name: Optional[str] = None, labels=None, command: str = "",
                **settings) -> list[Path]:
    """Run :func:`analysis.study` on ``traces`` once and write the report to each of ``outputs`` atomically.

    Each output's format is ``fmt_name``, else its suffix (html, md, json), else html.
    """
    import analysis
    from mosaic.fileio import atomic_path
    from reports import FORMATS, get_format
    from reports.study import build_study_report

    outputs = [Path(outputs)] if isinstance(outputs, (str, Path)) else [Path(o) for o in outputs]
    by_suffix = {f.suffix: f for f in FORMATS.values()}
    formats = [get_format(fmt_name) if fmt_name else by_suffix.get(o.suffix.lower(), FORMATS["html"]) for o in outputs]
    results = analysis.study(traces, labels=labels, **settings)
    document = build_study_report(results, command=command)
    for out, fmt in zip(outputs, formats):
        with atomic_path(out) as tmp:
            tmp.write_text(fmt.render(document), encoding="utf-8")
    return outputs


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
) -> None:
    from mosaic.fileio import ensure_writable_dir

    for path in traces:
        if not Path(path).is_file():
            raise MosaicError(f"trace {path} does not exist: check the path")
    if not 0 < ci_level < 1:
        raise MosaicError(f"--ci-level must lie strictly between 0 and 1, got {ci_level}")
    if not 0 < alpha < 1:
        raise MosaicError(f"--alpha must lie strictly between 0 and 1, got {alpha}")
    if bootstrap < 100:
        raise MosaicError(f"--bootstrap must be at least 100 for a usable standard error, got {bootstrap}")
    from analysis.metaanalysis import DF_METHODS
    from analysis.study_runs import STUDY_QUANTITIES

    if df not in DF_METHODS:
        raise MosaicError(f"--df {df!r} is not a degrees-of-freedom method: use one of {', '.join(DF_METHODS)}")

    if rank_by not in STUDY_QUANTITIES:
        raise MosaicError(f"--rank-by {rank_by!r} is not a study quantity: use one of {', '.join(STUDY_QUANTITIES)}")
    ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    command = shlex.join(["mosaic", "study", *map(str, traces), "--out", str(out)]
                         + [a for lab in (label or []) for a in ("--label", lab)])
    (path,) = write_study(list(traces), out, fmt_name=format, labels=label or None, command=command, rank_by=rank_by,
                       alpha=alpha, ci_level=ci_level, n_bootstrap=bootstrap, seed=seed, df_method=df)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command(name="study", help=STUDY_HELP)(study)
