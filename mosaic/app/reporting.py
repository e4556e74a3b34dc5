"""Analysing traces and writing their reports and studies: the work behind ``mosaic report`` and
``mosaic study`` (:func:`report`, :func:`write_reports`, :func:`study`, exposed by :mod:`mosaic.api`).

Torch-free on purpose: this module imports only ``analysis`` and ``reports`` (lazily), so reports
run on a laptop without the training stack.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from mosaic.core.errors import MosaicError
from mosaic.core.progress import stage_lines

__all__ = ["ReportResult", "ShortDisplay", "StudyResult", "analyse_trace", "canonical_command", "render_report",
           "report", "report_output", "resolve_output", "study", "write_reports", "write_study"]

_PathLike = str | os.PathLike


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


def canonical_command(trace: Path, fmt: str, out: Path, images: bool, alpha: float, n_bootstrap: int,
                      n_permutations: int, seed: int, ci_level: float = 0.95) -> str:
    """The command as it would reproduce this report (recorded in the provenance)."""
    args = ["mosaic", "report", str(trace), "--format", fmt, "--out", str(out), "--alpha", repr(alpha),
            "--ci-level", repr(ci_level), "--bootstrap", str(n_bootstrap), "--permutations", str(n_permutations),
            "--seed", str(seed)]
    if not images:
        args.append("--no-images")
    return shlex.join(args)


def analyse_trace(trace, progress: Callable[[str], None], *, images: bool = True, command: str = "", results=None,
                  **settings):
    """Read a trace (a path or an :class:`analysis.Trace`), analyse it unless ``results`` are given, and
    build the report document (rendered by any format).

    ``settings`` go to :func:`analysis.analyze` (alpha, ci_level, n_bootstrap, n_permutations, seed).
    Returns ``(results, document)``.
    """
    progress("reading trace")
    import analysis
    from reports import ReportOptions, build_report

    data = trace if isinstance(trace, analysis.Trace) else analysis.read_trace(trace)
    if results is None:
        results = analysis.analyze(data, progress=lambda stage: progress(f"analysis: {stage}"), **settings)
    else:
        _check_same_trace(results, data)
    progress("building report" + (" with thumbnails" if images else ""))
    return results, build_report(results, data, ReportOptions(images=images, command=command))


def _check_same_trace(results, trace) -> None:
    """Results reported with another trace than theirs would mix two models' numbers: refuse."""
    recorded, sizes = results.trace_info.get("sha256"), results.trace_info.get("sizes")
    if recorded and trace.path is not None and trace.sha256 != recorded:
        raise MosaicError(f"trace={trace.path} is not the trace these results were computed from (sha256 "
                          f"{trace.sha256[:12]}…, the results record {str(recorded)[:12]}…): pass the trace they name")
    if sizes and dict(sizes) != dict(trace.sizes):
        raise MosaicError(f"the trace given has sizes {dict(trace.sizes)} but these results were computed on one with "
                          f"{dict(sizes)}: pass the trace they were computed from")


def render_report(document, fmt, path: Path, progress: Callable[[str], None]) -> None:
    """Render ``document`` in ``fmt`` and write it to ``path`` atomically."""
    from mosaic.core.diskspace import OUT_FIX
    from mosaic.core.fileio import write_text_atomic

    progress(f"rendering {fmt.name}")
    text = fmt.render(document)
    progress(f"writing {path.name}")
    write_text_atomic(path, text, fix=OUT_FIX)


def write_study(traces: list, outputs, *, fmt_name: Optional[str] = None, labels=None, command: str = "",
                progress: Callable[[str], None] | bool = False, **settings):
    """Run :func:`analysis.study` on ``traces`` once and write the report to each of ``outputs`` atomically.

    Each output's format is ``fmt_name``, else its suffix (html, md, json), else html. ``progress``:
    ``True`` for one line per stage on stderr, or a callable receiving each stage's name. Returns
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
    with stage_lines(progress) as stage:
        results = analysis.study(traces, labels=labels, progress=stage, **settings)
        stage("building report")
        document = build_study_report(results, command=command)
        for out, fmt in zip(outputs, formats):
            stage(f"writing {out.name}")
            write_text_atomic(out, fmt.render(document), fix=OUT_FIX)
    return results, outputs


class ShortDisplay:
    """``_repr_html_`` and a short ``__repr__`` from the class's ``_display()`` (an
    :class:`analysis.display.Display`, built only when shown: importing this module loads no analysis).

    A dataclass using it says ``@dataclass(repr=False)``, or its own ``__repr__`` replaces this one.
    """

    def _display(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return self._display().to_html()

    def __repr__(self) -> str:
        return self._display().to_text()


@dataclass(repr=False)
class ReportResult(ShortDisplay):
    """A written report: its path(s), the analysis (:class:`analysis.Results`) and the document.

    In a notebook it shows the files written with their sizes, the analysis settings and the
    warnings; never the report itself (open ``path`` in a browser, or display ``results``).
    """

    path: Path
    results: Any
    document: Any
    paths: list[Path] = field(default_factory=list)

    @property
    def n_warnings(self) -> int:
        return sum(len(b.rows) for b in self.document.section("warnings").tables())

    def _display(self):
        display = file_display("ReportResult", self.paths or [self.path])
        settings = getattr(self.results, "settings", {}) or {}
        display.fields({"trace": (getattr(self.results, "trace_info", {}) or {}).get("path") or "in memory",
                        **{key: settings.get(key) for key in ANALYSIS_SETTINGS}},
                       "analysis (result.results)")
        return display.lines("warnings", warning_lines(getattr(self.results, "warnings", None)), empty="none")


@dataclass(repr=False)
class StudyResult(ShortDisplay):
    """A written study report (``paths``, one per format) and the study's results.

    In a notebook it shows the files with their sizes, then the study's own display.
    """

    paths: list[Path]
    results: Any

    def _display(self):
        display = file_display("StudyResult", self.paths)
        if hasattr(self.results, "_display"):
            display.blocks += self.results._display().blocks
        return display


def file_display(title: str, paths: Sequence[Path]):
    """A :class:`analysis.display.Display` opening with the files written and their sizes."""
    from analysis.display import Display, format_bytes

    paths = [Path(p) for p in paths]
    display = Display(title, str(paths[0]) if paths else "")
    return display.fields({str(p): format_bytes(p.stat().st_size) if p.is_file() else "missing" for p in paths},
                          "files written")


def warning_lines(warnings) -> list[str]:
    """One line per row of ``Results.warnings``: where it arose, then its reason."""
    if warnings is None or not len(warnings):
        return []
    return [" · ".join(str(v) for v in (row.method, row.group, row.comparison) if v) + f": {row.reason}"
            for row in warnings.itertuples()]


# The analysis settings report() passes on to analysis.analyze, under analyze's own names.
ANALYSIS_SETTINGS = ("alpha", "ci_level", "n_bootstrap", "n_permutations", "seed")


def report(
    source,
    out: Optional[_PathLike] = None,
    format: Optional[str] = None,
    *,
    trace=None,
    images: bool = True,
    alpha: Optional[float] = None,
    ci_level: Optional[float] = None,
    n_bootstrap: Optional[int] = None,
    n_permutations: Optional[int] = None,
    seed: Optional[int] = None,
    progress: Callable[[str], None] | bool = False,
    command: Optional[str] = None,
) -> ReportResult:
    """Write the report of a trace (``format``: html, md or json; default from ``out``'s suffix).

    ``source`` is the path of a trace, an :class:`analysis.Trace` (analysed here, with the settings
    of :func:`analysis.analyze`: ``alpha``, ``ci_level``, ``n_bootstrap``, ``n_permutations``,
    ``seed``; ``None`` keeps analyze's default), or the :class:`analysis.Results` of an analysis
    already run (reported as they are, on the trace they record or ``trace=``).
    ``out`` is a file or an existing folder (default: ``report.<ext>`` next to the trace).
    ``progress``: ``True`` for one line per stage on stderr, or a callable receiving each stage's name.
    Every argument is checked before the trace is read; a bad one raises :class:`MosaicError`.
    """
    given = {name: value for name, value in (("alpha", alpha), ("ci_level", ci_level), ("n_bootstrap", n_bootstrap),
                                             ("n_permutations", n_permutations), ("seed", seed)) if value is not None}
    if not isinstance(images, bool):
        raise MosaicError(f"images must be True or False, got {images!r}")
    if not (isinstance(progress, bool) or callable(progress)):
        raise MosaicError(f"progress must be True, False or a function of one stage name, got {progress!r}")
    source, trace_path, results, settings = _report_source(source, trace, given)
    if out is None and trace_path is None:
        raise MosaicError("out= is required for a trace built in memory: name the report file or folder")
    fmt, path = resolve_output(trace_path or Path("."), Path(out) if out is not None else None, format)
    if command is None:
        # the command line that reproduces the report, where there is one: a file, and settings the CLI has
        reproducible = (trace_path is not None and set(settings) == set(ANALYSIS_SETTINGS)
                        and (results is None or _cli_reproduces(results.settings)))
        command = canonical_command(trace_path, fmt.name, path, images, **settings) if reproducible else ""
    results, document = _analyse_and_write(source, [(fmt, path)], progress, images=images, command=command,
                                           results=results, **({} if results is not None else settings))
    return ReportResult(path=path, results=results, document=document, paths=[path])


def _report_source(source, trace, given: Mapping[str, Any]):
    """``(trace or its path, the path or None, results or None, analysis settings)`` from report()'s
    arguments, each checked (the settings by :class:`analysis.settings.AnalysisSettings`, the one
    validation engine: a message names the setting, its constraint and the value)."""
    import analysis
    from analysis.settings import AnalysisSettings

    results = None
    if isinstance(source, analysis.Results):
        if given:
            raise MosaicError(f"{', '.join(f'{k}=' for k in given)} cannot change analysis.Results that are already "
                              f"computed: pass the trace instead, or rerun analysis.analyze with them")
        results, source = source, trace if trace is not None else source.trace_info.get("path")
        if source is None:
            raise MosaicError("these results come from a trace built in memory: pass it as report(results, out, trace=trace)")
        settings = {k: results.settings[k] for k in ANALYSIS_SETTINGS if k in results.settings}
    else:
        if trace is not None:
            raise MosaicError("trace= goes with analysis.Results as the first argument; a trace is the first argument itself")
        checked = AnalysisSettings(**given).to_dict()
        settings = {k: checked[k] for k in ANALYSIS_SETTINGS}
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
        if not source.is_file():
            raise MosaicError(f"trace {source} does not exist: check the path")
        return source, source, results, settings
    if isinstance(source, analysis.Trace):
        return source, source.path, results, settings
    raise MosaicError(f"report() needs a trace path, an analysis.Trace or analysis.Results, got {type(source).__name__}")


def _cli_reproduces(settings: Mapping[str, Any]) -> bool:
    """Whether ``mosaic report`` (which runs every method with its default options) reproduces these results."""
    from analysis.analyze import METHODS
    from analysis.settings import AnalysisSettings

    default = AnalysisSettings()
    return (set(settings.get("methods") or METHODS) == set(METHODS) and not settings.get("options")
            and settings.get("baseline", default.baseline) == default.baseline
            and tuple(settings.get("comparisons", default.comparisons)) == default.comparisons)


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
    results, document = _analyse_and_write(Path(trace), outputs, progress, images=images,
                                           command=command, **settings)
    paths = [path for _, path in outputs]
    return ReportResult(path=paths[0], results=results, document=document, paths=paths)


def _analyse_and_write(trace, outputs: Sequence[tuple[Any, Path]], progress: Callable[[str], None] | bool, *,
                       images: bool, command: str, results=None, **settings):
    """Analyse ``trace`` once (unless ``results`` are given) and write its report in each (format, path) of
    ``outputs``; a stage's progress line ends in "failed" when the stage does. Returns ``(results, document)``."""
    with stage_lines(progress) as stage:
        results, document = analyse_trace(trace, stage, images=images, command=command, results=results, **settings)
        for fmt, path in outputs:
            render_report(document, fmt, path, stage)
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
    n_bootstrap: int = 1000,
    seed: int = 0,
    df: str = "satterthwaite",
    progress: Callable[[str], None] | bool = False,
    command: Optional[str] = None,
) -> StudyResult:
    """Compare several traces: seeds of one label as replicates, labels side by side (:func:`analysis.study`).

    ``labels``: ``["NAME=GLOB", ...]`` (or ``{NAME: GLOB}``) over the trace paths; default: the labels
    the traces record. ``out``'s suffix picks the format unless ``format`` is given. The other
    keywords are :func:`analysis.study`'s (``df`` is its ``df_method``). ``progress``: ``True`` for one
    line per stage on stderr, or a callable receiving each stage's name.
    """
    import shlex

    from analysis.stats.metaanalysis import DF_METHODS
    from analysis.studies.runs import STUDY_QUANTITIES
    from mosaic.core.fileio import ensure_writable_dir
    from mosaic.core.settings import check_bounds, check_choice

    for path in traces:
        if not Path(path).is_file():
            raise MosaicError(f"trace {path} does not exist: check the path")
    check_bounds(ci_level, (0, 1, "()"), "ci_level")
    check_bounds(alpha, (0, 1, "()"), "alpha")
    check_bounds(n_bootstrap, (100, None), "n_bootstrap")
    check_choice(df, DF_METHODS, "df")
    check_choice(rank_by, STUDY_QUANTITIES, "rank_by")
    out = Path(out)
    ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    if isinstance(labels, Mapping):
        labels = [f"{name}={pattern}" for name, pattern in labels.items()]
    if command is None:
        command = shlex.join(["mosaic", "study", *map(str, traces), "--out", str(out)]
                             + [a for lab in (labels or []) for a in ("--label", lab)])
    results, paths = write_study([Path(t) for t in traces], out, fmt_name=format, labels=list(labels) if labels else None,
                                 command=command, rank_by=rank_by, alpha=alpha, ci_level=ci_level, n_bootstrap=n_bootstrap,
                                 seed=seed, df_method=df, progress=progress)
    return StudyResult(paths=paths, results=results)
