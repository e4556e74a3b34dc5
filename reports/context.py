"""What every section builder of the report reads: the rendering options and the build context.

Kept apart from :mod:`reports.build` (which lists the sections in order) so that the sections
import this module and the builder imports the sections, never the other way round.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from analysis.stats.status import OK
from analysis.tables.registry import table_spec
from reports.document import Column, Table
from reports.figures.images import THUMBNAIL_SIZE
from reports.figures.ranked import RankedListSettings
from reports.formats.columns import hidden_note, spec_columns

__all__ = ["BuildContext", "ReportOptions", "creation_time"]


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
                    note: str = "", raw: bool = False, fold: bool | None = None) -> Table | None:
        """The analysis table ``name`` as shown: columns, labels, caption and test from its spec.

        ``raw`` shows it even when none of its rows was tested (the rows say why). The test behind
        the p-values is named in the note (and on every row of the CSV), the unit resampled too.
        """
        frame = self.raw_table(name) if raw else self.table(name)
        if frame is None or not len(frame):
            return None
        spec = table_spec(name)
        if spec is not None:
            if spec.test and "test" not in frame:
                # Each row says which test produced its p-value, so a table copied out of context still does.
                frame = frame.assign(test=spec.test)
            columns = columns if columns is not None else spec_columns(spec, frame, self.settings.get("ci_level", 0.95))
            caption = caption if caption is not None else spec.caption
            facts = [f"Test: {spec.test}." if spec.test else "", hidden_note(frame, list(columns))]
            note = " ".join(x for x in (note, *facts) if x)
        return Table.from_frame(frame, id=f"table-{name.replace('_', '-')}", caption=caption or name,
                                columns=columns, note=note, max_rows=self.options.max_table_rows, fold=fold)
