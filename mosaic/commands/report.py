"""`mosaic report`: analyse a trace and write the report (HTML, Markdown or JSON).

Torch-free on purpose: this command imports only ``analysis`` and ``reports``, so it runs on a
laptop without the training stack and starts fast.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Optional

import typer

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


class StageProgress:
    """One line per slow stage on stderr, with its duration, so long runs show where they are."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._name: str | None = None
        self._start = 0.0

    def __call__(self, name: str) -> None:
        self.finish()
        self._name, self._start = name, time.perf_counter()
        if self.enabled:
            typer.echo(f"  {name} ...", err=True, nl=False)

    def finish(self, failed: bool = False) -> None:
        if self._name is not None and self.enabled:
            typer.echo(" failed" if failed else f" {time.perf_counter() - self._start:.1f} s", err=True)
        self._name = None


def resolve_output(trace: Path, out: Optional[Path], format: Optional[str]):
    """(format, output path) from the options; raises MosaicError for an unknown format or a missing folder."""
    from mosaic.fileio import ensure_writable_dir
    from reports import FORMATS, get_format

    if format is not None:
        fmt = get_format(format)
    else:
        by_suffix = {f.suffix: f for f in FORMATS.values()}
        fmt = by_suffix.get(out.suffix.lower(), FORMATS["html"]) if out is not None and not out.is_dir() else FORMATS["html"]
    if out is None:
        path = trace.parent / f"report{fmt.suffix}"
    elif out.is_dir():
        path = out / f"report{fmt.suffix}"
    else:
        path = out
    ensure_writable_dir(path.parent if str(path.parent) else Path("."))
    return fmt, path


def canonical_command(trace: Path, fmt: str, out: Path, images: bool, alpha: float, bootstrap: int,
                      permutations: int, seed: int, ci_level: float = 0.95) -> str:
    """The command as it would reproduce this report (recorded in the provenance)."""
    args = ["mosaic", "report", str(trace), "--format", fmt, "--out", str(out), "--alpha", repr(alpha),
            "--ci-level", repr(ci_level), "--bootstrap", str(bootstrap), "--permutations", str(permutations),
            "--seed", str(seed)]
    if not images:
        args.append("--no-images")
    return shlex.join(args)


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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
) -> None:
    from mosaic.fileio import atomic_path

    fmt, path = resolve_output(trace, out, format)
    progress = StageProgress(enabled=not quiet)
    if not quiet:
        typer.echo(f"mosaic report: {trace} -> {path}", err=True)
    try:
        document, text = _analyse_and_render(trace, fmt, path, progress, images=images, alpha=alpha,
                                             bootstrap=bootstrap, permutations=permutations, seed=seed,
                                             ci_level=ci_level)
        progress(f"writing {path.name}")
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except BaseException:
        progress.finish(failed=True)
        raise
    progress.finish()
    n_warnings = sum(len(b.rows) for b in document.section("warnings").tables())
    if n_warnings and not quiet:
        typer.echo(f"{n_warnings} warning(s): see the Warnings section of the report", err=True)
    typer.echo(str(path))


def analyse_trace(trace: Path, progress, *, images: bool = True, command: str = "", **settings):
    """Read a trace, analyse it and build the report document (rendered by any format).

    ``settings`` go to :func:`analysis.analyze` (alpha, ci_level, n_bootstrap, n_permutations, seed).
    """
    progress("reading trace")
    import analysis
    from reports import ReportOptions, build_report

    data = analysis.read_trace(trace)
    results = analysis.analyze(data, progress=lambda stage: progress(f"analysis: {stage}"), **settings)
    progress("building report" + (" with thumbnails" if images else ""))
    return build_report(results, data, ReportOptions(images=images, command=command))


def _analyse_and_render(trace: Path, fmt, path: Path, progress: StageProgress, *, images: bool, alpha: float,
                        bootstrap: int, permutations: int, seed: int, ci_level: float = 0.95):
    document = analyse_trace(
        trace, progress, images=images,
        command=canonical_command(trace, fmt.name, path, images, alpha, bootstrap, permutations, seed, ci_level),
        alpha=alpha, n_bootstrap=bootstrap, n_permutations=permutations, seed=seed, ci_level=ci_level,
    )
    progress(f"rendering {fmt.name}")
    return document, fmt.render(document)


def register(app: typer.Typer) -> None:
    app.command(name="report", help=REPORT_HELP)(report)
