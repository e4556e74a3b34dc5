"""Random-effects meta-analysis over training runs: seeds as replicates, identities as the sampling unit.

A study holds several runs (training seeds) per label (dataset, backbone, config). For one
quantity (e.g. a group's ΔmAP when dropped), run ``r`` of label ``L`` estimates

    theta_r = mu_L + u_r + e_r,     u_r ~ N(0, tau_L^2),     e ~ N(0, Sigma)

where ``u_r`` is the run's deviation from the label's mean (training randomness: initialisation,
sampling order, augmentation) and ``e_r`` the error of evaluating it on a finite set of test
identities. ``Sigma`` is the identity-sampling covariance of the runs' errors, from the
identity-cluster bootstrap (:mod:`analysis.stats.resampling`): runs traced on the **same** test set
resample the same identities in each replicate, so their errors are correlated (often strongly:
an identity that is easy to tell apart without a group is easy for every seed), and runs on
different test sets get independent draws (``Sigma`` block-diagonal).

Why not textbook DerSimonian–Laird: it assumes independent within-run errors. Seeds evaluated on
one test set share their identities, so the runs scatter *less* than their standard errors
suggest, DL truncates tau² at 0 far too often, and the pooled interval ignores that the shared
identity error does not average out over seeds. Both quantities below use the full ``Sigma``:

- **Between-seed variance** ``tau_L^2``: Paule–Mandel, the ``tau^2`` at which the generalised
  ``Q(tau^2) = min_mu (theta - mu)' (tau^2 I + Sigma)^-1 (theta - mu)`` equals its expectation
  ``k - 1``; its interval is the Q-profile (Viechtbauer 2007): ``Q(tau^2)`` at the true value is
  chi-square with ``k - 1`` degrees of freedom under the model, and it decreases in ``tau^2``.
- **Pooled effects and contrasts** are equal-weight means of a label's runs (seeds are
  exchangeable replicates on the same data, their standard errors nearly equal, and weights from a
  tau² estimated on 2–5 seeds would add noise rather than remove it). Their variance is
  estimated without tau² (in the spirit of Hartung–Knapp: from the observed scatter of the runs)::

      Var(sum_L a_L mean_L) = sum_L a_L^2 S_L^2 / k_L  +  identity part

  where ``S_L^2`` is the sample variance of label L's run estimates (unbiased for
  ``tau_L^2`` plus the non-shared part of the identity error) and the identity part is the shared
  covariance the scatter cannot see (the mean covariance between distinct runs, from ``Sigma``).
  With independent test sets the identity part is zero and the interval is exactly the t
  interval on ``k - 1`` degrees of freedom; with a shared test set the degrees of freedom come
  from Welch–Satterthwaite (seed part on ``k_L - 1``, identity part on ``n_ids - 1``), or, with
  ``df_method="conservative"``, the smallest ``k_L - 1`` (coverage at least nominal).
- A label with **one** run has no seed replication: its interval holds for new identities only
  (``seed_valid = False``), with ``tau^2`` unknown.

Public functions
----------------
between_seed_variance(theta, cov, ci_level) -> dict(tau2, tau2_low, tau2_high, q, k)
combination(theta, cov, label_of_run, coefficients, n_ids, ci_level) -> dict(estimate, se, df, ...)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import optimize, stats

__all__ = ["between_seed_variance", "generalised_q", "combination", "DF_METHODS"]

# floor under the smallest eigenvalue of tau^2 I + Sigma, relative to the data's scale: keeps it
# invertible at tau^2 = 0 when runs share every identity, and leaves a Sigma already above it
# exact (a diagonal Sigma then gives Cochran's Q to rounding)
_RIDGE = 1e-10


def generalised_q(theta: np.ndarray, cov: np.ndarray, tau2: float) -> float:
    """``min_mu (theta - mu 1)' (tau2 I + cov)^-1 (theta - mu 1)``: the generalised Cochran Q."""
    k = theta.size
    scale = max(float(np.mean(np.diag(cov))), float(np.var(theta)), 1e-30) if k else 1e-30
    lowest = float(np.linalg.eigvalsh(cov)[0]) if k else 0.0
    v = cov + (tau2 + max(_RIDGE * scale - lowest, 0.0)) * np.eye(k)
    inv = np.linalg.pinv(v, hermitian=True)
    ones = np.ones(k)
    mu = float(ones @ inv @ theta / (ones @ inv @ ones))
    r = theta - mu
    return float(r @ inv @ r)


def _solve(theta, cov, target: float, upper: float) -> float:
    """The ``tau^2 >= 0`` at which ``Q(tau^2) = target`` (0 when ``Q(0)`` is already below it)."""
    f = lambda t: generalised_q(theta, cov, t) - target  # noqa: E731 - decreasing in t
    if f(0.0) <= 0:
        return 0.0
    hi = upper
    for _ in range(200):
        if f(hi) < 0:
            break
        hi *= 4.0
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-14 + 1e-10 * hi, rtol=1e-10))


def between_seed_variance(theta, cov, ci_level: float = 0.95) -> dict[str, Any]:
    """Paule–Mandel ``tau^2`` of ``theta`` (``(k,)`` run estimates) with its Q-profile interval.

    ``cov`` is the ``(k, k)`` identity-sampling covariance of the run estimates. With fewer than
    two runs, or non-finite input, every number is NaN.
    """
    theta = np.asarray(theta, dtype=float)
    cov = np.asarray(cov, dtype=float)
    k = theta.size
    nan = {"tau2": np.nan, "tau2_low": np.nan, "tau2_high": np.nan, "q": np.nan, "k": int(k)}
    if k < 2 or not (np.all(np.isfinite(theta)) and np.all(np.isfinite(cov))):
        return nan
    spread = float(np.var(theta, ddof=1)) + float(np.mean(np.diag(cov)))
    if spread <= 0:  # every run the same and no identity error (e.g. an effect exactly 0 for every query)
        return {**nan, "tau2": 0.0, "tau2_low": 0.0, "tau2_high": 0.0, "q": 0.0}
    alpha = 1.0 - ci_level
    q0 = generalised_q(theta, cov, 0.0)
    tau2 = _solve(theta, cov, k - 1.0, spread)
    low = _solve(theta, cov, float(stats.chi2.ppf(1 - alpha / 2, k - 1)), spread)
    high = _solve(theta, cov, float(stats.chi2.ppf(alpha / 2, k - 1)), spread)
    return {"tau2": tau2, "tau2_low": low, "tau2_high": high, "q": q0, "k": int(k)}


DF_METHODS = ("satterthwaite", "conservative")


def combination(theta, cov, label_of_run, coefficients, n_ids: int, ci_level: float = 0.95,
                df_method: str = "satterthwaite") -> dict[str, Any]:
    """Estimate, standard error and t interval of ``sum_L a_L * mean(theta of label L)``.

    Parameters
    ----------
    theta : ``(R,)`` run estimates.
    cov : ``(R, R)`` identity-sampling covariance of the run estimates.
    label_of_run : ``(R,)`` label index of each run.
    coefficients : ``{label index: a_L}``; ``{L: 1}`` is label L's pooled effect, ``{A: 1, B: -1}``
        the contrast of A against B.
    n_ids : identities behind the identity part (the smallest test set involved), for its
        degrees of freedom.
    df_method : ``"satterthwaite"`` (Welch–Satterthwaite over the seed parts and the identity part;
        slightly liberal with three seeds, when the seeds' scatter happens to be small) or
        ``"conservative"`` (the smallest ``k_L - 1`` of the labels involved, as Hsu's solution of
        the Behrens–Fisher problem: coverage at least nominal, wide with two or three seeds).

    Returns ``estimate, se, df, ci_low, ci_high, statistic, p`` (two-sided t test of 0),
    ``var_seed`` and ``var_identity`` (the two parts of the variance) and ``seed_valid`` (every
    label involved has at least two runs; otherwise the seed part of such a label is unknown and
    left out, so the interval holds for new identities, not for a new training run).
    """
    theta = np.asarray(theta, dtype=float)
    cov = np.asarray(cov, dtype=float)
    label_of_run = np.asarray(label_of_run)
    c = np.zeros(theta.size)
    seed_parts, seed_dfs, seed_valid = [], [], True
    within = 0.0  # the non-shared identity variance already inside the S_L^2 terms
    for label, a in coefficients.items():
        runs = np.flatnonzero(label_of_run == label)
        k = runs.size
        if k == 0:
            raise ValueError(f"label {label} has no runs")
        c[runs] = a / k
        if k >= 2:
            s2 = float(np.var(theta[runs], ddof=1))
            seed_parts.append(a * a * s2 / k)
            seed_dfs.append(k - 1)
            block = cov[np.ix_(runs, runs)]
            centred_trace = float(np.trace(block) - block.sum() / k)   # tr(C Sigma C)
            within += a * a * centred_trace / (k * (k - 1))
        else:
            seed_valid = False
    estimate = float(c @ theta)
    var_identity = max(float(c @ cov @ c) - within, 0.0)
    var_seed = float(sum(seed_parts))
    var = var_seed + var_identity
    out = {"estimate": estimate, "var_seed": var_seed, "var_identity": var_identity, "seed_valid": seed_valid}
    if not (np.isfinite(var) and var > 0 and np.isfinite(estimate)):
        return {**out, "se": np.nan, "df": np.nan, "ci_low": np.nan, "ci_high": np.nan, "statistic": np.nan, "p": np.nan}
    # Welch–Satterthwaite: each label's seed part on k_L - 1 df, the identity part on n_ids - 1
    denominator = sum(p * p / d for p, d in zip(seed_parts, seed_dfs))
    denominator += var_identity ** 2 / max(int(n_ids) - 1, 1)
    df = var * var / denominator if denominator > 0 else np.inf
    if df_method == "conservative" and seed_dfs:
        df = float(min(seed_dfs))
    elif df_method not in DF_METHODS:
        raise ValueError(f"df_method must be one of {DF_METHODS}, got {df_method!r}")
    se = float(np.sqrt(var))
    t = float(stats.t.ppf(0.5 + ci_level / 2, df)) if np.isfinite(df) else float(stats.norm.ppf(0.5 + ci_level / 2))
    statistic = estimate / se
    p = float(2 * stats.t.sf(abs(statistic), df)) if np.isfinite(df) else float(2 * stats.norm.sf(abs(statistic)))
    return {**out, "se": se, "df": float(df), "ci_low": estimate - t * se, "ci_high": estimate + t * se,
            "statistic": float(statistic), "p": p}
