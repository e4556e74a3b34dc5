"""`mosaic report`: analyse a trace and write the report (HTML, Markdown or JSON).

The work lives in :func:`mosaic.api.report` (:mod:`mosaic.app.reporting`); torch-free on purpose, so it
runs on a laptop without the training stack and starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mosaic.app.commands.options import progress_option

REPORT_HELP = (
    "Analyse a trace and write the report: which attribute groups and families retrieval relies on.\n\n"
    "The HTML report (default) is one self-contained file: a summary (ranking of groups and families with "
    "effect sizes and confidence intervals, retrieval per condition), one section per method (the paper's "
    "configuration-level GLMs, surrogates and t-tests; this project's paired query-level tests, query GLM "
    "and XGBoost surrogate), figures, example ranked lists, the methods text, warnings and provenance. "
    "Markdown and JSON hold the same numbers; the JSON layout is documented in docs/report-json.md.\n\n"
    "Output: next to the trace as report.html / report.md / report.json unless --out says otherwise "
    "(a file, or an existing folder). The format follows --format, else the --out suffix, else html.\n\n"
    "Examples:\n\n"
    "  mosaic report runs/demo/trace.h5\n\n"
    "  mosaic report trace.h5 --format json --out results.json\n\n"
    "  mosaic report trace.h5 --no-images --bootstrap 2000 --permutations 5000 --seed 1\n\n"
    "  mosaic report trace.h5 --alpha 0.01 --ci-level 0.99"
)


def report(
    trace: Path = typer.Argument(..., help="The HDF5 trace written by `mosaic trace` (or analysis.simulate)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o",
        help="Output file, or an existing folder to write report.<ext> into. Default: next to the trace.",
    ),
    format: Optional[str] = typer.Option(
        None, "--format", "-f",
        help="html (one self-contained page with figures), md (Markdown tables) or json (tables plus the full "
             "analysis). Default: from the --out suffix, else html.",
    ),
    images: bool = typer.Option(
        True, "--images/--no-images",
        help="Embed small thumbnails of the ranked-list images (read from the dataset root recorded in the trace). "
             "--no-images shows identities only.",
    ),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the decisions (Holm / BH rejections); "
                                                       "it sets no interval."),
    ci_level: float = typer.Option(0.95, "--ci-level", help="Coverage of every confidence interval in the report "
                                                            "(bootstrap, exact, t, GLM and rank intervals alike)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Identity-cluster bootstrap resamples for the intervals."),
    permutations: int = typer.Option(2000, "--permutations", help="Sign-flip permutations of the identity-level test."),
    seed: int = typer.Option(0, "--seed", help="Seed of every resampling and model fit: same seed, same numbers."),
    progress: bool = progress_option(),
) -> None:
    from mosaic import api

    if progress:
        typer.echo(f"mosaic report: {trace} -> {api.report_output(trace, out, format)}", err=True)
    result = api.report(trace, out, format, images=images, alpha=alpha, ci_level=ci_level, n_bootstrap=bootstrap,
                        n_permutations=permutations, seed=seed, progress=progress)
    if result.n_warnings and progress:
        typer.echo(f"{result.n_warnings} warning(s): see the Warnings section of the report", err=True)
    typer.echo(str(result.path))


def register(app: typer.Typer) -> None:
    app.command(name="report", help=REPORT_HELP)(report)

