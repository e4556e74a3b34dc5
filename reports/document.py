"""The format-neutral report: sections made of blocks (text, tables, figures, ranked lists).

:func:`reports.build.build_report` fills a :class:`Report` once; each format
(:mod:`reports.formats.html`, :mod:`reports.formats.markdown`, :mod:`reports.formats.jsonfmt`) only writes it out. That
is what keeps the three formats showing the same numbers: a :class:`Table` holds its cells'
text, written once by :mod:`reports.numbers`, and every renderer prints that text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np
import pandas as pd

from reports.numbers import (
    COUNT,
    P_VALUE,
    PERCENT,
    RANK,
    Rule,
    count_text,
    finite_number,
    interval_text,
    number_text,
    p_text,
    rank_text,
    rule_for,
)

# Columns shown first, in this order, when a table is built from an analysis DataFrame; the
# rest follow in the frame's own order. Identifiers, then the effect and its interval, then
# the test, then the bookkeeping.
PREFERRED_ORDER = (
    "rank", "model", "term", "group", "family", "condition", "kind", "comparison", "feature", "state", "metric",
    "method", "level", "target", "estimate", "coef", "effect", "diff", "delta_map", "mean_delta_ap", "delta_rank1",
    "score", "ci_low", "ci_high", "se",
    "statistic", "effect_size", "cohens_d", "p", "p_value", "p_raw", "p_adj", "p_holm", "p_bh",
    "correction", "test", "n", "n_pairs", "n_queries", "n_ids", "status", "reason",
)


# Statuses whose rows have no estimate: the row collapses to one line that says why.
COLLAPSED_STATUSES = frozenset({"not estimable", "unavailable"})
STATUS_COLUMNS = ("status", "reason")
# Tables with more rows than this are folded (``<details>``) with their row count in view.
FOLD_ROWS = 12

_RULE_KINDS = {id(P_VALUE): "p", id(COUNT): "count", id(RANK): "rank", id(PERCENT): "percent"}
# Cell kinds whose text is one number: every format aligns them to the right.
NUMERIC_KINDS = frozenset({"number", "count", "rank", "percent", "p"})


@dataclass(frozen=True)
class Column:
    """One table column: where its values come from, how they are written, what it is called.

    ``kind`` says how a cell is written (:mod:`reports.numbers`): ``interval`` (the estimate in
    ``source`` with the interval ``low``–``high`` in one cell), ``rank_interval`` (the same for a rank), ``p``, ``count``, ``rank``,
    ``percent`` (a fraction shown ×100), ``number`` or ``text``; empty = from ``rule``, else from
    the column name. ``unit`` is written in the header.
    """

    key: str
    label: str | None = None
    rule: Rule | None = None
    source: str | None = None  # column of the source frame; defaults to ``key``
    help: str = ""
    kind: str = ""
    low: str | None = None
    high: str | None = None
    unit: str = ""
    decimals: int | None = None  # fixed decimals of a ``number`` cell (default: three significant digits)

    @property
    def title(self) -> str:
        base = self.label or self.key
        return f"{base} ({self.unit})" if self.unit and self.unit not in base else base

    @property
    def display_rule(self) -> Rule:
        return self.rule or rule_for(self.key)

    @property
    def cell_kind(self) -> str:
        if self.kind:
            return self.kind
        if self.low and self.high:
            return "interval"
        return _RULE_KINDS.get(id(self.display_rule), "number")

    def text(self, record: Mapping[str, Any]) -> str | None:
        """The cell's text for one source row (None: nothing to show)."""
        value = record.get(self.source or self.key)
        kind = self.cell_kind
        if kind == "interval":
            return interval_text(None if _missing(value) else value, record.get(self.low), record.get(self.high))
        if kind == "rank_interval":
            rank, low, high = rank_text(value), rank_text(record.get(self.low)), rank_text(record.get(self.high))
            return rank if low is None or high is None else f"{rank or ''} [{low}, {high}]".strip()
        if _missing(value):
            return None
        if isinstance(value, str) or kind == "text":
            return str(value)
        if isinstance(value, (bool, np.bool_)):
            return "yes" if value else "no"
        if kind == "p":
            return p_text(value)
        if kind == "count":
            return count_text(value)
        if kind == "rank":
            return rank_text(value)
        if kind == "percent":
            return number_text(float(value) * 100, 1)
        return number_text(value, self.decimals)

    def sort_value(self, record: Mapping[str, Any]) -> float | None:
        value = record.get(self.source or self.key)
        return None if isinstance(value, np.bool_) else finite_number(value)


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _csv(frame: pd.DataFrame) -> str:
    """The table's source rows at full precision (every column, not only the shown ones)."""
    return frame.to_csv(index=False, float_format="%.12g", lineterminator="\n")


@dataclass
class Table:
    """A table as shown: one dict of cell texts per row, keyed by column key.

    ``collapsed[i]`` is the one line that replaces row ``i`` when it could not be estimated (None
    for a normal row); ``sort_keys`` the numbers behind the cells (for sorting in the page);
    ``csv`` the full-precision rows behind the table; ``fold``: shown folded (``<details>``).
    """

    id: str
    caption: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    note: str = ""
    collapsed: list[str | None] = field(default_factory=list)
    sort_keys: list[dict[str, float | None]] = field(default_factory=list)
    csv: str = ""
    fold: bool = False
    n_rows: int = 0

    def __post_init__(self) -> None:
        # one entry per row, so that every renderer can zip them with the rows
        self.collapsed = self.collapsed or [None] * len(self.rows)
        self.sort_keys = self.sort_keys or [{} for _ in self.rows]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, id: str, caption: str, columns: Sequence[Column | str] | None = None,
                   note: str = "", max_rows: int | None = None, fold: bool | None = None) -> "Table":
        """Write ``frame``'s cells; with no ``columns``, show every column (preferred first).

        Rows whose ``status`` says they could not be estimated collapse to one line with the reason;
        the status and reason columns themselves are not shown (a not-tested row's p cells say so).
        """
        if columns is None:
            present = list(frame.columns)
            ordered = [c for c in PREFERRED_ORDER if c in present] + [c for c in present if c not in PREFERRED_ORDER]
            columns = [Column(str(c)) for c in ordered]
        cols = [c if isinstance(c, Column) else Column(str(c)) for c in columns]
        cols = [c for c in cols if (c.source or c.key) in frame.columns]
        has_status = "status" in frame.columns
        if has_status:
            cols = [c for c in cols if c.key not in STATUS_COLUMNS]
        source = frame if max_rows is None else frame.head(max_rows)
        rows, collapsed, sort_keys = [], [], []
        for record in source.to_dict(orient="records"):
            status = str(record.get("status") or "ok") if has_status else "ok"
            row = {c.key: c.text(record) for c in cols}
            if status != "ok" and status not in COLLAPSED_STATUSES:
                for c in cols:
                    if c.cell_kind == "p" and row[c.key] is None:
                        row[c.key] = status
            rows.append(row)
            sort_keys.append({c.key: c.sort_value(record) for c in cols})
            collapsed.append(_collapsed_line(record, cols, status) if status in COLLAPSED_STATUSES else None)
        if max_rows is not None and len(frame) > max_rows:
            extra = f"Showing the first {max_rows} of {len(frame)} rows; the CSV and the JSON report hold all of them."
            note = f"{note} {extra}".strip()
        return cls(id=id, caption=caption, columns=cols, rows=rows, note=note, collapsed=collapsed,
                   sort_keys=sort_keys, csv=_csv(frame), n_rows=len(frame),
                   fold=(len(frame) > FOLD_ROWS) if fold is None else fold)

    def column_values(self, key: str) -> list[Any]:
        return [row.get(key) for row in self.rows]

    def to_records(self) -> list[dict[str, Any]]:
        return [dict(row) if line is None else {**row, "collapsed": line}
                for row, line in zip(self.rows, self.collapsed)]


def _collapsed_line(record: Mapping[str, Any], cols: Sequence[Column], status: str) -> str:
    """``g03 · drop — not estimable: no discordant identity``: the row's keys, then why it is empty."""
    keys = list(dict.fromkeys(str(record.get(c.source or c.key)) for c in cols
                              if isinstance(record.get(c.source or c.key), str) and record.get(c.source or c.key)))[:3]
    reason = str(record.get("reason") or "").strip()
    return " · ".join(keys) + f" — {status}" + (f": {reason}" if reason else "")


@dataclass
class Paragraph:
    """Plain text; ``**bold**`` spans are the only markup."""

    text: str


@dataclass
class BulletList:
    items: list[str]


@dataclass
class KeyValues:
    """A two-column definition table (settings, provenance)."""

    id: str
    caption: str
    items: list[tuple[str, str]]


@dataclass
class Figure:
    id: str
    caption: str
    svg: str


@dataclass
class RankedItem:
    """One gallery image of a ranked list."""

    index: int
    pid: int
    camid: int
    outcome: str  # "hit" | "miss" | "ignored" (same identity, same camera: excluded from scoring)
    distance: float | None
    thumbnail: str | None = None  # data URI, or None when images are off or unreadable


@dataclass
class RankedRow:
    """A query and its top-k gallery images under one condition."""

    condition: str
    ap: float | None
    items: list[RankedItem]


@dataclass
class RankedQuery:
    group: str
    query_index: int
    pid: int
    camid: int
    path: str
    ap_loss: float | None
    thumbnail: str | None
    rows: list[RankedRow]


@dataclass
class RankedLists:
    id: str
    caption: str
    queries: list[RankedQuery]


@dataclass
class Findings:
    """The sentences that open the report (:class:`reports.sections.findings.Finding`), beside one figure."""

    id: str
    items: list[Any]
    figure: Figure | None = None


Block = Union[Paragraph, BulletList, KeyValues, Table, Figure, RankedLists, Findings]


@dataclass
class Section:
    """A titled part of the report; ``origin`` says whose method it is (``paper`` or ``extension``)."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    origin: str | None = None

    def add(self, *blocks: Block) -> "Section":
        self.blocks.extend(blocks)
        return self

    def add_all(self, *blocks: Block | None) -> "Section":
        """Add the blocks that exist: a figure or table builder returns None when it has nothing to show."""
        self.blocks.extend(b for b in blocks if b is not None)
        return self

    def tables(self) -> Iterable[Table]:
        return (b for b in self.blocks if isinstance(b, Table))


ORIGIN_LABELS = {
    "paper": "as in the MoSAIC-ReID paper",
    "extension": "this project's extension (not in the paper)",
    "mixed": "paper and extension",
}


@dataclass
class Report:
    """Everything a renderer needs. ``metadata`` is deterministic except ``created``."""

    title: str
    subtitle: str
    sections: list[Section]
    metadata: dict[str, Any]
    analysis_json: str | None = None  # Results.to_json(): the full-precision numbers

    def section(self, id: str) -> Section:
        for s in self.sections:
            if s.id == id:
                return s
        raise KeyError(id)

    def tables(self) -> Iterable[Table]:
        for s in self.sections:
            yield from s.tables()
