"""The outcome of :func:`analysis.analyze`: tidy tables, the settings that made them, warnings.

Sign convention, everywhere: a *delta* is ``condition - baseline`` (the baseline is the
``oracle`` condition), so a group the model relies on has a **negative** ``delta_map`` /
``delta_rank1`` when it is dropped or routed counterfactually. Rankings put the group with the
largest loss first (rank 1).

Every row of a test table carries ``status`` (``"ok"`` | ``"not tested"`` | ``"not estimable"``,
and ``"unavailable"`` where the trace lacks the conditions a decomposition needs) and ``reason``
(empty when ok). A row that is not ok keeps NaN in its p-value, and NaN p-values
never enter the multiple-testing corrections (:mod:`analysis.stats.corrections`).

What each table holds -- its columns, dtypes, units, the unit its tests resample, its
corrections, decisions and families of tests -- is data: the :class:`analysis.tables.registry.TableSpec`
of that name in :data:`analysis.tables.registry.TABLES` (listed in ``docs/report-json.md``, generated from
them). A table is absent when its method did not run.

``Results.warnings`` has columns ``method``, ``group``, ``comparison``, ``reason``: one row per
test row that is not ok, and one per method that could not run at all.

Units: retrieval rates are in percent and their changes (ΔmAP, Δrank-1, the decomposition, GLM
coefficients on mAP) in percentage points, as each column's spec says (``ColumnSpec.unit``);
every table carries its columns' units and meanings in ``frame.attrs`` (``"units"``,
``"meanings"``) and :meth:`Results.columns` lists them.

In a notebook a :class:`Results` shows a short display (settings, the headline, the groups in
consensus order with their intervals, warnings, the tables and their shapes); its figures are
the report's own (:meth:`Results.plot_ranking`, :meth:`Results.plot`), drawn by the
``reports`` package. ``analysis`` never imports ``reports``: the figures reach :class:`Results`
through the registry :data:`FIGURES`, which ``reports.plots`` fills as it loads, and which
:func:`figure` loads by its module name (:data:`FIGURE_PROVIDER`) the first time a figure is
asked for.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from analysis.display import Display, Displayable
from analysis.methods.ranking import distinguishable_groups, headline
from analysis.tables.registry import table_spec
from mosaic.core.errors import MosaicError
from mosaic.core.jsonsafe import jsonable

__all__ = ["FIGURES", "FIGURE_PROVIDER", "Results", "WARNING_COLUMNS", "FLOAT_DIGITS", "figure", "register_figure"]

# name -> function(results, **options) returning a figure that displays itself in a notebook
FIGURES: dict[str, Callable[..., Any]] = {}
FIGURE_PROVIDER = "reports.plots"  # the module that fills FIGURES (loaded by name: analysis never imports reports)


def register_figure(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    FIGURES[name] = function
    return function


def figure(name: str, results: "Results", **options: Any) -> Any:
    """The figure ``name`` of ``results`` (``ranking``, ``paired``, ``decomposition``, ...)."""
    if name not in FIGURES:
        importlib.import_module(FIGURE_PROVIDER)
    try:
        draw = FIGURES[name]
    except KeyError:
        raise MosaicError(f"no figure called {name!r}: use one of {', '.join(sorted(FIGURES))}") from None
    return draw(results, **options)

FORMAT_NAME = "mosaic-results"
FORMAT_VERSION = 1
FLOAT_DIGITS = 12  # significant digits kept in JSON: stable across platforms, far below any CI width
WARNING_COLUMNS = ("method", "group", "comparison", "reason")


def empty_warnings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in WARNING_COLUMNS})


@dataclass(repr=False)
class Results(Displayable):
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

    def __post_init__(self) -> None:
        for name, frame in self.tables.items():
            _describe_columns(name, frame)

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
            "tables": {name: _frame_to_dict(frame, name) for name, frame in self.tables.items()},
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

    def headline(self) -> str:
        """One sentence: the groups relied on most, or that no group's effect differs from zero."""
        return headline(self.tables)

    def summary(self) -> pd.DataFrame:
        """The headline table: one row per group in consensus order, with its rank interval, ΔmAP when
        dropped (pp) with its interval and Holm-adjusted p, and whether its effect differs from zero.

        ``.attrs`` holds ``headline`` (the sentence: when no group differs from zero it says so, and
        the rank column is then called ``order`` -- noise is not ranked), ``units`` and ``meanings``.
        """
        ranking = self.tables.get("ranking_groups")
        if ranking is None or not len(ranking):
            raise MosaicError("no ranking in these results: analyze() with the ranking's methods to get a summary")
        frame = ranking.sort_values(["consensus_rank", "group"], kind="stable")
        groups, decided_by = distinguishable_groups(self.tables)
        null = bool(decided_by) and not groups
        rank = "order" if null else "rank"
        out = pd.DataFrame({
            "group": frame["group"].astype(str).to_numpy(),
            "family": frame["family"].astype(str).to_numpy(),
            rank: frame["consensus_rank"].to_numpy(dtype=float),
            f"{rank} low": frame["rank_low"].to_numpy(dtype=float),
            f"{rank} high": frame["rank_high"].to_numpy(dtype=float),
        })
        paired = self.tables.get("paired_identity")
        if paired is not None and len(paired) and "drop" in set(paired["comparison"]):
            drop = paired[paired["comparison"] == "drop"].set_index("group").reindex(out["group"])
            for column, source in (("ΔmAP drop (pp)", "delta_map"), ("CI low (pp)", "ci_low"),
                                   ("CI high (pp)", "ci_high"), ("p Holm", "p_holm")):
                out[column] = drop[source].to_numpy(dtype=float)
        if decided_by:
            out["differs from zero"] = out["group"].isin(groups).to_numpy()
        level = f"{100 * float(self.settings.get('ci_level', 0.95)):g}%"
        out.attrs["headline"] = self.headline()
        out.attrs["units"] = {rank: "rank", "ΔmAP drop (pp)": "pp", "CI low (pp)": "pp", "CI high (pp)": "pp"}
        out.attrs["meanings"] = {
            rank: "consensus rank across the identity-valid methods, 1 = most relied on"
                  + (" (no group differs from zero: the order is noise, not a ranking)" if null else ""),
            f"{rank} low": f"{level} interval of the rank over identity resamples",
            "ΔmAP drop (pp)": "mAP(drop:<group>) − mAP(oracle), percentage points",
            "CI low (pp)": f"{level} identity-cluster bootstrap interval of ΔmAP",
            "p Holm": "identity-level sign-flip test, Holm-adjusted across groups",
            "differs from zero": "the Holm-adjusted identity-level test rejects at alpha",
        }
        return out

    def columns(self, name: str) -> pd.DataFrame:
        """What each column of table ``name`` means and its unit (from the table's spec)."""
        frame, spec = self.table(name), table_spec(name)
        rows = []
        for column in frame.columns:
            c = spec.column(str(column)) if spec is not None else None
            rows.append({"column": str(column), "unit": c.unit if c else "", "meaning": c.description if c else "",
                         "label": (c.label or "") if c else ""})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ figures
    def plot_ranking(self, **options: Any) -> Any:
        """The report's figure of the groups by consensus rank (rank intervals, ΔmAP with intervals)."""
        return figure("ranking", self, **options)

    def plot(self, name: str = "ranking", **options: Any) -> Any:
        """The report's figure ``name`` (see :data:`FIGURES`: ``ranking``, ``paired``, ``decomposition``)."""
        return figure(name, self, **options)

    # ------------------------------------------------------------------ display
    def _display(self) -> Display:
        s = self.settings
        info = self.trace_info or {}
        display = Display("Results", str(info.get("file") or info.get("path") or info.get("dataset") or ""))
        display.text(self.headline())
        methods = s.get("methods")
        display.fields({"alpha": s.get("alpha"), "confidence level": s.get("ci_level"),
                        "bootstrap resamples": s.get("n_bootstrap"), "permutations": s.get("n_permutations"),
                        "seed": s.get("seed"), "baseline": s.get("baseline"),
                        "methods": ", ".join(methods) if isinstance(methods, (list, tuple)) else methods or "all"},
                       "settings")
        if "ranking_groups" in self.tables and len(self.tables["ranking_groups"]):
            summary = self.summary()
            shown = summary[["group", "family"]].copy()
            rank = "order" if "order" in summary else "rank"
            shown[f"{rank} [interval]"] = [f"{r:g} [{lo:g}, {hi:g}]" for r, lo, hi in
                                           zip(summary[rank], summary[f"{rank} low"], summary[f"{rank} high"])]
            if "ΔmAP drop (pp)" in summary:
                shown["ΔmAP drop, pp [CI]"] = [f"{e:+.1f} [{lo:+.1f}, {hi:+.1f}]" for e, lo, hi in
                                               zip(summary["ΔmAP drop (pp)"], summary["CI low (pp)"],
                                                   summary["CI high (pp)"])]
            display.table(shown, "groups in consensus order" if rank == "rank" else "groups in estimated order",
                          max_rows=12, note="results.summary() returns it as a DataFrame; "
                                            "results.plot_ranking() draws it")
        display.lines("warnings", [" · ".join(str(v) for v in row if v) for row in
                                   self.warnings[list(WARNING_COLUMNS)].itertuples(index=False, name=None)],
                      max_lines=4, empty="none")
        display.lines("tables (results.table(name); results.columns(name) for units)",
                      [f"{name}: {len(f)} × {len(f.columns)}" for name, f in self.tables.items()], max_lines=8)
        return display


# ---------------------------------------------------------------------- helpers
def _describe_columns(name: str, frame: pd.DataFrame) -> None:
    """Put the units and meanings of ``frame``'s columns, from its spec, in ``frame.attrs``."""
    spec = table_spec(name)
    if spec is None:
        return
    units, meanings = {}, {}
    for column in frame.columns:
        c = spec.column(str(column))
        if c is not None:
            units[str(column)], meanings[str(column)] = c.unit, c.description
    frame.attrs.update({"table": name, "units": units, "meanings": meanings})


def _plain(value: Any) -> Any:
    """JSON-ready copy, floats to :data:`FLOAT_DIGITS` significant digits and NaN to None."""
    return jsonable(value, float_digits=FLOAT_DIGITS)


def _frame_to_dict(frame: pd.DataFrame, name: str | None = None) -> dict[str, Any]:
    """Columns, dtypes, rows and, for a table with a spec, each column's unit ("" = unitless or text)."""
    columns = [str(c) for c in frame.columns]
    data = [[_plain(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    out = {"columns": columns, "dtypes": [str(t) for t in frame.dtypes], "data": data}
    spec = table_spec(name) if name else None
    if spec is not None:
        out["units"] = [(spec.column(c).unit if spec.column(c) is not None else "") for c in columns]
    return out


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
