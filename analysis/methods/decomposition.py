"""What a group's routing is worth, taken apart: information, capacity, misrouting, semantics, code.

Every condition changes retrieval relative to ``oracle``, but each routing removes something
different, so differences *between* conditions isolate one thing at a time. Per attribute group
``g`` (deltas are ``condition - reference``, so a relied-on group has a **negative** estimate):

==================  ==============================  ===============================================
quantity            estimate                        what it measures
==================  ==============================  ===============================================
``information``     ``fixed:g - oracle``            the identity information in g's route: every
                                                    image gets the same gates for g (capacity kept,
                                                    nobody misled)
``capacity``        ``drop:g - fixed:g``            the parameters of g's experts, once their
                                                    information is gone
``misrouting``      ``counterfactual:g - oracle``   how far a wrong route misleads retrieval: the
                                                    queries' g is routed by another identity's
                                                    state, the gallery's is not (this can exceed
                                                    ``drop`` by far)
``semantics``       ``relabel:g - oracle``          semantic specialisation: g's states are
                                                    permuted consistently for every image, so the
                                                    identity partition is the oracle's and only
                                                    what each expert learned a state looks like is
                                                    wrong (an expert that only injects a code loses
                                                    nothing)
==================  ==============================  ===============================================

Per trace, ``code_share = (code - none) / (oracle - none)``: how much of the oracle's gain over
no experts retrieval by the attribute code alone (no model) reaches. It is a ratio, not a
probability: above 1 when the code retrieves better than the oracle-routed model, below 0 when
worse than no experts at all, and unstable when the oracle gains little over ``none``.

Each estimate is computed on mAP (mean of per-query AP over valid queries) and on rank-1 (share of
valid queries hit at rank 1), with a percentile interval from the identity-cluster bootstrap:
identities are resampled with replacement and every condition of a resampled identity comes along,
so each difference is resampled *jointly* for both of its conditions (paired), and the code share
as a ratio of identity sums. The resampling unit is named in every row (``resampling_unit``).

A quantity whose conditions the trace lacks is a row with ``status = "unavailable"`` and a
``reason`` (schema 1.0 traces predate ``fixed``, ``relabel`` and ``code``), never dropped.

Tables: ``decomposition`` (one row per group x quantity x metric) and ``decomposition_code`` (one
row per metric); their columns are the specs in :mod:`analysis.tables.specs_query`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.settings import AnalysisSettings, MethodNotApplicable
from analysis.stats.resampling import IdentitySums, identity_sums, identity_weights, percentile_interval
from analysis.stats.status import NOT_ESTIMABLE, OK, UNAVAILABLE

__all__ = [
    "Quantity",
    "QUANTITIES",
    "METRICS",
    "RESAMPLING_UNIT",
    "decomposition_tables",
    "point_decomposition",
    "unavailable_quantities",
    "unavailable_reason",
]

RESAMPLING_UNIT = "identity"
ORACLE, NONE, CODE = "oracle", "none", "code"
FIRST_SCHEMA_WITH_KINDS = (1, 1)  # trace schema that introduced fixed, relabel and code
NEW_KINDS = ("fixed", "relabel", "code")


@dataclass(frozen=True)
class Quantity:
    """One per-group quantity: ``condition(group) - reference(group)``."""

    name: str
    label: str
    condition: Callable[[str], str]
    reference: Callable[[str], str]
    meaning: str


QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity("information", "information", lambda g: f"fixed:{g}", lambda g: ORACLE,
                 "fixed − oracle: the identity information in the group's route (capacity kept, nobody misled)"),
        Quantity("capacity", "capacity", lambda g: f"drop:{g}", lambda g: f"fixed:{g}",
                 "drop − fixed: the group's expert parameters once their information is gone"),
        Quantity("misrouting", "misrouting", lambda g: f"counterfactual:{g}", lambda g: ORACLE,
                 "counterfactual − oracle: how far a wrong route on the queries misleads retrieval"),
        Quantity("semantics", "semantic specialisation", lambda g: f"relabel:{g}", lambda g: ORACLE,
                 "relabel − oracle: what the experts learned a state looks like, with the identity partition kept"),
    )
}

# metric name -> TraceData per-query array it averages over valid queries
METRICS: dict[str, str] = {"mAP": "ap", "rank1": "rank1"}

CODE_SHARE = "code_share"
CODE_SHARE_MEANING = "(code − none) / (oracle − none): the share of the oracle's gain that the attribute code alone reaches"


def _old_schema(schema_version: str | None) -> bool:
    if not schema_version:
        return False
    try:
        from mosaic.tracefile import parse_version

        return parse_version(schema_version)[:2] < FIRST_SCHEMA_WITH_KINDS
    except Exception:  # an unparseable version is reported by the trace reader, not here
        return False


def unavailable_reason(missing: Sequence[str], schema_version: str | None = None) -> str:
    """Why a quantity cannot be computed: the conditions it needs that the trace lacks."""
    names = ", ".join(repr(m) for m in missing)
    reason = f"the trace has no {names} condition" + ("s" if len(missing) > 1 else "")
    kinds = {m.split(":", 1)[0] for m in missing}
    if _old_schema(schema_version) and kinds & set(NEW_KINDS):
        reason += (f" (trace schema {schema_version} predates the fixed, relabel and code conditions: "
                   "trace the checkpoint again to measure it)")
    elif kinds & set(NEW_KINDS):
        patterns = ", ".join(k if k == CODE else f"{k}:*" for k in sorted(kinds & set(NEW_KINDS)))
        reason += f": trace with --conditions including {patterns}"
    return reason


def unavailable_quantities(table: pd.DataFrame | None) -> dict[str, str]:
    """``{quantity: reason}`` for every quantity some row of ``table`` marks unavailable.

    The reason is the first row's, with its group written as ``<group>``, and says for how many
    groups when not all of them.
    """
    out: dict[str, str] = {}
    if table is None or not len(table) or "status" not in table:
        return out
    bad = table[table["status"].astype(str) == UNAVAILABLE]
    for quantity, rows in bad.groupby("quantity", sort=False):
        first = rows.iloc[0]
        reason = str(first["reason"])
        if "group" in rows:
            reason = reason.replace(f":{first['group']}'", ":<group>'")
            total = table.loc[table["quantity"] == quantity, "group"].nunique()
            if rows["group"].nunique() < total:
                reason += f" (for {rows['group'].nunique()} of {total} groups)"
        out[str(quantity)] = reason
    return out


# ---------------------------------------------------------------------------- point estimates
def point_decomposition(metrics: Mapping[str, Mapping[str, float]], groups: Sequence[str], *,
                        schema_version: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The decomposition from per-condition summary metrics alone (no per-query data, no interval).

    ``metrics`` maps condition name -> ``{"mAP": value, "rank1": value}``. Returns the
    ``(per group, code share)`` frames with columns ``group, quantity, metric, condition,
    reference, estimate, status, reason`` and ``quantity, metric, estimate, status, reason``.
    This is what ``mosaic inspect`` prints; the analysis adds identity-cluster intervals.
    """
    rows = []
    for group in groups:
        for quantity in QUANTITIES.values():
            a, b = quantity.condition(group), quantity.reference(group)
            missing = [c for c in (a, b) if c not in metrics]
            for metric in METRICS:
                row = {"group": group, "quantity": quantity.name, "metric": metric, "condition": a, "reference": b,
                       "estimate": np.nan, "status": OK, "reason": ""}
                if missing:
                    row.update(status=UNAVAILABLE, reason=unavailable_reason(missing, schema_version))
                else:
                    row["estimate"] = float(metrics[a][metric]) - float(metrics[b][metric])
                rows.append(row)
    share_rows = []
    missing = [c for c in (CODE, NONE, ORACLE) if c not in metrics]
    for metric in METRICS:
        row = {"quantity": CODE_SHARE, "metric": metric, "estimate": np.nan, "status": OK, "reason": ""}
        if missing:
            row.update(status=UNAVAILABLE, reason=unavailable_reason(missing, schema_version))
        else:
            gain = float(metrics[ORACLE][metric]) - float(metrics[NONE][metric])
            if gain == 0 or gain != gain:
                row.update(status=NOT_ESTIMABLE, reason="oracle and none score the same: there is no gain to share")
            else:
                row["estimate"] = (float(metrics[CODE][metric]) - float(metrics[NONE][metric])) / gain
        share_rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(share_rows)


# ------------------------------------------------------------------------------ with intervals
@dataclass(frozen=True)
class _Clusters:
    """Valid queries grouped by identity, and the shared identity-cluster resamples."""

    valid: np.ndarray      # (Q,) bool
    identity: np.ndarray   # (n_valid,) pid of each valid query
    weights: np.ndarray    # (B, n_ids) multinomial resample counts over the sorted identities

    @property
    def n_queries(self) -> int:
        return int(self.identity.size)

    @property
    def n_ids(self) -> int:
        return int(self.weights.shape[1])

    def sums(self, values: np.ndarray) -> IdentitySums:
        """Per-identity sums of per-query values ``(K, n_valid)``."""
        return identity_sums(values, self.identity)


def _clusters(data, settings: AnalysisSettings) -> _Clusters:
    valid = np.asarray(data.valid, dtype=bool)
    identity = np.asarray(data.query_pid)[valid]
    weights = identity_weights(np.unique(identity).size, settings.n_bootstrap, settings.seed)
    return _Clusters(valid, identity, weights)


def _interval(boot: np.ndarray, ci_level: float) -> np.ndarray:
    return np.stack(percentile_interval(boot, ci_level)) if boot.size else np.full((2, boot.shape[1]), np.nan)


def _per_query(data, metric: str, index: int, valid: np.ndarray) -> np.ndarray:
    return np.asarray(getattr(data, METRICS[metric])[index], dtype=np.float64)[valid]


def decomposition_tables(trace, settings: AnalysisSettings | None = None) -> dict[str, pd.DataFrame]:
    """The ``decomposition`` and ``decomposition_code`` tables (see the module docstring)."""
    settings = settings or AnalysisSettings()
    data = getattr(trace, "data", trace)
    schema_version = getattr(trace, "schema_version", None)
    names = [str(n) for n in data.condition_name.tolist()]
    if ORACLE not in names:
        raise MethodNotApplicable("the trace has no 'oracle' condition, the reference of every decomposition")
    index = {n: i for i, n in enumerate(names)}
    clusters = _clusters(data, settings)
    common = {"ci_level": float(settings.ci_level), "n_queries": clusters.n_queries, "n_ids": clusters.n_ids,
              "n_bootstrap": int(settings.n_bootstrap), "resampling_unit": RESAMPLING_UNIT}

    # every available difference as one row of a (K, n_valid) matrix, resampled together
    rows, deltas = [], []
    for group in data.schema.groups:
        for quantity in QUANTITIES.values():
            a, b = quantity.condition(group.name), quantity.reference(group.name)
            missing = [c for c in (a, b) if c not in index]
            for metric in METRICS:
                row = {"group": group.name, "family": group.family, "quantity": quantity.name, "metric": metric,
                       "condition": a, "reference": b, "status": OK, "reason": "", "_k": -1}
                if missing:
                    row.update(status=UNAVAILABLE, reason=unavailable_reason(missing, schema_version))
                else:
                    row["_k"] = len(deltas)
                    deltas.append(_per_query(data, metric, index[a], clusters.valid)
                                  - _per_query(data, metric, index[b], clusters.valid))
                rows.append(row)
    estimate, ci = _difference_estimates(np.asarray(deltas).reshape(len(deltas), -1), clusters, settings.ci_level)
    for row in rows:
        k = row.pop("_k")
        row.update(estimate=float(estimate[k]) if k >= 0 else np.nan,
                   ci_low=float(ci[0, k]) if k >= 0 else np.nan, ci_high=float(ci[1, k]) if k >= 0 else np.nan,
                   **common)
        if k >= 0 and clusters.n_ids == 0:
            row.update(status=NOT_ESTIMABLE, reason="no valid query")
    groups = pd.DataFrame(rows, columns=GROUP_COLUMNS)
    return {"decomposition": groups.astype(_INT_COLUMNS),
            "decomposition_code": _code_share(data, index, clusters, settings, schema_version, common)}


GROUP_COLUMNS = ("group", "family", "quantity", "metric", "condition", "reference", "estimate", "ci_low", "ci_high",
                 "ci_level", "n_queries", "n_ids", "n_bootstrap", "resampling_unit", "status", "reason")
CODE_COLUMNS = ("quantity", "metric", "condition", "reference", "baseline", "code_gain", "oracle_gain", "estimate",
                "ci_low", "ci_high", "ci_level", "n_queries", "n_ids", "n_bootstrap", "resampling_unit", "status",
                "reason")
_INT_COLUMNS = {"n_queries": np.int64, "n_ids": np.int64, "n_bootstrap": np.int64}


def _difference_estimates(delta: np.ndarray, clusters: _Clusters, ci_level: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean over valid queries of each row of ``delta`` and its identity-cluster percentile interval."""
    if not delta.shape[0] or clusters.n_ids == 0:
        return np.full(delta.shape[0], np.nan), np.full((2, delta.shape[0]), np.nan)
    sums = clusters.sums(delta)
    return sums.estimate, _interval(sums.resample(clusters.weights), ci_level)


def _code_share(data, index: Mapping[str, int], clusters: _Clusters, settings: AnalysisSettings,
                schema_version: str | None, common: Mapping[str, Any]) -> pd.DataFrame:
    """``(code - none) / (oracle - none)`` per metric: a ratio of identity sums, resampled as one."""
    missing = [c for c in (CODE, NONE, ORACLE) if c not in index]
    rows = []
    for metric in METRICS:
        row = {"quantity": CODE_SHARE, "metric": metric, "condition": CODE, "reference": ORACLE, "baseline": NONE,
               "code_gain": np.nan, "oracle_gain": np.nan, "estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan,
               "status": OK, "reason": "", **common}
        if missing:
            row.update(status=UNAVAILABLE, reason=unavailable_reason(missing, schema_version))
        elif clusters.n_ids == 0:
            row.update(status=NOT_ESTIMABLE, reason="no valid query")
        else:
            none = _per_query(data, metric, index[NONE], clusters.valid)
            gains = np.stack([_per_query(data, metric, index[CODE], clusters.valid) - none,
                              _per_query(data, metric, index[ORACLE], clusters.valid) - none])
            sums = clusters.sums(gains).sums                                      # (2, n_ids)
            code_gain, oracle_gain = sums.sum(1) / clusters.n_queries
            row.update(code_gain=float(code_gain), oracle_gain=float(oracle_gain))
            if oracle_gain == 0:
                row.update(status=NOT_ESTIMABLE, reason="oracle and none score the same: there is no gain to share")
            else:
                row["estimate"] = float(code_gain / oracle_gain)
                boot = clusters.weights @ sums.T                                  # (B, 2)
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.where(boot[:, 1] != 0, boot[:, 0] / boot[:, 1], np.nan)
                low, high = _interval(ratio[:, None], settings.ci_level)[:, 0]
                row.update(ci_low=float(low), ci_high=float(high))
        rows.append(row)
    return pd.DataFrame(rows, columns=CODE_COLUMNS).astype(_INT_COLUMNS)
