"""Report columns of an analysis table, from its spec (:mod:`analysis.tables.registry`): which columns, in
what order, under which header.

A table fits a 1280 px page because the page shows what a reader compares and the CSV download
holds the rest:

- an estimate and its interval share one cell (``−4.0 [−5.5, −2.5]``), found from the spec's
  column names (``ci_low``/``ci_high`` go with the table's first estimate, ``<x>_ci_low`` with
  ``<x>`` or ``<x>_mean``, ``rank_low``/``rank_high`` with the rank);
- bookkeeping columns (decisions, standard errors and test statistics, resample counts, the
  paper's conditional numbers) stay in the CSV and the JSON: :func:`is_detail`;
- the status and reason columns become one line per row that could not be estimated
  (:class:`reports.document.Table`);
- headers are words with units: the spec's label, else the column's name in words
  (:func:`words`), and the unit after it.
"""

from __future__ import annotations

import re

import pandas as pd

from analysis.methods.ranking import SCORE_SOURCES
from analysis.tables.registry import ColumnSpec, TableSpec
from reports.document import STATUS_COLUMNS, Column
from reports.numbers import level_text

# Columns kept for scripts: on the page they would only widen the table.
DETAIL_NAMES = frozenset({
    "se", "t", "z", "df", "df_num", "statistic", "chi2", "F", "exact", "design_effect", "n_bootstrap",
    "n_permutations", "n_resamples", "n_configs", "resampled", "unit", "resampling_unit", "mean_identity_delta",
    "cles_paired", "n_zero", "n_ids_discordant", "dispersion", "odds_ratio", "perm_importance_sd_conditional",
    "reference", "condition", "baseline", "test", "p_bh", "consensus_score", "mean_rank", "n_rows", "r2_offset",
    "coarse_family",
})


def _method_label(name: str) -> str | None:
    """``rank:<method>`` -> ``rank: <the method's short label>`` (:data:`analysis.methods.ranking.SCORE_SOURCES`)."""
    head, _, method = name.partition(":")
    if head != "rank" or not method:
        return None
    source = next((s for s in SCORE_SOURCES if s.method == method), None)
    return f"rank: {source.label}" if source is not None and source.label else None

# Words for the parts of column names (a header is never a field name).
WORDS = {
    "n": "number of", "ids": "identities", "ci": "CI", "p": "p", "sd": "SD", "r2": "R²", "cv": "cross-validated",
    "perm": "permutation", "shap": "SHAP", "abs": "absolute", "rank1": "rank-1", "map": "mAP", "rbc": "rank-biserial r",
    "cles": "CLES", "chi2": "χ²", "df": "df", "glm": "GLM", "rf": "random forest", "xgb": "XGBoost", "cf": "cf.",
    "identity": "identity", "mcnemar": "McNemar", "wilcoxon": "Wilcoxon", "ttest": "t-test", "config": "configuration",
    "bh": "BH", "holm": "Holm", "mINP": "mINP", "mAP": "mAP",
}


def words(name: str) -> str:
    """A column name in words: ``n_resamples`` -> ``number of resamples``, ``rank:identity:drop`` ->
    ``rank by identity drop``."""
    head, _, rest = name.partition(":")
    if rest:
        return f"{words(head)} by {' '.join(words(p) for p in re.split(r'[:_]', rest))}"
    parts = [p for p in name.split("_") if p]
    return " ".join(WORDS.get(p, WORDS.get(p.lower(), p)) for p in parts) or name


def is_detail(column: ColumnSpec | None, name: str) -> bool:
    if column is not None and column.role == "key":
        return False
    if column is not None and column.role == "decision":
        return True
    return name in DETAIL_NAMES or name.endswith("_conditional") or name.startswith("score:")


def _estimate_of(spec: TableSpec, frame: pd.DataFrame, low: str) -> str | None:
    """The column whose interval ``low`` is the lower end of (None: an interval on its own)."""
    if low.endswith("_conditional"):
        return None
    if low == "rank_low":
        return next((c for c in ("consensus_rank", "rank") if c in frame.columns), None)
    if low == "ci_low":
        return next((c.name for c in spec.columns if c.role == "estimate" and c.name in frame.columns), None)
    prefix = low.removesuffix("_ci_low")
    return next((c for c in (prefix, f"{prefix}_mean") if c in frame.columns), None)


def interval_columns(spec: TableSpec, frame: pd.DataFrame, ci_level: float = 0.95) -> dict[str, Column]:
    """Estimate column name -> its merged interval :class:`Column` (an interval without an estimate is
    keyed by its lower end)."""
    merged = {}
    level = level_text(ci_level)
    for column in spec.columns:
        low = column.name
        if column.role != "interval" or "low" not in low or low not in frame.columns:
            continue
        high = low.replace("low", "high")
        if high not in frame.columns:
            continue
        estimate = _estimate_of(spec, frame, low)
        target = spec.column(estimate) if estimate else column
        base = (target.label or words(target.name)) if estimate else f"{words(low.replace('_low', ''))}"
        kind = "interval"
        if estimate and estimate.endswith("rank"):
            title, kind = f"{base} [{level} interval]", "rank_interval"
        else:
            title = f"{base}, {target.unit} [{level} CI]" if target.unit else f"{base} [{level} CI]"
        help = (target.description if estimate else column.description) + (
            f" [{target.unit}]" if target.unit else "") + f"; interval: {column.description}"
        merged[estimate or low] = Column(estimate or low, title, source=estimate or low, low=low, high=high, help=help,
                                         kind=kind)
    return merged


def spec_columns(spec: TableSpec, frame: pd.DataFrame, ci_level: float = 0.95) -> list[Column]:
    """``spec.shown_first``, then the frame's other columns, hidden and detail ones left out, each estimate
    merged with its interval; labels from the spec (else the name in words) with the unit, and the
    column's meaning and unit as the header's help text (the HTML tooltip)."""
    intervals = interval_columns(spec, frame, ci_level)
    inside = {c for m in intervals.values() for c in (m.low, m.high)}
    columns = []
    for name in spec.display_columns(frame):
        column = spec.column(name)
        if name in inside and name not in intervals:
            continue
        if name in intervals:
            columns.append(intervals[name])
            continue
        if is_detail(column, name) or column is None:
            continue
        help = column.description + (f" [{column.unit}]" if column.unit else "")
        kind = "p" if column.role in ("test", "correction") and name.startswith("p") else ""
        kind = kind or ("count" if column.role == "count" or column.dtype == "int" else "")
        kind = kind or ("rank" if name.startswith("rank") or name.endswith("_rank") else "")
        columns.append(Column(name, column.label or _method_label(name) or words(name), help=help, kind=kind,
                              unit=column.unit if column.unit not in ("fraction",) else "",
                              decimals=1 if column.unit in ("pp", "%") and not kind else None))
    return columns


def hidden_note(frame: pd.DataFrame, shown: list[Column]) -> str:
    """Which of the frame's columns only the CSV holds (so a reader knows where to find them)."""
    on_page = {c for col in shown for c in (col.source or col.key, col.low, col.high) if c}
    rest = [str(c) for c in frame.columns if c not in on_page and c not in STATUS_COLUMNS]
    return f"The CSV adds {len(rest)} more columns (standard errors, statistics, decisions, counts)." if rest else ""
