"""Identity-cluster resampling: the one core every identity-valid interval and test is built on.

Queries of one identity share its attribute states, so identities, not queries, are the
independent units. Every statistic here is a function of **per-identity sums**: for ``K``
per-query quantities (ΔAP of K comparisons, AP of K conditions, rank-1 differences, ...) and
``n`` identities, :func:`identity_sums` reduces the ``(K, n_queries)`` values to a ``(K, n)`` sum
matrix and an ``(n,)`` query count. A resampling scheme is then an **identity-weight matrix**
``W`` of shape ``(n_resamples, n)``:

- the cluster bootstrap draws multinomial counts (:func:`identity_weights`): row ``b`` says how
  often each identity is drawn in resample ``b``; a query mean on that resample is
  ``(W @ sums.T) / (W @ counts)``;
- the sign-flip test draws ``±1`` per identity (:func:`sign_flip_weights`); under the null each
  identity's mean is symmetric about zero, so ``W @ identity_means.T`` is the null distribution of
  the (sum of) identity means.

Thousands of resamples of dozens of quantities are therefore a single matrix product, and every
quantity resampled with the same ``W`` is resampled *jointly* (family means, rank intervals and
configuration-level refits all see the same identities in each resample).

Random streams are keyed by ``(seed, scheme)``: one scheme's draws do not depend on which other
methods ran, and the same seed gives the same numbers.

Public functions
----------------
identity_weights(n_identities, n_resamples, seed) -> (n_resamples, n_identities) float counts
sign_flip_weights(n_identities, n_resamples, seed) -> (signs, exact)
identity_sums(values, identity) -> IdentitySums
cluster_bootstrap(values, identity, *, n_resamples, seed) -> ClusterBootstrap
sign_flip(values, identity, *, n_resamples, seed) -> SignFlip
percentile_interval(replicates, ci_level) -> (low, high)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "STREAM_BOOTSTRAP",
    "STREAM_SIGN_FLIP",
    "EXACT_SIGN_FLIP_MAX_IDS",
    "identity_weights",
    "sign_flip_weights",
    "IdentitySums",
    "identity_sums",
    "ClusterBootstrap",
    "cluster_bootstrap",
    "SignFlip",
    "sign_flip",
    "percentile_interval",
]

# Independent random streams per resampling scheme.
STREAM_BOOTSTRAP = 1
STREAM_SIGN_FLIP = 2
EXACT_SIGN_FLIP_MAX_IDS = 12  # up to 4,096 sign patterns: enumerate them instead of sampling


def identity_weights(n_identities: int, n_resamples: int, seed: int) -> np.ndarray:
    """Identity-cluster bootstrap as multinomial counts: ``(n_resamples, n_identities)``.

    Each row sums to ``n_identities`` (a resample of identities with replacement, all of each
    drawn identity's queries kept). Counts instead of index lists let every statistic that is a
    ratio of per-identity sums be resampled with one matrix product.
    """
    n_identities, n_resamples = int(n_identities), int(n_resamples)
    if n_identities < 1:
        return np.zeros((n_resamples, 0))
    rng = np.random.default_rng([int(seed), STREAM_BOOTSTRAP])
    return rng.multinomial(n_identities, np.full(n_identities, 1.0 / n_identities),
                           size=n_resamples).astype(np.float64)


def sign_flip_weights(n_identities: int, n_resamples: int, seed: int) -> tuple[np.ndarray, bool]:
    """Sign-flip patterns ``(P, n_identities)`` of ``±1`` and whether they are all ``2**n`` of them.

    With at most :data:`EXACT_SIGN_FLIP_MAX_IDS` identities every pattern is enumerated (an exact
    test); otherwise ``n_resamples`` patterns are drawn from the seeded stream.
    """
    n_identities = int(n_identities)
    if n_identities <= EXACT_SIGN_FLIP_MAX_IDS:
        codes = np.arange(2**n_identities)[:, None] >> np.arange(n_identities)[None, :] & 1
        return 1.0 - 2.0 * codes, True
    rng = np.random.default_rng([int(seed), STREAM_SIGN_FLIP])
    return rng.choice(np.array([-1.0, 1.0]), size=(int(n_resamples), n_identities)), False


@dataclass(frozen=True)
class IdentitySums:
    """Per-identity sums of ``K`` per-query quantities.

    ``labels`` (n,) the identities in sorted order; ``member`` (n_queries,) each query's position
    in ``labels``; ``counts`` (n,) queries per identity; ``sums`` (K, n) each quantity summed over
    an identity's queries.
    """

    labels: np.ndarray
    member: np.ndarray
    counts: np.ndarray
    sums: np.ndarray

    @property
    def n_identities(self) -> int:
        return int(self.counts.size)

    @property
    def estimate(self) -> np.ndarray:
        """(K,) the query mean of each quantity (e.g. ΔmAP): total sum over total count."""
        total = self.counts.sum()
        return self.sums.sum(1) / total if total else np.full(self.sums.shape[0], np.nan)

    @property
    def identity_means(self) -> np.ndarray:
        """(K, n) each identity's mean of each quantity."""
        return self.sums / self.counts[None, :]

    def resample(self, weights: np.ndarray) -> np.ndarray:
        """(B, K) query means on each weighted resample of identities (``weights``: (B, n))."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ self.sums.T) / (weights @ self.counts)[:, None]


def identity_sums(values, identity) -> IdentitySums:
    """Reduce ``values`` (``(K, n_queries)``, or one quantity as 1-D) to per-identity sums.

    ``identity`` (``(n_queries,)``) labels each query's identity; any hashable-sortable labels.
    """
    values = np.atleast_2d(np.asarray(values, dtype=float))
    identity = np.asarray(identity)
    if values.shape[1] != identity.size:
        raise ValueError(f"values have {values.shape[1]} queries but identity has {identity.size}")
    labels, member = np.unique(identity, return_inverse=True)
    member = member.reshape(-1)
    n = labels.size
    counts = np.bincount(member, minlength=n).astype(np.float64)
    if values.shape[0] == 0 or n == 0:
        sums = np.zeros((values.shape[0], n))
    else:
        # one sparse-like accumulation for all K rows: index (k, member) flattened
        flat = (np.arange(values.shape[0])[:, None] * n + member[None, :]).ravel()
        sums = np.bincount(flat, weights=values.ravel(), minlength=values.shape[0] * n).reshape(values.shape[0], n)
    return IdentitySums(labels, member, counts, sums)


@dataclass(frozen=True)
class ClusterBootstrap:
    """Query means and their identity-cluster bootstrap replicates.

    ``estimate`` (K,) on the data; ``replicates`` (B, K) on each resample of identities;
    ``n_identities``; ``n_resamples``.
    """

    estimate: np.ndarray
    replicates: np.ndarray
    n_identities: int
    n_resamples: int

    def interval(self, ci_level: float) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of each quantity at ``ci_level`` (NaN with fewer than 2 identities)."""
        if self.n_identities < 2:
            nan = np.full(self.estimate.shape, np.nan)
            return nan, nan.copy()
        return percentile_interval(self.replicates, ci_level)


def cluster_bootstrap(values, identity, *, n_resamples: int = 1000, seed: int = 0,
                      weights: np.ndarray | None = None) -> ClusterBootstrap:
    """Identity-cluster bootstrap of the query means of ``values`` (``(K, n_queries)`` or 1-D).

    Pass ``weights`` (from :func:`identity_weights` over the same sorted identities) to share
    resamples across calls; otherwise they are drawn from ``seed``.
    """
    sums = identity_sums(values, identity)
    if weights is None:
        weights = identity_weights(sums.n_identities, n_resamples, seed)
    return ClusterBootstrap(sums.estimate, sums.resample(weights), sums.n_identities, int(weights.shape[0]))


@dataclass(frozen=True)
class SignFlip:
    """Identity sign-flip test of ``mean over identities of each identity's mean = 0``.

    ``statistic`` (K,) the mean of identity means; ``p`` (K,) two-sided; ``n_patterns``; ``exact``
    (every pattern enumerated, so ``p`` is the exact share, else ``(1 + #extreme) / (1 + P)``).
    """

    statistic: np.ndarray
    p: np.ndarray
    n_patterns: int
    exact: bool


def sign_flip(values, identity, *, n_resamples: int = 2000, seed: int = 0) -> SignFlip:
    """Two-sided identity sign-flip test of each row of ``values`` (``(K, n_queries)`` or 1-D).

    Under the null, each identity's mean is symmetric about zero (e.g. its queries' outcomes under
    the two conditions are exchangeable), so flipping the sign of whole identities gives the null
    distribution of the mean of identity means; queries within an identity keep their dependence.
    """
    sums = identity_sums(values, identity)
    means = sums.identity_means
    n = sums.n_identities
    statistic = means.mean(1) if n else np.full(means.shape[0], np.nan)
    signs, exact = sign_flip_weights(n, n_resamples, seed)
    null = np.abs(signs @ means.T) / max(n, 1)                                   # (P, K)
    # a relative tolerance keeps patterns that equal the observed statistic up to rounding
    extreme = null >= np.abs(statistic)[None, :] * (1.0 - 1e-12) - 1e-15
    p = extreme.mean(0) if exact else (1.0 + extreme.sum(0)) / (1.0 + signs.shape[0])
    return SignFlip(statistic, p, int(signs.shape[0]), exact)


def percentile_interval(replicates, ci_level: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed percentile interval of each column of ``replicates`` (``(B, K)``) at ``ci_level``.

    Replicates that are not finite (a resample with no query of a quantity) are left out.
    """
    replicates = np.asarray(replicates, dtype=float)
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must lie strictly between 0 and 1, got {ci_level}")
    tail = (1.0 - ci_level) / 2.0
    if replicates.ndim == 1:
        replicates = replicates[:, None]
    if np.isfinite(replicates).all():
        low, high = np.quantile(replicates, [tail, 1.0 - tail], axis=0)
    else:
        low, high = np.nanquantile(np.where(np.isfinite(replicates), replicates, np.nan), [tail, 1.0 - tail], axis=0)
    return low, high
