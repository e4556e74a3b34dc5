"""Result tables as data: what every table of :class:`analysis.Results` holds, column by column.

A :class:`TableSpec` is the contract between a method that produces a table and everything that
reads it -- the report (labels, captions, which columns it shows first), the JSON documentation
(``docs/report-json.md`` is generated from the specs by :mod:`analysis.tables.docs`) and the method
itself: :func:`validate_table` runs on every frame before it enters the results, so a column
that is produced but not specified, or specified but missing, is a bug found at once.

The built-in specs live in :mod:`analysis.tables.specs`, :mod:`analysis.tables.specs_query`,
:mod:`analysis.tables.specs_study` and :mod:`analysis.tables.specs_audit` (registered as the package
loads; this module imports none of them); :func:`register_table` adds one (e.g. the tables of an
analysis method added from outside this package).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

__all__ = [
    "ColumnSpec",
    "TableSpec",
    "TableContractError",
    "TABLES",
    "register_table",
    "table_spec",
    "validate_table",
    "in_table_units",
    "columns_markdown",
    "DTYPES",
    "ROLES",
]

# dtype -> numpy kinds a column of that dtype may have ("O" covers str and object columns)
DTYPES: dict[str, str] = {"str": "OUS", "float": "fiu", "int": "iu", "bool": "b"}
ROLES = ("key", "estimate", "interval", "test", "correction", "decision", "count", "status", "")
_PLACEHOLDER = re.compile(r"<[^>]+>")


class TableContractError(RuntimeError):
    """A method produced a frame that breaks its table's spec: a bug in the method, not user input."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column: name, dtype (``str`` | ``float`` | ``int`` | ``bool``), what it means.

    ``name`` may hold ``<placeholders>`` (``rank:<method>``, ``enabled:<group>``): the spec then
    covers every column the pattern matches. ``label`` is the report's header (``None``: the
    name), ``unit`` the unit of its numbers, ``role`` what it is for (:data:`ROLES`: corrections
    are the multiple-testing adjusted p-values, decisions the ``reject_*`` columns).
    ``required=False`` columns appear only on some traces; ``hidden`` ones are repeated on every
    row and left out of the report's table (the JSON's ``analysis`` part keeps them).

    ``scale`` converts the method's own unit to the table's: the methods compute retrieval rates
    (AP, mAP, rank-1) as fractions, and the tables of :class:`analysis.Results` hold them in percent
    and their changes in percentage points (``unit="pp"``, ``scale=100``), so ΔmAP has one unit in
    the API, the reports and the docs. :func:`in_table_units` applies it once, when the results are
    assembled; tests, p-values and every other column are unchanged by it.
    """

    name: str
    dtype: str
    description: str
    label: str | None = None
    unit: str = ""
    role: str = ""
    required: bool = True
    hidden: bool = False
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.scale != 1.0 and self.dtype != "float":
            raise ValueError(f"column {self.name!r}: only float columns can be rescaled")
        if self.dtype not in DTYPES:
            raise ValueError(f"column {self.name!r}: dtype {self.dtype!r} is not one of {sorted(DTYPES)}")
        if self.role not in ROLES:
            raise ValueError(f"column {self.name!r}: role {self.role!r} is not one of {ROLES}")

    @property
    def is_pattern(self) -> bool:
        return bool(_PLACEHOLDER.search(self.name))

    def matches(self, column: str) -> bool:
        if not self.is_pattern:
            return column == self.name
        parts = _PLACEHOLDER.split(self.name)
        return re.fullmatch(".+".join(re.escape(p) for p in parts), column) is not None


@dataclass(frozen=True)
class TableSpec:
    """One result table: who makes it, its columns, and how its tests are made.

    ``resamples`` names the unit every interval and p-value resamples (``"identity"``; empty for
    a descriptive table), ``test`` the test behind its ``p`` column (the report writes it on each
    row), ``family_keys`` the columns whose values split the rows into families of tests for the
    corrections (``outside_families``: ``(column, value)`` pairs of rows that carry a p but join no
    family, such as a GLM's intercept), ``shown_first`` the columns the report shows first (the rest follow in the
    frame's order), ``caption`` the report's caption.
    """

    name: str
    method: str
    description: str
    columns: tuple[ColumnSpec, ...]
    resamples: str = ""
    test: str = ""
    family_keys: tuple[str, ...] = ()
    outside_families: tuple[tuple[str, str], ...] = ()
    shown_first: tuple[str, ...] = ()
    caption: str = ""

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"table {self.name!r}: columns {duplicated} are specified twice")

    def column(self, name: str) -> ColumnSpec | None:
        """The spec of column ``name`` (a pattern spec when a pattern matches it), or None."""
        exact = next((c for c in self.columns if c.name == name), None)
        return exact or next((c for c in self.columns if c.is_pattern and c.matches(name)), None)

    def names(self, role: str) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.role == role)

    @property
    def corrections(self) -> tuple[str, ...]:
        return self.names("correction")

    @property
    def decisions(self) -> tuple[str, ...]:
        return self.names("decision")

    @property
    def hidden(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns if c.hidden)

    def display_columns(self, frame: pd.DataFrame) -> list[str]:
        """The frame's columns as the report shows them: ``shown_first``, then the rest, hidden left out."""
        first = [c for c in self.shown_first if c in frame.columns or c == "test"]
        rest = [str(c) for c in frame.columns if c not in first and c not in self.hidden]
        return first + rest


TABLES: dict[str, TableSpec] = {}


def register_table(spec: TableSpec, *, replace: bool = False) -> TableSpec:
    """Add ``spec`` to :data:`TABLES` (a second spec of one name is an error unless ``replace``)."""
    if spec.name in TABLES and not replace and TABLES[spec.name] != spec:
        raise ValueError(f"a table called {spec.name!r} is already registered (by method {TABLES[spec.name].method!r})")
    TABLES[spec.name] = spec
    return spec


def table_spec(name: str) -> TableSpec | None:
    return TABLES.get(name)


def _dtype_fits(column: ColumnSpec, series: pd.Series) -> bool:
    if series.isna().all():
        return True  # an all-missing column has whatever dtype pandas gave it
    kind = series.dtype.kind
    if column.dtype == "str":
        return kind in DTYPES["str"] or isinstance(series.dtype, (pd.StringDtype, pd.CategoricalDtype))
    if column.dtype == "int" and kind == "f":
        return True  # an integer count with missing rows is stored as float
    if column.dtype == "bool" and kind == "O":
        return series.dropna().map(type).isin((bool,)).all() or series.dropna().isin((True, False)).all()
    return kind in DTYPES[column.dtype]


def validate_table(name: str, frame: pd.DataFrame, *, method: str = "") -> pd.DataFrame:
    """Check ``frame`` against the spec of table ``name``; returns it unchanged.

    Raises :class:`TableContractError` naming the table, the method and every offending column:
    a table without a spec, a column not in the spec, a required column missing, a wrong dtype.
    """
    spec = TABLES.get(name)
    who = f" (method {method!r})" if method else ""
    if spec is None:
        raise TableContractError(f"table {name!r}{who} has no TableSpec: register one with analysis.tables.registry.register_table")
    if not len(frame) and not len(frame.columns):
        return frame  # nothing to compare (e.g. no pair of labels to contrast)
    problems = []
    columns = [str(c) for c in frame.columns]
    unknown = [c for c in columns if spec.column(c) is None]
    if unknown:
        problems.append(f"columns not in its spec: {unknown}")
    missing = [c.name for c in spec.columns if c.required and not any(c.matches(x) for x in columns)]
    if missing:
        problems.append(f"required columns missing: {missing}")
    if len(frame):
        wrong = [f"{c} is {frame[c].dtype}, spec says {spec.column(c).dtype}" for c in columns
                 if spec.column(c) is not None and not _dtype_fits(spec.column(c), frame[c])]
        if wrong:
            problems.append("wrong dtypes: " + "; ".join(wrong))
    if problems:
        raise TableContractError(f"table {name!r}{who} breaks its spec: " + " | ".join(problems))
    return frame


def in_table_units(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column its spec rescales (:attr:`ColumnSpec.scale`) in the table's unit.

    A copy; a table without a spec, or without rescaled columns, comes back as it is.
    """
    spec = TABLES.get(name)
    if spec is None:
        return frame
    scaled = {str(c): spec.column(str(c)).scale for c in frame.columns
              if spec.column(str(c)) is not None and spec.column(str(c)).scale != 1.0}
    if not scaled:
        return frame
    return frame.assign(**{c: frame[c].astype(float) * factor for c, factor in scaled.items()})


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def columns_markdown(names: Iterable[str] | None = None) -> str:
    """The column reference of ``docs/report-json.md``: one heading and table per spec."""
    out = []
    for name in names if names is not None else TABLES:
        spec = TABLES[name]
        out.append(f"### `{spec.name}`\n")
        facts = [f"method `{spec.method}`"]
        if spec.resamples:
            facts.append(f"resampling unit: {spec.resamples}")
        if spec.test:
            facts.append(f"test: {spec.test}")
        if spec.corrections:
            facts.append("families of tests: " + (" × ".join(f"one per `{k}`" for k in spec.family_keys)
                                                  if spec.family_keys else "the whole table"))
        for column, value in spec.outside_families:
            facts.append(f"rows with `{column}` = `{value}` join no family")
        out.append(_cell(spec.description) + "\n")
        out.append("(" + "; ".join(facts) + ")\n")
        out.append("| column | dtype | unit | report label | meaning |")
        out.append("|---|---|---|---|---|")
        for c in spec.columns:
            flags = [] if c.required else ["optional"]
            if c.hidden:
                flags.append("not shown in the report")
            meaning = _cell(c.description) + (f" ({', '.join(flags)})" if flags else "")
            out.append(f"| `{c.name}` | {c.dtype} | {_cell(c.unit)} | {_cell(c.label or '')} | {meaning} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
