"""Analysing traces and writing their reports and studies: the work behind ``mosaic report`` and
``mosaic study`` (:func:`report`, :func:`write_reports`, :func:`study`, exposed by :mod:`mosaic.api`).

Torch-free on purpose: this module imports only ``analysis`` and ``reports`` (lazily), so reports
run on a laptop without the training stack.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from mosaic.core.errors import MosaicError

__all__ = ["ReportResult", "StageProgress", "StudyResult", "analyse_trace", "canonical_command", "render_report",
           "report", "report_output", "resolve_output", "study", "write_reports", "write_study"]

_PathLike = str | os.PathLike


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
            print(f"  {name} ...", end="", file=sys.stderr, flush=True)

    def finish(self, failed: bool = False) -> None:
        if self._name is not None and self.enabled:
            print(" failed" if failed else f" {time.perf_counter() - self._start:.1f} s", file=sys.stderr, flush=True)
        self._name = None


def resolve_output(trace: Path, out: Optional[Path], format: Optional[str]):
    """(format, output path) from the options; raises MosaicError for an unknown format or a missing folder."""
    from mosaic.core.fileio import ensure_writable_dir
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


def analyse_trace(trace: Path, progress: Callable[[str], None], *, images: bool = True, command: str = "", **settings):
    """Read a trace, analyse it and build the report document (rendered by any format).

    ``settings`` go to :func:`analysis.analyze` (alpha, ci_level, n_bootstrap, n_permutations, seed).
    Returns ``(results, document)``.
    """
    progress("reading trace")
    import analysis
    from reports import ReportOptions, build_report

    data = analysis.read_trace(trace)
    results = analysis.analyze(data, progress=lambda stage: progress(f"analysis: {stage}"), **settings)
    progress("building report" + (" with thumbnails" if images else ""))
    return results, build_report(results, data, ReportOptions(images=images, command=command))


def render_report(document, fmt, path: Path, progress: Callable[[str], None]) -> None:
    """Render ``document`` in ``fmt`` and write it to ``path`` atomically."""
    from mosaic.core.diskspace import OUT_FIX
    from mosaic.core.fileio import write_text_atomic

    progress(f"rendering {fmt.name}")
    text = fmt.render(document)
    progress(f"writing {path.name}")
    write_text_atomic(path, text, fix=OUT_FIX)


def write_study(traces: list, outputs, *, fmt_name: Optional[str] = None, labels=None, command: str = "",
                **settings):
    """Run :func:`analysis.study` on ``traces`` once and write the report to each of ``outputs`` atomically.

    Each output's format is ``fmt_name``, else its suffix (html, md, json), else html. Returns
    ``(results, paths)``.
    """
    import analysis
    from mosaic.core.diskspace import OUT_FIX
    from mosaic.core.fileio import write_text_atomic
    from reports import FORMATS, get_format
    from reports.study import build_study_report

    outputs = [Path(outputs)] if isinstance(outputs, (str, Path)) else [Path(o) for o in outputs]
    by_suffix = {f.suffix: f for f in FORMATS.values()}
    formats = [get_format(fmt_name) if fmt_name else by_suffix.get(o.suffix.lower(), FORMATS["html"]) for o in outputs]
    results = analysis.study(traces, labels=labels, **settings)
    document = build_study_report(results, command=command)
    for out, fmt in zip(outputs, formats):
        write_text_atomic(out, fmt.render(document), fix=OUT_FIX)
    return results, outputs


@dataclass
class ReportResult:
    """A written report: its path(s), the analysis (:class:`analysis.Results`) and the document."""

    path: Path
    results: Any
    document: Any
    paths: list[Path] = field(default_factory=list)

    @property
    def n_warnings(self) -> int:
        return sum(len(b.rows) for b in self.document.section("warnings").tables())


@dataclass
class StudyResult:
    """A written study report (``paths``, one per format) and the study's results."""

    paths: list[Path]
    results: Any


def report(
    trace: _PathLike,
    out: Optional[_PathLike] = None,
    format: Optional[str] = None,
    *,
    images: bool = True,
    alpha: float = 0.05,
    ci_level: float = 0.95,
    bootstrap: int = 1000,
    permutations: int = 2000,
    seed: int = 0,
    progress: Callable[[str], None] | bool = False,
    command: Optional[str] = None,
) -> ReportResult:
    """Analyse a trace and write its report (``format``: html, md or json; default from ``out``'s suffix).

    ``out`` is a file or an existing folder (default: ``report.<ext>`` next to the trace).
    ``progress``: ``True`` for one line per stage on stderr, or a callable receiving each stage's name.
    """
    trace = Path(trace)
    fmt, path = resolve_output(trace, Path(out) if out is not None else None, format)
    stages = progress if callable(progress) else StageProgress(enabled=bool(progress))
    results, document = _analyse_and_write(
        trace, [(fmt, path)], stages, images=images,
        command=command or canonical_command(trace, fmt.name, path, images, alpha, bootstrap, permutations, seed, ci_level),
        alpha=alpha, n_bootstrap=bootstrap, n_permutations=permutations, seed=seed, ci_level=ci_level,
    )
    return ReportResult(path=path, results=results, document=document, paths=[path])


def report_output(trace: _PathLike, out: Optional[_PathLike] = None, format: Optional[str] = None) -> Path:
    """The file :func:`report` writes for these arguments (an unknown format or missing folder is a MosaicError)."""
    return resolve_output(Path(trace), Path(out) if out is not None else None, format)[1]


def write_reports(trace: _PathLike, out: _PathLike, formats: Sequence[str] = ("html", "json"), *, images: bool = True,
                  command: str = "", progress: bool = False, **settings) -> ReportResult:
    """One analysis of ``trace`` rendered in several formats, as ``out/report.<ext>``.

    ``settings`` go to :func:`analysis.analyze` (alpha, ci_level, n_bootstrap, n_permutations, seed).
    """
    from reports import get_format

    # the formats are resolved first: an unknown one fails before the analysis
    outputs = [(fmt, Path(out) / f"report{fmt.suffix}") for fmt in map(get_format, formats)]
    results, document = _analyse_and_write(Path(trace), outputs, StageProgress(enabled=progress), images=images,
                                           command=command, **settings)
    paths = [path for _, path in outputs]
    return ReportResult(path=paths[0], results=results, document=document, paths=paths)


def _analyse_and_write(trace: Path, outputs: Sequence[tuple[Any, Path]], stages: Callable[[str], None], *,
                       images: bool, command: str, **settings):
    """Analyse ``trace`` once and write its report in each (format, path) of ``outputs``; a
    :class:`StageProgress` line ends in "failed" when a stage does. Returns ``(results, document)``."""
    try:
        results, document = analyse_trace(trace, stages, images=images, command=command, **settings)
        for fmt, path in outputs:
            render_report(document, fmt, path, stages)
    except BaseException:
        if isinstance(stages, StageProgress):
            stages.finish(failed=True)
        raise
    if isinstance(stages, StageProgress):
        stages.finish()
    return results, document


def study(
    traces: Sequence[_PathLike],
    out: _PathLike = "study.html",
    format: Optional[str] = None,
    *,
    labels: Optional[Sequence[str] | Mapping[str, str]] = None,
    rank_by: str = "drop",
    alpha: float = 0.05,
    ci_level: float = 0.95,
    bootstrap: int = 1000,
    seed: int = 0,
    df: str = "satterthwaite",
    command: Optional[str] = None,
) -> StudyResult:
    """Compare several traces: seeds of one label as replicates, labels side by side (:func:`analysis.study`).

    ``labels``: ``["NAME=GLOB", ...]`` (or ``{NAME: GLOB}``) over the trace paths; default: the labels
    the traces record. ``out``'s suffix picks the format unless ``format`` is given.
    """
    import shlex

    from analysis.metaanalysis import DF_METHODS
    from analysis.study_runs import STUDY_QUANTITIES
    from mosaic.core.fileio import ensure_writable_dir
    from mosaic.core.settings import check_bounds, check_choice

    for path in traces:
        if not Path(path).is_file():
            raise MosaicError(f"trace {path} does not exist: check the path")
    check_bounds(ci_level, (0, 1, "()"), "--ci-level")
    check_bounds(alpha, (0, 1, "()"), "--alpha")
    check_bounds(bootstrap, (100, None), "--bootstrap")
    check_choice(df, DF_METHODS, "--df")
    check_choice(rank_by, STUDY_QUANTITIES, "--rank-by")
    out = Path(out)
    ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    if isinstance(labels, Mapping):
        labels = [f"{name}={pattern}" for name, pattern in labels.items()]
    if command is None:
        command = shlex.join(["mosaic", "study", *map(str, traces), "--out", str(out)]
                             + [a for lab in (labels or []) for a in ("--label", lab)])
    results, paths = write_study([Path(t) for t in traces], out, fmt_name=format, labels=list(labels) if labels else None,
                                 command=command, rank_by=rank_by, alpha=alpha, ci_level=ci_level, n_bootstrap=bootstrap,
                                 seed=seed, df_method=df)
    return StudyResult(paths=paths, results=results)
