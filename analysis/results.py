"""The outcome of :func:`analysis.analyze`: tidy tables, the settings that made them, warnings.

Sign convention, everywhere: a *delta* is ``condition - baseline`` (the baseline is the
``oracle`` condition), so a group the model relies on has a **negative** ``delta_map`` /
``delta_rank1`` when it is dropped or routed counterfactually. Rankings put the group with the
largest loss first (rank 1).

Every row of a test table carries ``status`` (``"ok"`` | ``"not tested"`` | ``"not estimable"``,
and ``"unavailable"`` where the trace lacks the conditions a decomposition needs) and ``reason``
(empty when ok). A row that is not ok keeps NaN in its p-value, and NaN p-values
never enter the multiple-testing corrections (:mod:`analysis.corrections`).

What each table holds -- its columns, dtypes, units, the unit its tests resample, its
corrections, decisions and families of tests -- is data: the :class:`analysis.tables.TableSpec`
of that name in :data:`analysis.tables.TABLES` (listed in ``docs/report-json.md``, generated from
them). A table is absent when its method did not run.

``Results.warnings`` has columns ``method``, ``group``, ``comparison``, ``reason``: one row per
test row that is not ok, and one per method that could not run at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mosaic.core.errors import MosaicError
from mosaic.core.jsonsafe import jsonable

__all__ = ["Results", "WARNING_COLUMNS", "FLOAT_DIGITS"]

FORMAT_NAME = "mosaic-results"
FORMAT_VERSION = 1
FLOAT_DIGITS = 12  # significant digits kept in JSON: stable across platforms, far below any CI width
WARNING_COLUMNS = ("method", "group", "comparison", "reason")


def empty_warnings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in WARNING_COLUMNS})


@dataclass
class Results:
    """Tables, settings and warnings of one analysis run.

    ``to_json()`` is deterministic (sorted keys, NaN -> null, floats rounded to
    :data:`FLOAT_DIGITS` significant digits), so two runs with the same seed give the same text.
    ``timings`` (seconds per stage) is kept for benchmarks and is not serialised.
    """

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: pd.DataFrame = field(default_factory=empty_warnings)
    trace_info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    def table(self, name: str) -> pd.DataFrame:
        """The table called ``name``; a clear error lists what exists when it is absent."""
        try:
            return self.tables[name]
        except KeyError:
            raise MosaicError(
                f"no table {name!r} in these results: available are {sorted(self.tables)}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready structure (floats rounded, NaN -> None)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "settings": _plain(self.settings),
            "trace_info": _plain(self.trace_info),
            "warnings": _frame_to_dict(self.warnings),
            "tables": {name: _frame_to_dict(frame) for name, frame in self.tables.items()},
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Results":
        if data.get("format") != FORMAT_NAME:
            raise MosaicError("not a mosaic results file: expected the JSON written by Results.to_json()")
        if int(data.get("version", 0)) > FORMAT_VERSION:
            raise MosaicError(
                f"results format version {data['version']} is newer than this mosaic reads ({FORMAT_VERSION}): upgrade mosaic"
            )
        warnings = _frame_from_dict(data["warnings"]) if data.get("warnings") else empty_warnings()
        return cls(
            tables={name: _frame_from_dict(t) for name, t in data.get("tables", {}).items()},
            settings=data.get("settings", {}),
            warnings=warnings,
            trace_info=data.get("trace_info", {}),
        )

    @classmethod
    def from_json(cls, text: str) -> "Results":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MosaicError(f"results JSON is malformed ({exc}): regenerate it with Results.to_json()") from None
        return cls.from_dict(data)

    def summary(self) -> str:
        """A few lines for a terminal: the consensus ranking and the warning count."""
        lines = []
        if "ranking_groups" in self.tables and len(self.tables["ranking_groups"]):
            ranking = self.tables["ranking_groups"].sort_values("consensus_rank")
            lines.append("groups, most relied on first: " + ", ".join(ranking["group"].astype(str)))
        lines.append(f"{len(self.tables)} tables, {len(self.warnings)} warnings")
        return "\n".join(lines)


# ---------------------------------------------------------------------- helpers
def _plain(value: Any) -> Any:
    """JSON-ready copy, floats to :data:`FLOAT_DIGITS` significant digits and NaN to None."""
    return jsonable(value, float_digits=FLOAT_DIGITS)


def _frame_to_dict(frame: pd.DataFrame) -> dict[str, Any]:
    columns = [str(c) for c in frame.columns]
    data = [[_plain(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return {"columns": columns, "dtypes": [str(t) for t in frame.dtypes], "data": data}


def _frame_from_dict(table: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(table["data"], columns=table["columns"])
    for column, dtype in zip(table["columns"], table.get("dtypes", [])):
        try:
            if dtype.startswith(("float", "int", "bool")) and frame[column].isna().any():
                # nulls came from NaN: ints/bools with gaps cannot keep their numpy dtype
                frame[column] = frame[column].astype("float64") if not dtype.startswith("bool") else frame[column]
            else:
                frame[column] = frame[column].astype(dtype)
        except (TypeError, ValueError):
            pass  # keep pandas' own inference for dtypes that do not round-trip by name
    return frame
