"""Reports: analysis results rendered as one self-contained HTML file, Markdown or JSON.

Torch-free. :func:`render` is the one call::

    >>> import analysis, reports
    >>> trace = analysis.read_trace("trace.h5")
    >>> results = analysis.analyze(trace, seed=0)
    >>> html = reports.render(results, trace, "html")

All formats render the same :class:`reports.document.Report` (built once by
:func:`reports.build.build_report`), so they show the same numbers, rounded by one rule
(:mod:`reports.numbers`). Formats are a registry (:data:`FORMATS`): adding one is adding an
entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mosaic.core.errors import MosaicError
from reports.build import build_report
from reports.context import ReportOptions
from reports.document import Report


@dataclass(frozen=True)
class ReportFormat:
    """A way to write a :class:`Report`: its renderer and the file suffix it goes with."""

    name: str
    suffix: str
    render: Callable[[Report], str]
    description: str


def _html(report: Report) -> str:
    from reports.formats.html import render_html

    return render_html(report)


def _markdown(report: Report) -> str:
    from reports.formats.markdown import render_markdown

    return render_markdown(report)


def _json(report: Report) -> str:
    from reports.formats.jsonfmt import render_json

    return render_json(report)


FORMATS: dict[str, ReportFormat] = {
    f.name: f
    for f in (
        ReportFormat("html", ".html", _html, "one self-contained page with figures (default)"),
        ReportFormat("md", ".md", _markdown, "Markdown with the same tables, without figures"),
        ReportFormat("json", ".json", _json, "the shown tables plus the full analysis, for scripts"),
    )
}


def get_format(name: str) -> ReportFormat:
    """The format called ``name``; a clear error lists the valid ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise MosaicError(f"unknown report format {name!r}: use one of {', '.join(FORMATS)}") from None


def render(results, trace, format: str = "html", options: ReportOptions | None = None) -> str:
    """Render ``results`` (from :func:`analysis.analyze`) on ``trace`` in ``format`` (html, md, json)."""
    fmt = get_format(format)
    return fmt.render(build_report(results, trace, options))


__all__ = ["FORMATS", "Report", "ReportFormat", "ReportOptions", "build_report", "get_format", "render"]
