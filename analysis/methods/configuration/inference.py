"""Identity-valid inference for the configuration-level models.

Every configuration is scored on the same test identities, so its mAP and Rank-1 are not
independent trials: a coefficient's sampling error comes from *which identities* the test set
happened to contain. Here each configuration's outcome is recomputed on identity-cluster
bootstrap resamples, from per-identity sums, and the model refitted on every resample:

* per configuration ``c`` and identity ``i``: the summed AP and the rank-1 hits of the
  identity's valid queries, and the identity's number of valid queries;
* a resample is a row of multinomial identity counts ``w`` (:mod:`analysis.stats.resampling`), so the
  resampled mAP of every configuration is ``(w @ ap_sum.T) / (w @ n)``: all resamples at once
  are one matrix product;
* the Gaussian GLM (OLS) of mAP has a fixed design, so its refit on every resample is the
  product with the design's pseudo-inverse; the binomial GLM is refitted by Newton-Raphson
  (IRLS) on all resamples together, warm-started at the point estimate.

The spread of the refitted coefficients over resamples is the standard error that holds for new
identities; it is used with a t reference distribution on ``n_ids - 1`` degrees of freedom
(clusters minus one, the usual small-sample reference of cluster-based inference).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from analysis.stats.resampling import identity_sums

__all__ = ["WALD_COLUMNS", "IdentityOutcomes", "identity_outcomes", "ols_refit", "logistic_refit", "resampled_wald", "RESAMPLED_UNIT"]

# What the identity-valid columns resample (the ``resampled`` column of every table here).
RESAMPLED_UNIT = "identities"
# table column -> key of :func:`resampled_wald`'s result
WALD_COLUMNS = {"se": "se", "ci_low": "ci_low", "ci_high": "ci_high", "t": "stat", "df": "df", "p": "p",
                "n_resamples": "n_resamples"}


@dataclass(frozen=True)
class IdentityOutcomes:
    """Per-identity sums of the configurations' outcomes: ``(n_configs, n_ids)`` arrays."""

    ap_sum: np.ndarray
    hits: np.ndarray
    n_valid: np.ndarray        # (n_ids,) valid queries of each identity

    @property
    def n_ids(self) -> int:
        return int(self.n_valid.size)

    def mean_ap(self, weights: np.ndarray) -> np.ndarray:
        """mAP of every configuration on each resample ``(B, n_configs)``."""
        return (weights @ self.ap_sum.T) / (weights @ self.n_valid)[:, None]

    def hit_counts(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rank-1 hits ``(B, n_configs)`` and valid queries ``(B, 1)`` on each resample."""
        return weights @ self.hits.T, (weights @ self.n_valid)[:, None]


def identity_outcomes(data, condition_index: np.ndarray) -> IdentityOutcomes:
    """Per-identity AP sums and rank-1 hits of the conditions at ``condition_index`` (valid queries)."""
    valid = np.asarray(data.valid, dtype=bool)
    ap = np.asarray(data.ap, dtype=np.float64)[condition_index][:, valid]
    hit = np.asarray(data.rank1, dtype=np.float64)[condition_index][:, valid]
    sums = identity_sums(np.vstack([np.nan_to_num(ap), hit]), np.asarray(data.query_pid)[valid])
    k = len(condition_index)
    return IdentityOutcomes(sums.sums[:k], sums.sums[k:], sums.counts)


def ols_refit(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """OLS coefficients of every row of ``Y`` ``(B, n)`` on the fixed design ``X`` ``(n, p)``: ``(B, p)``."""
    return Y @ np.linalg.pinv(X).T


def logistic_refit(X: np.ndarray, hits: np.ndarray, trials: np.ndarray, start: np.ndarray,
                   *, max_iter: int = 25, tol: float = 1e-8) -> np.ndarray:
    """Binomial-logit MLE of every resample at once, by Newton-Raphson warm-started at ``start``.

    ``hits``, ``trials``: ``(B, n)``; ``X``: ``(n, p)``; ``start``: ``(p,)``. Returns ``(B, p)``;
    a resample that does not converge (a configuration with all hits or none after resampling)
    is NaN and is left out of the spread by the caller.
    """
    B = hits.shape[0]
    beta = np.tile(np.asarray(start, dtype=float), (B, 1))
    done = np.zeros(B, bool)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(max_iter):
            eta = beta @ X.T
            mu = 1.0 / (1.0 + np.exp(-eta))
            w = trials * mu * (1.0 - mu)                                         # (B, n)
            score = (hits - trials * mu) @ X                                     # (B, p)
            info = np.einsum("bn,ni,nj->bij", w, X, X)                           # (B, p, p)
            try:
                step = np.linalg.solve(info, score[..., None])[..., 0]
            except np.linalg.LinAlgError:
                step = np.stack([np.linalg.lstsq(m, s, rcond=None)[0] for m, s in zip(info, score)])
            beta = np.where(done[:, None], beta, beta + step)
            done |= np.abs(step).max(1) < tol * (1.0 + np.abs(beta).max(1))
            if done.all():
                break
    beta[~done | ~np.isfinite(beta).all(1)] = np.nan
    return beta


def resampled_wald(estimate: np.ndarray, draws: np.ndarray, n_ids: int, ci_level: float) -> dict[str, np.ndarray]:
    """Standard error, t statistic, two-sided p and ``ci_level`` interval from resampled estimates.

    ``draws`` ``(B, k)`` are the estimates refitted on identity resamples (NaN rows ignored).
    Reference distribution: t on ``n_ids - 1`` degrees of freedom.
    """
    estimate = np.asarray(estimate, dtype=float)
    se = np.nanstd(draws, axis=0, ddof=1) if len(draws) > 1 else np.full(estimate.shape, np.nan)
    df = max(n_ids - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, estimate / se, np.nan)
    half = stats.t.ppf(0.5 + ci_level / 2.0, df) * se
    return {
        "se": se, "stat": t, "p": 2.0 * stats.t.sf(np.abs(t), df), "ci_low": estimate - half,
        "ci_high": estimate + half, "df": np.full(estimate.shape, float(df)),
        "n_resamples": np.full(estimate.shape, int(np.isfinite(draws).all(1).sum()) if draws.ndim == 2 else 0),
    }
