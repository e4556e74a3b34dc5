"""analysis.stats.resampling: the identity-weight matrices and the cluster bootstrap / sign-flip core."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from analysis.stats.resampling import (
    cluster_bootstrap,
    identity_sums,
    identity_weights,
    percentile_interval,
    sign_flip,
    sign_flip_weights,
)


def _clustered(seed=0, n_ids=30):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, size=n_ids)
    ids = np.repeat(np.arange(100, 100 + n_ids), sizes)        # labels need not be 0..n-1
    values = rng.normal(0.0, 1.0, size=(3, ids.size)) + rng.normal(0, 1, size=(3, n_ids)).repeat(sizes, 1)
    return values, ids, sizes


def test_identity_sums_match_a_groupby():
    values, ids, sizes = _clustered()
    sums = identity_sums(values, ids)
    assert sums.n_identities == 30 and sums.counts.tolist() == sizes.tolist()
    for j, label in enumerate(sums.labels):
        np.testing.assert_allclose(sums.sums[:, j], values[:, ids == label].sum(1))
    np.testing.assert_allclose(sums.estimate, values.mean(1))
    np.testing.assert_allclose(sums.identity_means.mean(1),
                               [np.mean([row[ids == i].mean() for i in np.unique(ids)]) for row in values])


def test_weights_are_seeded_multinomial_counts():
    w = identity_weights(25, 400, seed=3)
    assert w.shape == (400, 25) and (w.sum(1) == 25).all() and (w >= 0).all()
    np.testing.assert_array_equal(w, identity_weights(25, 400, seed=3))
    assert not np.array_equal(w, identity_weights(25, 400, seed=4))
    assert abs(w.mean() - 1.0) < 0.02


def test_cluster_bootstrap_equals_resampling_identities_by_hand():
    values, ids, _ = _clustered(1, n_ids=20)
    boot = cluster_bootstrap(values, ids, n_resamples=200, seed=7)
    weights = identity_weights(20, 200, seed=7)
    labels = np.unique(ids)
    for b in (0, 57, 199):
        chosen = np.repeat(labels, weights[b].astype(int))
        by_hand = np.concatenate([values[:, ids == i] for i in chosen], axis=1).mean(1)
        np.testing.assert_allclose(boot.replicates[b], by_hand)
    low, high = boot.interval(0.9)
    np.testing.assert_allclose(low, np.quantile(boot.replicates, 0.05, axis=0))
    np.testing.assert_allclose(high, np.quantile(boot.replicates, 0.95, axis=0))


def test_exact_sign_flip_matches_enumeration():
    rng = np.random.default_rng(2)
    ids = np.repeat(np.arange(7), [1, 3, 2, 1, 4, 2, 1])
    values = rng.normal(0.3, 1.0, size=ids.size)
    result = sign_flip(values, ids)
    means = np.array([values[ids == i].mean() for i in range(7)])
    null = np.array([abs((np.array(s) * means).mean()) for s in itertools.product([-1, 1], repeat=7)])
    assert result.exact and result.n_patterns == 128
    assert result.p[0] == pytest.approx(np.mean(null >= abs(means.mean()) - 1e-12))
    signs, exact = sign_flip_weights(40, 500, seed=1)
    assert not exact and signs.shape == (500, 40) and set(np.unique(signs)) == {-1.0, 1.0}


def test_sign_flip_holds_its_level_with_clustered_nulls():
    """Identity effects shared by all of an identity's queries: the test still rejects ~5%."""
    rejections = []
    for seed in range(200):
        values, ids, _ = _clustered(seed, n_ids=30)
        rejections.append(sign_flip(values[0], ids, n_resamples=400, seed=seed).p[0] <= 0.05)
    assert 0.02 <= np.mean(rejections) <= 0.09


def test_percentile_interval_skips_undefined_resamples():
    reps = np.array([[1.0, np.nan], [2.0, 1.0], [3.0, 2.0], [4.0, 3.0]])
    low, high = percentile_interval(reps, 0.5)
    assert low[0] == pytest.approx(1.75) and low[1] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="ci_level"):
        percentile_interval(reps, 1.5)
