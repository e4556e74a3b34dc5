"""Assemble the format-neutral :class:`reports.document.Report` from analysis results and a trace.

The report reads top-down: a summary (the ranking of groups and families with effect sizes and
intervals, and the headline retrieval numbers), then one section per method (in
:data:`reports.methods.METHODS` order, each labelled as the paper's or this project's
extension), example ranked lists, the methods text generated from the settings, the warnings,
and the provenance footer. Sections are a registry (:data:`SECTION_BUILDERS`), so adding one
is adding a function.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd

from analysis.status import OK
from analysis.tables import table_spec
from reports import decomposition, figures
from reports.columns import spec_columns
from reports.document import Column, Report, Section, Table
from reports.images import THUMBNAIL_SIZE
from reports.provenance import report_metadata
from reports.ranked import RankedListSettings
from reports.sections.appendix import (
    build_methods,
    build_provenance,
    build_ranked_lists_section,
    build_retrieval,
    build_warnings,
)
from reports.sections.method_sections import (
    build_config_glm,
    build_config_surrogate,
    build_config_ttest,
    build_paired,
    build_query_glm,
    build_query_surrogate,
    build_ranking,
    other_method_sections,
)
from reports.sections.summary import build_summary


@dataclass(frozen=True)
class ReportOptions:
    """How a report is rendered (not what is analysed: that is :class:`analysis.Results.settings`).

    Attributes
    ----------
    images : embed thumbnails of the ranked-list images (needs the dataset images on disk).
    ranked : which groups / how many queries / how many neighbours the ranked lists show.
    thumbnail_size : (width, height) of each embedded thumbnail in pixels.
    max_table_rows : cut long tables in HTML / Markdown (the JSON keeps every row); None = all.
    command : the command line that produced the report, recorded in the provenance.
    created : creation timestamp (ISO 8601); None = now, or ``SOURCE_DATE_EPOCH`` when set.
    title : report title; None = "Attribute reliance report: <dataset>".
    """

    images: bool = True
    ranked: RankedListSettings = field(default_factory=RankedListSettings)
    thumbnail_size: tuple[int, int] = THUMBNAIL_SIZE
    max_table_rows: int | None = None
    command: str = ""
    created: str | None = None
    title: str | None = None


def creation_time(explicit: str | None = None) -> str:
    """ISO timestamp of now (UTC, seconds), or of ``SOURCE_DATE_EPOCH`` for reproducible builds."""
    if explicit:
        return explicit
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch else _dt.datetime.now(_dt.timezone.utc)
    return moment.replace(microsecond=0).isoformat()


@dataclass
class BuildContext:
    """What every section builder may read, plus the report-level warnings they add."""

    results: Any
    trace: Any
    options: ReportOptions
    group_order: list[str]
    created: str = ""
    notes: list[dict[str, str]] = field(default_factory=list)

    def raw_table(self, name: str) -> pd.DataFrame | None:
        frame = self.results.tables.get(name)
        return frame if frame is not None and len(frame.columns) else None

    def table(self, name: str) -> pd.DataFrame | None:
        """The analysis table ``name``, or None when it is absent or none of its rows was tested."""
        frame = self.raw_table(name)
        if frame is None or not len(frame):
            return None
        if "status" in frame and not (frame["status"].astype(str) == OK).any():
            return None
        return frame

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.results.settings or {})

    def note(self, method: str, reason: str, group: str = "", comparison: str = "") -> None:
        self.notes.append({"method": method, "group": group, "comparison": comparison, "reason": reason})

    def frame_table(self, name: str, caption: str | None = None, *, columns: Sequence[Column | str] | None = None,
                    note: str = "", raw: bool = False) -> Table | None:
        """The analysis table ``name`` as shown: columns, labels, caption and test from its spec.

        ``raw`` shows it even when none of its rows was tested (the rows say why).
        """
        frame = self.raw_table(name) if raw else self.table(name)
        if frame is None or not len(frame):
            return None
        spec = table_spec(name)
        if spec is not None:
            if spec.test and "test" not in frame:
                # Each row says which test produced its p-value, so a table copied out of context still does.
                frame = frame.assign(test=spec.test)
            columns = columns if columns is not None else spec_columns(spec, frame)
            caption = caption if caption is not None else spec.caption
        return Table.from_frame(frame, id=f"table-{name.replace('_', '-')}", caption=caption or name,
                                columns=columns, note=note, max_rows=self.options.max_table_rows)


# Order is the order in the report; a builder returns one section or a list of them (possibly
# empty). The warnings section is built after every other section (they add notes to it) and
# placed where this list puts it.
SECTION_BUILDERS: tuple[tuple[str, Callable[[BuildContext], Section | list[Section]]], ...] = (
    ("summary", build_summary),
    ("method-config-glm", build_config_glm),
    ("method-config-surrogate", build_config_surrogate),
    ("method-config-ttest", build_config_ttest),
    ("method-paired", build_paired),
    ("method-query-glm", build_query_glm),
    ("method-query-surrogate", build_query_surrogate),
    (decomposition.SECTION_ID, decomposition.build_decomposition),
    ("method-other", other_method_sections),
    ("method-ranking", build_ranking),
    ("retrieval", build_retrieval),
    ("ranked-lists", build_ranked_lists_section),
    ("methods", build_methods),
    ("warnings", build_warnings),
    ("provenance", build_provenance),
)


def build_report(results, trace, options: ReportOptions | None = None) -> Report:
    """The report of ``results`` (from :func:`analysis.analyze`) on ``trace``, ready to render."""
    options = options or ReportOptions()
    order = figures.group_order(results.tables.get("ranking_groups"), trace.schema.group_names)
    created = creation_time(options.created)
    ctx = BuildContext(results=results, trace=trace, options=options, group_order=order, created=created)
    built: dict[str, Section | list[Section]] = {}
    for key, builder in SECTION_BUILDERS:
        if key != "warnings":
            built[key] = builder(ctx)
    built["warnings"] = build_warnings(ctx)
    sections = [s for key, _ in SECTION_BUILDERS for s in
                (built[key] if isinstance(built[key], list) else [built[key]])]
    dataset = (trace.dataset or {}).get("name") or "unnamed dataset"
    metadata = report_metadata(trace, results, options.command, created)
    return Report(
        title=options.title or f"Attribute reliance report: {dataset}",
        subtitle=(f"Which semantic attributes the model relies on, from trace `{metadata['trace']['file']}` "
                  f"(sha256 {str(metadata['trace']['sha256'])[:12]}…)."),
        sections=sections,
        metadata=metadata,
        analysis_json=results.to_json(),
    )
