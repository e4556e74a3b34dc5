"""Paired query-level tests: ``oracle`` versus ``drop:<group>`` and ``counterfactual:<group>``.

This is the project's extension of the paper's configuration-level analysis: every query is
retrieved under both conditions, so each group's contribution can be tested on paired
outcomes. Queries of one identity share its attribute states, so the **identity** is the
independent unit of every table (pingouin style: tidy frames with effect size, CI, ``n``, ``p``
and the ``unit`` side by side):

- :func:`paired_mcnemar`: clustered McNemar test on rank-1 hits with the Δrank-1 interval
  (:mod:`analysis.stats.clustered`).
- :func:`paired_wilcoxon`: clustered (Datta–Satten) signed-rank test on AP, ΔmAP with its
  identity-cluster bootstrap interval.
- :func:`identity_tests` / :func:`paired_identity`: a sign-flip permutation test over
  identities' mean ΔAP and an identity-cluster bootstrap CI of ΔmAP
  (:mod:`analysis.stats.resampling`).

:func:`mcnemar_exact` and :func:`wilcoxon_signed_rank` are the textbook tests that treat queries
as independent; they are kept as library functions (the clustered tests reduce to them with one
query per identity) and feed no table.

Deltas are ``condition - baseline``. Degenerate comparisons (no discordant pairs, every ΔAP zero,
one identity) become rows with ``status = "not tested"`` and a ``reason``, never NaN that could
spread: the corrections (:mod:`analysis.stats.corrections`) run over tested rows only, within each
family of tests (one table x one comparison, across groups). Column meanings are listed in
:mod:`analysis.results`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.settings import AnalysisSettings, MethodNotApplicable
from analysis.stats.clustered import UNIT, clustered_mcnemar, clustered_signed_rank, rank_biserial
from analysis.stats.corrections import CORRECTIONS, add_corrections
from analysis.stats.resampling import cluster_bootstrap, identity_sums, identity_weights, percentile_interval, sign_flip
from analysis.stats.status import NOT_ESTIMABLE, NOT_TESTED, OK

__all__ = [
    "Comparison",
    "comparisons",
    "mcnemar_exact",
    "wilcoxon_signed_rank",
    "identity_tests",
    "identity_deltas",
    "bootstrap_weights",
    "paired_mcnemar",
    "paired_wilcoxon",
    "paired_identity",
    "paired_tables",
    "add_corrections",
]



# --------------------------------------------------------------------------------- comparisons
@dataclass(frozen=True)
class Comparison:
    """One paired comparison: ``condition`` (e.g. ``drop:hat``) against ``baseline``."""

    group: str
    family: str
    comparison: str        # the condition kind: "drop" | "counterfactual"
    condition: str
    baseline: str
    index: int             # row of the condition in the trace arrays, -1 when the trace lacks it
    baseline_index: int

    def key(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "family": self.family,
            "comparison": self.comparison,
            "condition": self.condition,
            "baseline": self.baseline,
        }


def _data(trace):
    """The TraceData behind a Trace (or a TraceData itself)."""
    return getattr(trace, "data", trace)


def comparisons(trace, settings: AnalysisSettings) -> list[Comparison]:
    """Every (group x comparison kind) pair to test, in schema order then comparison order.

    A comparison kind absent from the trace altogether is skipped; a group whose own condition is
    missing while others of its kind exist still gets a row (it will be ``not tested``).
    """
    data = _data(trace)
    names = [str(n) for n in data.condition_name.tolist()]
    if settings.baseline not in names:
        raise MethodNotApplicable(
            f"the trace has no {settings.baseline!r} condition, the baseline of every paired comparison"
        )
    base = names.index(settings.baseline)
    kinds = {str(k) for k in data.condition_kind.tolist()}
    out = []
    for kind in settings.comparisons:
        if kind not in kinds:
            continue
        for group in data.schema.groups:
            name = f"{kind}:{group.name}"
            out.append(
                Comparison(group.name, group.family, kind, name, settings.baseline,
                           names.index(name) if name in names else -1, base)
            )
    if not out:
        raise MethodNotApplicable(
            f"the trace has no {' or '.join(settings.comparisons)} conditions to compare with {settings.baseline!r}"
        )
    return out


# --------------------------------------------------------------------------- single-pair tests
def mcnemar_exact(baseline_hits, condition_hits, *, ci_level: float = 0.95) -> dict[str, Any]:
    """Exact McNemar test of two paired binary outcomes (rank-1 hits), pairs independent.

    ``b`` counts pairs hit under the baseline and missed under the condition (hits lost), ``c``
    the reverse. Given ``b + c`` discordant pairs, ``b ~ Binomial(b + c, 1/2)`` under the null; the
    p-value is the exact two-sided binomial one (as ``statsmodels`` ``mcnemar(exact=True)``). The
    conditional odds ratio ``b / c`` gets the exact interval obtained by transforming the
    Clopper–Pearson interval of ``b / (b + c)``.
    """
    x = np.asarray(baseline_hits, dtype=bool)
    y = np.asarray(condition_hits, dtype=bool)
    n = int(x.size)
    b = int(np.sum(x & ~y))
    c = int(np.sum(~x & y))
    out = {
        "n": n,
        "rank1_baseline": float(x.mean()) if n else np.nan,
        "rank1_condition": float(y.mean()) if n else np.nan,
        "delta_rank1": (c - b) / n if n else np.nan,
        "b": b,
        "c": c,
        "odds_ratio": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "p": np.nan,
        "status": OK,
        "reason": "",
    }
    if n == 0:
        return {**out, "status": NOT_ESTIMABLE, "reason": "no valid query"}
    if b + c == 0:
        return {**out, "status": NOT_TESTED, "reason": "no discordant pairs: the condition changes no rank-1 hit"}
    m = b + c
    tail = (1.0 - ci_level) / 2.0
    lo = stats.beta.ppf(tail, b, m - b + 1) if b > 0 else 0.0
    hi = stats.beta.ppf(1.0 - tail, b + 1, m - b) if b < m else 1.0
    with np.errstate(divide="ignore"):
        out["odds_ratio"] = b / c if c else np.inf
        out["ci_low"] = lo / (1.0 - lo)
        out["ci_high"] = hi / (1.0 - hi) if hi < 1.0 else np.inf
    out["p"] = float(min(1.0, 2.0 * stats.binom.cdf(min(b, c), m, 0.5)))
    return out


def _cles_all_pairs(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + 0.5 P(X = Y) over all (x_i, y_j) pairs, as pingouin computes it, in O(n log n)."""
    ys = np.sort(y)
    below = np.searchsorted(ys, x, side="left")
    ties = np.searchsorted(ys, x, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (x.size * y.size))


def wilcoxon_signed_rank(baseline, condition, *, ci_level: float = 0.95) -> dict[str, Any]:
    """Wilcoxon signed-rank test of ``condition - baseline`` with its effect sizes, queries independent.

    Zero differences are dropped by the test (``n_zero`` says how many); scipy's statistic and
    p-value (no continuity correction). ``rbc`` is the matched-pairs rank-biserial correlation
    (Kerby 2014), ``cles`` the Vargha–Delaney common-language effect size over all pairs (both as
    pingouin's ``wilcoxon(condition, baseline)``), ``cles_paired`` the share of pairs that rose
    (ties counted half). ``ci_low`` / ``ci_high``: t interval of the mean difference.
    """
    x = np.asarray(condition, dtype=float)
    y = np.asarray(baseline, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    d = x - y
    n = int(d.size)
    n_zero = int(np.sum(d == 0))
    out = {
        "n": n,
        "n_zero": n_zero,
        "mean_delta_ap": float(d.mean()) if n else np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "median_delta_ap": float(np.median(d)) if n else np.nan,
        "W": np.nan,
        "rbc": np.nan,
        "cles": np.nan,
        "cles_paired": np.nan,
        "p": np.nan,
        "status": OK,
        "reason": "",
    }
    if n == 0:
        return {**out, "status": NOT_ESTIMABLE, "reason": "no valid query"}
    out["cles"] = _cles_all_pairs(x, y)
    out["cles_paired"] = float(np.mean(np.where(d == 0, 0.5, d > 0)))
    if n > 1:
        half = stats.t.ppf(0.5 + ci_level / 2.0, n - 1) * d.std(ddof=1) / np.sqrt(n)
        out["ci_low"], out["ci_high"] = out["mean_delta_ap"] - half, out["mean_delta_ap"] + half
    if n_zero == n:
        return {**out, "status": NOT_TESTED, "reason": "every ΔAP is zero: the condition changes no query's AP"}
    out["rbc"] = rank_biserial(d)
    result = stats.wilcoxon(d, zero_method="wilcox")
    out["W"], out["p"] = float(result.statistic), float(result.pvalue)
    return out


# ------------------------------------------------------------------------- identity-level tests
def bootstrap_weights(n_ids: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """Identity-cluster bootstrap counts, ``(n_bootstrap, n_ids)``: see :func:`analysis.stats.resampling.identity_weights`."""
    return identity_weights(n_ids, n_bootstrap, seed)


def identity_tests(
    delta,
    identity,
    *,
    n_bootstrap: int = 1000,
    n_permutations: int = 2000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Identity-level tests of several paired comparisons at once.

    Parameters
    ----------
    delta : ``(n_comparisons, n_queries)`` per-query ΔAP (condition - baseline) of valid queries,
        or one comparison as a 1-D array.
    identity : ``(n_queries,)`` identity label of each query.

    Returns one row per comparison: ``n_ids, n_queries, delta_map, mean_identity_delta, ci_low,
    ci_high, n_bootstrap, n_permutations, exact, p, status, reason``. The permutation statistic
    is the mean over identities of each identity's mean ΔAP; under the null each identity's
    sign is exchangeable, so signs are flipped per identity (all patterns enumerated when there
    are at most 12 identities). The CI is the percentile interval of ΔmAP over identity-cluster
    resamples; every comparison shares the same resamples (so family means can be resampled too).
    """
    delta = np.atleast_2d(np.asarray(delta, dtype=float))
    sums = identity_sums(delta, identity)      # checks that every query has its identity
    n_ids = sums.n_identities
    rows = []
    if n_ids == 0:
        for _ in range(delta.shape[0]):
            rows.append(_identity_row(0, 0, np.nan, np.nan, (np.nan, np.nan), 0, 0, False, np.nan,
                                      NOT_ESTIMABLE, "no valid query"))
        return pd.DataFrame(rows)
    delta_map = sums.estimate
    boot = sums.resample(identity_weights(n_ids, n_bootstrap, seed))                       # (B, K)
    ci = np.stack(percentile_interval(boot, ci_level))
    flipped = sign_flip(delta, identity, n_resamples=n_permutations, seed=seed)
    statistic, p, exact = flipped.statistic, flipped.p, flipped.exact

    for k in range(delta.shape[0]):
        status, reason, p_k, ci_k = OK, "", float(p[k]), (float(ci[0, k]), float(ci[1, k]))
        if not np.any(delta[k] != 0):
            status, reason, p_k = NOT_TESTED, "every ΔAP is zero: the condition changes no query's AP", np.nan
        elif n_ids < 2:
            status, reason, p_k, ci_k = (NOT_TESTED, "only one identity: identity-level inference needs two or more",
                                         np.nan, (np.nan, np.nan))
        rows.append(_identity_row(n_ids, int(delta.shape[1]), float(delta_map[k]), float(statistic[k]), ci_k,
                                  n_bootstrap, flipped.n_patterns, exact, p_k, status, reason))
    return pd.DataFrame(rows)


def _identity_row(n_ids, n_queries, delta_map, statistic, ci, n_bootstrap, n_permutations, exact, p, status, reason):
    return {
        "unit": UNIT,
        "n_ids": n_ids,
        "n_queries": n_queries,
        "delta_map": delta_map,
        "mean_identity_delta": statistic,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "n_bootstrap": n_bootstrap,
        "n_permutations": n_permutations,
        "exact": exact,
        "p": p,
        "status": status,
        "reason": reason,
    }


@dataclass(frozen=True)
class IdentityDeltas:
    """Per-query ΔAP of every available comparison, restricted to valid queries."""

    comparisons: tuple[Comparison, ...]   # those whose condition exists in the trace
    delta: np.ndarray                      # (K, n_valid) condition - baseline AP
    identity: np.ndarray                   # (n_valid,) pid of each valid query


def identity_deltas(trace, settings: AnalysisSettings) -> IdentityDeltas:
    """ΔAP of each available comparison on valid queries, with the queries' identities."""
    data = _data(trace)
    present = tuple(c for c in comparisons(trace, settings) if c.index >= 0)
    valid = np.asarray(data.valid, dtype=bool)
    ap = np.asarray(data.ap, dtype=np.float64)
    if present:
        delta = ap[[c.index for c in present]][:, valid] - ap[present[0].baseline_index][valid][None, :]
    else:
        delta = np.zeros((0, int(valid.sum())))
    return IdentityDeltas(present, delta, np.asarray(data.query_pid)[valid])


# ------------------------------------------------------------------------------ tables
def _order_columns(frame: pd.DataFrame) -> pd.DataFrame:
    tail = [*(f"p_{n}" for n in CORRECTIONS), *(f"reject_{n}" for n in CORRECTIONS), "status", "reason"]
    head = [c for c in frame.columns if c not in tail]
    return frame[head + [c for c in tail if c in frame.columns]]


def _missing_condition(comparison: Comparison) -> dict[str, Any]:
    return {"status": NOT_TESTED, "reason": f"the trace has no {comparison.condition!r} condition"}


def paired_mcnemar(trace, settings: AnalysisSettings | None = None) -> pd.DataFrame:
    """Clustered McNemar test on rank-1 hits, identity as the unit (see :func:`analysis.stats.clustered.clustered_mcnemar`).

    ``ci_low`` / ``ci_high`` bound ``delta_rank1`` (Tango's score interval with the identity design
    effect), the interval the report draws.
    """
    settings = settings or AnalysisSettings()
    data = _data(trace)
    valid = np.asarray(data.valid, dtype=bool)
    identity = np.asarray(data.query_pid)[valid]
    rows = []
    for comp in comparisons(trace, settings):
        if comp.index < 0:
            row = {**clustered_mcnemar([], [], [], ci_level=settings.ci_level), **_missing_condition(comp)}
        else:
            row = clustered_mcnemar(data.rank1[comp.baseline_index][valid], data.rank1[comp.index][valid],
                                    identity, ci_level=settings.ci_level)
        rows.append({**comp.key(), **row})
    frame = pd.DataFrame(rows).astype({"n": np.int64, "n_ids": np.int64, "b": np.int64, "c": np.int64, "exact": bool})
    return _order_columns(add_corrections(frame, settings.alpha))


def _query_effect_sizes(d: np.ndarray, condition: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Descriptive effect sizes over queries (no inference): median ΔAP and the two CLES."""
    if d.size == 0:
        return {"median_delta_ap": np.nan, "cles": np.nan, "cles_paired": np.nan}
    return {"median_delta_ap": float(np.median(d)), "cles": _cles_all_pairs(condition, baseline),
            "cles_paired": float(np.mean(np.where(d == 0, 0.5, d > 0)))}


def paired_wilcoxon(trace, settings: AnalysisSettings | None = None) -> pd.DataFrame:
    """Clustered signed-rank test on AP, identity as the unit (see :func:`analysis.stats.clustered.clustered_signed_rank`).

    ``mean_delta_ap`` is ΔmAP with its identity-cluster percentile bootstrap interval (the same
    resamples as ``paired_identity``).
    """
    settings = settings or AnalysisSettings()
    data = _data(trace)
    valid = np.asarray(data.valid, dtype=bool)
    ap = np.asarray(data.ap, dtype=np.float64)[:, valid]
    deltas = identity_deltas(trace, settings)
    position = {c.condition: k for k, c in enumerate(deltas.comparisons)}
    if deltas.comparisons:
        boot = cluster_bootstrap(deltas.delta, deltas.identity, n_resamples=settings.n_bootstrap, seed=settings.seed)
        low, high = boot.interval(settings.ci_level)
    rows = []
    for comp in comparisons(trace, settings):
        if comp.condition not in position:
            row = {**clustered_signed_rank([], [], []), "mean_delta_ap": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                   **_query_effect_sizes(np.zeros(0), np.zeros(0), np.zeros(0)), **_missing_condition(comp)}
        else:
            k = position[comp.condition]
            base, cond = ap[comp.baseline_index], ap[comp.index]
            row = clustered_signed_rank(base, cond, deltas.identity)
            row.update(mean_delta_ap=float(boot.estimate[k]), ci_low=float(low[k]), ci_high=float(high[k]),
                       **_query_effect_sizes(deltas.delta[k], cond, base))
        rows.append({**comp.key(), **row})
    columns = ["unit", "n", "n_ids", "n_zero", "mean_delta_ap", "ci_low", "ci_high", "median_delta_ap", "rbc", "cles",
               "cles_paired", "statistic", "z", "p", "status", "reason"]
    frame = pd.DataFrame(rows)
    frame = frame[[c for c in frame.columns if c not in columns] + columns].astype(
        {"n": np.int64, "n_ids": np.int64, "n_zero": np.int64})
    return _order_columns(add_corrections(frame, settings.alpha))


def paired_identity(trace, settings: AnalysisSettings | None = None) -> pd.DataFrame:
    """Identity-level sign-flip test and identity-bootstrap CI of ΔmAP (see :func:`identity_tests`)."""
    settings = settings or AnalysisSettings()
    deltas = identity_deltas(trace, settings)
    tested = identity_tests(
        deltas.delta, deltas.identity, n_bootstrap=settings.n_bootstrap,
        n_permutations=settings.n_permutations, ci_level=settings.ci_level, seed=settings.seed,
    ) if deltas.comparisons else pd.DataFrame()
    by_condition = {c.condition: i for i, c in enumerate(deltas.comparisons)}
    template = identity_tests(np.zeros((1, 0)), np.zeros(0)).iloc[0].to_dict()
    rows = []
    for comp in comparisons(trace, settings):
        if comp.condition in by_condition:
            row = tested.iloc[by_condition[comp.condition]].to_dict()
        else:
            row = {**template, **_missing_condition(comp)}
        rows.append({**comp.key(), **row})
    frame = pd.DataFrame(rows).astype({"n_ids": np.int64, "n_queries": np.int64, "n_bootstrap": np.int64,
                                       "n_permutations": np.int64, "exact": bool})
    return _order_columns(add_corrections(frame, settings.alpha))


# Table name -> function; analysis.analyze runs them as the "paired" method.
PAIRED_TESTS = {
    "paired_mcnemar": paired_mcnemar,
    "paired_wilcoxon": paired_wilcoxon,
    "paired_identity": paired_identity,
}


def paired_tables(trace, settings: AnalysisSettings | None = None) -> dict[str, pd.DataFrame]:
    """All three paired tables, keyed by their :mod:`analysis.results` names."""
    settings = settings or AnalysisSettings()
    return {name: test(trace, settings) for name, test in PAIRED_TESTS.items()}
