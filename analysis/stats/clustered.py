"""Paired tests whose unit is the identity: clustered McNemar, clustered signed-rank, Δrank-1 interval.

Queries of one identity share its attribute states, so their paired outcomes are correlated and a
test that counts queries as independent trials rejects far too often once a group's effect varies
between identities. The three functions here treat the **identity** as the independent unit and
reduce to their textbook forms when every identity has exactly one query:

- :func:`clustered_mcnemar` -- Durkalski, Palesch, Lipsitz & Rust (2003), "Analysis of clustered
  matched-pair data", *Stat Med* 22:2417-2428. With ``b_k`` / ``c_k`` the hits lost / gained in
  identity ``k`` (``n_k`` queries) and ``x_k = (c_k - b_k) / n_k``, the statistic is
  ``X2 = (sum_k x_k)^2 / sum_k x_k^2 ~ chi2(1)``; with one query per identity it is McNemar's
  uncorrected ``(c - b)^2 / (b + c)``. ``X2`` is the studentised form of the sign-flip
  randomisation of ``x_k`` over identities, so when at most
  :data:`analysis.stats.resampling.EXACT_SIGN_FLIP_MAX_IDS` identities have ``x_k != 0`` every sign
  pattern is enumerated instead (an exact test; with singletons, the exact binomial McNemar test).
  Obuchowski (1998) gives the same numerator with the query-weighted ``c_k - b_k``; Durkalski's
  identity weighting is used because it reduces exactly to McNemar and matches the identity
  sign-flip test's statistic (mean over identities).
- :func:`clustered_signed_rank` -- Datta & Satten (2008), "A signed-rank test for clustered data",
  *Biometrics* 64:501-507: within-cluster resampling weights (each identity counts once, however
  many queries it has, so informative cluster sizes do not bias it), a signed-rank statistic built
  from identity-weighted mid-distribution functions of ``|d|`` and its variance summed over
  identities; ``Z ~ N(0, 1)``. With one query per identity ``T`` is the signed-rank sum
  ``W+ - W-`` (mid-ranks, zeros ranked as in Pratt's version) and ``Var`` tends to its
  large-sample null variance.
- :func:`rank1_difference_interval` -- Tango's (1998) score interval for a difference of paired
  proportions, applied to the counts divided by the identity design effect (Rao & Scott 1992).
  Why this interval: the Wald interval collapses and under-covers when few pairs are discordant;
  a percentile bootstrap does the same (zero discordant pairs give ``[0, 0]``); Tango's score
  interval keeps its coverage for small discordant counts (Newcombe 1998; Agresti & Min 2005) and
  the design effect ``deff = sum_k (d_k - n_k D)^2 / sum_q (d_q - D)^2`` (identity-clustered over
  query-level variance of the Δrank-1 estimate ``D``, floored at 1) widens it by the information
  lost to clustering. ``deff = 1`` with one query per identity, so it is then Tango's interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import optimize, stats

from analysis.stats.resampling import EXACT_SIGN_FLIP_MAX_IDS, identity_sums, sign_flip_weights
from analysis.stats.status import NOT_ESTIMABLE, NOT_TESTED, OK

__all__ = ["UNIT", "clustered_mcnemar", "clustered_signed_rank", "rank1_difference_interval", "rank_biserial",
           "tango_interval"]

# The independent unit of every identity-valid table (the ``unit`` column).
UNIT = "identity"


# --------------------------------------------------------------------------- Δrank-1 interval
def _tango_z(delta: float, n: float, b: float, c: float) -> float:
    """Tango's score statistic for ``H0: p(gain) - p(loss) = delta`` (``b`` lost, ``c`` gained)."""
    # constrained MLE of p(loss) given p(gain) = p(loss) + delta: root of a quadratic
    w = (b + c) - delta * (2.0 * n + b - c)
    p_loss = (w + np.sqrt(max(w * w + 8.0 * n * b * delta * (1.0 - delta), 0.0))) / (4.0 * n)
    variance = n * (2.0 * p_loss + delta - delta * delta)
    if variance <= 0:
        return np.copysign(np.inf, (c - b) - n * delta) if (c - b) != n * delta else 0.0
    return ((c - b) - n * delta) / np.sqrt(variance)


def tango_interval(n: float, b: float, c: float, ci_level: float = 0.95) -> tuple[float, float]:
    """Tango's score interval of ``(c - b) / n``, the change in a paired proportion.

    ``n`` pairs, ``b`` pairs that lose the outcome, ``c`` that gain it (counts may be fractional:
    effective counts after a design-effect correction).
    """
    if n <= 0:
        return np.nan, np.nan
    z = stats.norm.ppf(0.5 + ci_level / 2.0)
    estimate = (c - b) / n
    eps = 1e-12
    low, high = -1.0, 1.0
    f_low = lambda d: _tango_z(d, n, b, c) - z  # noqa: E731 -- decreasing in d
    f_high = lambda d: _tango_z(d, n, b, c) + z  # noqa: E731
    if f_low(-1.0 + eps) > 0 and f_low(estimate) < 0:
        low = optimize.brentq(f_low, -1.0 + eps, estimate, xtol=1e-12)
    elif f_low(estimate) >= 0:  # estimate at the boundary
        low = estimate
    if f_high(1.0 - eps) < 0 and f_high(estimate) > 0:
        high = optimize.brentq(f_high, estimate, 1.0 - eps, xtol=1e-12)
    elif f_high(estimate) <= 0:
        high = estimate
    return float(low), float(high)


def rank1_difference_interval(baseline_hits, condition_hits, identity, *, ci_level: float = 0.95) -> dict[str, float]:
    """Δrank-1 ``= (c - b) / n`` with Tango's interval on identity-design-effect-corrected counts.

    Returns ``delta_rank1``, ``ci_low``, ``ci_high`` and ``design_effect`` (see the module text).
    """
    x = np.asarray(baseline_hits, dtype=float)
    y = np.asarray(condition_hits, dtype=float)
    n = x.size
    if n == 0:
        return {"delta_rank1": np.nan, "ci_low": np.nan, "ci_high": np.nan, "design_effect": np.nan}
    d = y - x
    b, c = float(np.sum(d < 0)), float(np.sum(d > 0))
    estimate = (c - b) / n
    sums = identity_sums(d, identity)
    clustered = float(np.sum((sums.sums[0] - sums.counts * estimate) ** 2))
    independent = float(np.sum((d - estimate) ** 2))
    deff = max(1.0, clustered / independent) if independent > 0 else 1.0
    low, high = tango_interval(n / deff, b / deff, c / deff, ci_level)
    return {"delta_rank1": estimate, "ci_low": low, "ci_high": high, "design_effect": deff}


# --------------------------------------------------------------------------- clustered McNemar
def clustered_mcnemar(baseline_hits, condition_hits, identity, *, ci_level: float = 0.95) -> dict[str, Any]:
    """Clustered McNemar test (Durkalski et al. 2003) of rank-1 hits, ``condition`` vs ``baseline``.

    Parameters
    ----------
    baseline_hits, condition_hits : ``(n_queries,)`` booleans of valid queries.
    identity : ``(n_queries,)`` identity label of each query.

    Returns a row: ``unit``, ``n`` (queries), ``n_ids``, ``n_ids_discordant`` (identities with
    ``c_k != b_k``), ``rank1_baseline``, ``rank1_condition``, ``delta_rank1``, ``ci_low``,
    ``ci_high`` (Δrank-1 interval, :func:`rank1_difference_interval`), ``design_effect``, ``b``,
    ``c``, ``chi2``, ``exact`` (p from every sign pattern), ``p``, ``status``, ``reason``.
    """
    x = np.asarray(baseline_hits, dtype=bool)
    y = np.asarray(condition_hits, dtype=bool)
    identity = np.asarray(identity)
    n = int(x.size)
    out: dict[str, Any] = {
        "unit": UNIT, "n": n, "n_ids": 0, "n_ids_discordant": 0,
        "rank1_baseline": float(x.mean()) if n else np.nan,
        "rank1_condition": float(y.mean()) if n else np.nan,
        "delta_rank1": np.nan, "ci_low": np.nan, "ci_high": np.nan, "design_effect": np.nan,
        "b": int(np.sum(x & ~y)), "c": int(np.sum(~x & y)),
        "chi2": np.nan, "exact": False, "p": np.nan, "status": OK, "reason": "",
    }
    if n == 0:
        return {**out, "status": NOT_ESTIMABLE, "reason": "no valid query"}
    out.update(rank1_difference_interval(x, y, identity, ci_level=ci_level))
    sums = identity_sums(y.astype(float) - x.astype(float), identity)
    per_identity = sums.identity_means[0]                        # x_k = (c_k - b_k) / n_k
    nonzero = per_identity[per_identity != 0]
    out["n_ids"], out["n_ids_discordant"] = sums.n_identities, int(nonzero.size)
    if sums.n_identities < 2:
        return {**out, "ci_low": np.nan, "ci_high": np.nan, "status": NOT_TESTED,
                "reason": "only one identity: identity-level inference needs two or more"}
    if out["b"] + out["c"] == 0:
        return {**out, "status": NOT_TESTED, "reason": "no discordant pairs: the condition changes no rank-1 hit"}
    if nonzero.size == 0:
        # discordant pairs cancel within every identity: no evidence either way
        return {**out, "chi2": 0.0, "p": 1.0}
    total = float(nonzero.sum())
    out["chi2"] = total**2 / float(np.sum(nonzero**2))
    if nonzero.size <= EXACT_SIGN_FLIP_MAX_IDS:
        signs, _ = sign_flip_weights(nonzero.size, 0, seed=0)    # every pattern: no draw
        null = np.abs(signs @ nonzero)
        out["p"] = float(np.mean(null >= abs(total) * (1.0 - 1e-12) - 1e-15))
        out["exact"] = True
    else:
        out["p"] = float(stats.chi2.sf(out["chi2"], 1))
    return out


# ------------------------------------------------------------------------ clustered signed-rank
def _mid_cdf(sorted_values: np.ndarray, cum_weights: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``sum_l w_l (1[v_l <= at] + 1[v_l < at]) / 2`` for weights summed in ``cum_weights``."""
    padded = np.concatenate([[0.0], cum_weights])
    return 0.5 * (padded[np.searchsorted(sorted_values, at, side="right")]
                  + padded[np.searchsorted(sorted_values, at, side="left")])


def datta_satten_statistic(delta, identity) -> tuple[float, float]:
    """Datta–Satten's signed-rank statistic ``T`` of ``delta`` and its null variance ``V``."""
    d = np.asarray(delta, dtype=float)
    sums = identity_sums(d, identity)
    member, n_i, g = sums.member, sums.counts, sums.n_identities
    n = d.size
    a = np.abs(d)
    sign = np.sign(d)
    inv_size = 1.0 / n_i[member]                                        # each identity weighs 1
    order = np.argsort(a, kind="stable")
    a_sorted = a[order]
    # F_tot(x) = sum over identities of the identity's mid-CDF of |d|
    f_tot = _mid_cdf(a_sorted, np.cumsum(inv_size[order]), a)
    # F_com(x): the pooled mid-CDF over all queries
    f_com = _mid_cdf(a_sorted, np.cumsum(np.full(n, 1.0 / n)), a)
    # F_i(x) of the query's own identity: mid-counts within the identity, via sorted (identity, |d|)
    rank = np.searchsorted(a_sorted, a, side="left")                    # ties share a rank
    key = member.astype(np.int64) * (n + 1) + rank
    keys = np.sort(key)
    start = np.searchsorted(keys, member.astype(np.int64) * (n + 1), side="left")
    f_own = 0.5 * ((np.searchsorted(keys, key, side="right") - start)
                   + (np.searchsorted(keys, key, side="left") - start)) * inv_size
    first = np.bincount(member, weights=sign, minlength=g) / n_i          # (n_i+ - n_i-) / n_i
    second = np.bincount(member, weights=sign * (f_tot - f_own), minlength=g) / n_i
    third = np.bincount(member, weights=sign * f_com, minlength=g) / n_i
    statistic = float(np.sum(first + second))
    variance = float(np.sum((first + (g - 1) * third) ** 2))
    return statistic, variance


def rank_biserial(d: np.ndarray) -> float:
    """The matched-pairs rank-biserial correlation of the paired differences ``d`` (Kerby 2014): the
    share of the absolute differences' rank sum that rose minus the share that fell, zeros dropped.
    It describes the queries whether or not they are tested as independent."""
    nonzero = d[d != 0]
    ranks = stats.rankdata(np.abs(nonzero))
    return float((ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()) / ranks.sum())


def clustered_signed_rank(baseline, condition, identity) -> dict[str, Any]:
    """Clustered Wilcoxon signed-rank test (Datta & Satten 2008) of ``condition - baseline``.

    Non-finite pairs are dropped. Returns ``unit``, ``n``, ``n_ids``, ``n_zero``, ``statistic``
    (``T``), ``z``, ``rbc`` (matched-pairs rank-biserial correlation over queries, Kerby 2014: an
    effect size, no inference), ``p`` (two-sided normal), ``status``, ``reason``.
    """
    x = np.asarray(condition, dtype=float)
    y = np.asarray(baseline, dtype=float)
    identity = np.asarray(identity)
    keep = np.isfinite(x) & np.isfinite(y)
    d, identity = x[keep] - y[keep], identity[keep]
    n = int(d.size)
    out: dict[str, Any] = {"unit": UNIT, "n": n, "n_ids": int(np.unique(identity).size), "n_zero": int(np.sum(d == 0)),
                           "statistic": np.nan, "z": np.nan, "rbc": np.nan, "p": np.nan, "status": OK, "reason": ""}
    if n == 0:
        return {**out, "status": NOT_ESTIMABLE, "reason": "no valid query"}
    if out["n_zero"] == n:
        return {**out, "status": NOT_TESTED, "reason": "every ΔAP is zero: the condition changes no query's AP"}
    out["rbc"] = rank_biserial(d)
    if out["n_ids"] < 2:
        return {**out, "status": NOT_TESTED, "reason": "only one identity: identity-level inference needs two or more"}
    statistic, variance = datta_satten_statistic(d, identity)
    out["statistic"] = statistic
    if variance <= 0:
        return {**out, "status": NOT_TESTED, "reason": "the signed-rank statistic has no variance over identities"}
    out["z"] = statistic / np.sqrt(variance)
    out["p"] = float(2.0 * stats.norm.sf(abs(out["z"])))
    return out
