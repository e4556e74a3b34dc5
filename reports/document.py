"""The format-neutral report: sections made of blocks (text, tables, figures, ranked lists).

:func:`reports.build.build_report` fills a :class:`Report` once; each format
(:mod:`reports.html`, :mod:`reports.markdown`, :mod:`reports.jsonfmt`) only writes it out. That
is what keeps the three formats showing the same numbers: a :class:`Table` holds values already
rounded by :mod:`reports.numbers`, and every renderer prints them with
:func:`reports.numbers.value_text`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

import pandas as pd

from reports.numbers import Rule, display_value, rule_for

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


@dataclass(frozen=True)
class Column:
    """One table column: where its values come from, how they are rounded, what it is called."""

    key: str
    label: str | None = None
    rule: Rule | None = None
    source: str | None = None  # column of the source frame; defaults to ``key``
    help: str = ""

    @property
    def title(self) -> str:
        return self.label or self.key

    @property
    def display_rule(self) -> Rule:
        return self.rule or rule_for(self.key)


@dataclass
class Table:
    """Rows of display values (already rounded), one dict per row keyed by column key."""

    id: str
    caption: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    note: str = ""

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, id: str, caption: str, columns: Sequence[Column | str] | None = None,
                   note: str = "", max_rows: int | None = None) -> "Table":
        """Round ``frame`` for display; with no ``columns``, show every column (preferred first)."""
        if columns is None:
            present = list(frame.columns)
            ordered = [c for c in PREFERRED_ORDER if c in present] + [c for c in present if c not in PREFERRED_ORDER]
            columns = [Column(str(c)) for c in ordered]
        cols = [c if isinstance(c, Column) else Column(str(c)) for c in columns]
        cols = [c for c in cols if (c.source or c.key) in frame.columns]
        source = frame if max_rows is None else frame.head(max_rows)
        rows = []
        for record in source.to_dict(orient="records"):
            rows.append({c.key: display_value(record.get(c.source or c.key), c.display_rule) for c in cols})
        if max_rows is not None and len(frame) > max_rows:
            extra = f"Showing the first {max_rows} of {len(frame)} rows; the JSON report holds all of them."
            note = f"{note} {extra}".strip()
        return cls(id=id, caption=caption, columns=cols, rows=[_clean(r) for r in rows], note=note)

    def column_values(self, key: str) -> list[Any]:
        return [row.get(key) for row in self.rows]

    def to_records(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.rows]


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif value is pd.NA or value is pd.NaT:
            value = None
        out[key] = value
    return out


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


Block = Union[Paragraph, BulletList, KeyValues, Table, Figure, RankedLists]


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
