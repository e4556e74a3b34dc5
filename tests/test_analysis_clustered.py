"""Clustered paired tests: hand computations, reduction to the ordinary tests, level under clustering."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from analysis.stats.clustered import (
    clustered_mcnemar,
    clustered_signed_rank,
    datta_satten_statistic,
    rank1_difference_interval,
    tango_interval,
)


def _pairs(cells):
    """Baseline/condition hits and identities from per-identity (a, b, c, d) cells."""
    base, cond, ids = [], [], []
    for k, (a, b, c, d) in enumerate(cells):
        for hit_base, hit_cond, count in ((1, 1, a), (1, 0, b), (0, 1, c), (0, 0, d)):
            base += [hit_base] * count
            cond += [hit_cond] * count
            ids += [k] * count
    return np.array(base, bool), np.array(cond, bool), np.array(ids)


# ------------------------------------------------------------------------------ clustered McNemar
def test_clustered_mcnemar_by_hand():
    # 14 identities so the chi-square branch is used; x_k = (c_k - b_k) / n_k
    cells = [(2, 1, 0, 1), (1, 2, 0, 0), (0, 0, 1, 2), (3, 1, 0, 0), (1, 0, 1, 1), (2, 2, 0, 1), (0, 1, 1, 2),
             (1, 1, 0, 0), (2, 1, 0, 2), (1, 0, 2, 1), (0, 2, 0, 1), (1, 1, 0, 1), (3, 0, 1, 0), (1, 1, 0, 2)]
    base, cond, ids = _pairs(cells)
    x = np.array([(c - b) / (a + b + c + d) for a, b, c, d in cells])
    x = x[x != 0]
    assert x.size == 13
    chi2 = x.sum() ** 2 / np.sum(x**2)
    row = clustered_mcnemar(base, cond, ids)
    assert row["chi2"] == pytest.approx(chi2) and not row["exact"]
    assert row["p"] == pytest.approx(stats.chi2.sf(chi2, 1))
    assert (row["b"], row["c"], row["n_ids"], row["n_ids_discordant"]) == (13, 6, 14, 13)
    assert row["unit"] == "identity"


def test_clustered_mcnemar_few_discordant_identities_is_exact_sign_flip():
    cells = [(2, 2, 0, 0), (1, 1, 0, 1), (0, 0, 0, 3), (1, 3, 1, 0), (2, 0, 1, 1)]
    base, cond, ids = _pairs(cells)
    x = np.array([(c - b) / (a + b + c + d) for a, b, c, d in cells])
    x = x[x != 0]
    null = [abs(np.dot(s, x)) for s in itertools.product([-1, 1], repeat=x.size)]
    row = clustered_mcnemar(base, cond, ids)
    assert row["exact"] and row["p"] == pytest.approx(np.mean(np.array(null) >= abs(x.sum()) - 1e-12))


@pytest.mark.parametrize("b,c", [(30, 12), (3, 9), (0, 5), (7, 7)])
def test_clustered_mcnemar_reduces_to_mcnemar_with_one_query_per_identity(b, c):
    base, cond, _ = _pairs([(40, b, c, 20)])
    ids = np.arange(base.size)                                     # every query its own identity
    row = clustered_mcnemar(base, cond, ids)
    table = [[40, b], [c, 20]]
    if b + c > 12:   # asymptotic McNemar, no continuity correction
        ref = sm_mcnemar(table, exact=False, correction=False)
        assert row["chi2"] == pytest.approx(ref.statistic) and row["p"] == pytest.approx(ref.pvalue)
    else:            # exact McNemar (binomial)
        assert row["p"] == pytest.approx(sm_mcnemar(table, exact=True).pvalue)
    assert row["design_effect"] == pytest.approx(1.0)


def test_no_discordant_pairs_is_not_tested_but_has_an_interval():
    base, cond, ids = _pairs([(5, 0, 0, 1)] * 10)
    row = clustered_mcnemar(base, cond, ids)
    assert row["status"] == "not tested" and np.isnan(row["p"])
    assert row["ci_low"] < 0 < row["ci_high"]                   # Tango: never a zero-width interval


# ------------------------------------------------------------------------------ Δrank-1 interval
def _tango_statistic_by_likelihood(delta, n, b, c):
    """Score statistic with the constrained MLE found numerically (an independent reference)."""
    a = n - b - c

    def nll(p):
        q = p + delta
        rest = 1 - p - q
        return -(b * np.log(p) + c * np.log(q) + a * np.log(rest))

    lo = max(1e-12, -delta + 1e-12)
    hi = (1 - delta) / 2 - 1e-12
    p = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13}).x
    return ((c - b) - n * delta) / np.sqrt(n * (2 * p + delta - delta**2))


@pytest.mark.parametrize("n,b,c", [(50, 5, 2), (200, 3, 11), (80, 0, 4), (120, 9, 9)])
def test_tango_interval_endpoints_solve_the_score_equation(n, b, c):
    low, high = tango_interval(n, b, c, 0.95)
    z = stats.norm.ppf(0.975)
    assert low < (c - b) / n < high
    assert _tango_statistic_by_likelihood(low, n, b, c) == pytest.approx(z, abs=2e-3)
    assert _tango_statistic_by_likelihood(high, n, b, c) == pytest.approx(-z, abs=2e-3)


def test_design_effect_widens_the_interval_for_clustered_copies():
    rng = np.random.default_rng(1)
    base = rng.random(150) < 0.8
    cond = base ^ (rng.random(150) < 0.1)
    single = rank1_difference_interval(base, cond, np.arange(150))
    copied = rank1_difference_interval(np.repeat(base, 4), np.repeat(cond, 4), np.repeat(np.arange(150), 4))
    assert single["design_effect"] == pytest.approx(1.0)
    assert copied["design_effect"] == pytest.approx(4.0)
    # four copies of each identity carry the information of one: the same interval
    assert copied["ci_low"] == pytest.approx(single["ci_low"]) and copied["ci_high"] == pytest.approx(single["ci_high"])


# ---------------------------------------------------------------------------- clustered signed-rank
def _datta_satten_loop(x, cluster):
    """Datta & Satten (2008) written out cluster by cluster, as in the paper."""
    labels = np.unique(cluster)
    groups = [x[cluster == label] for label in labels]
    g, n = len(groups), x.size

    def f_i(v, i):
        a = np.abs(groups[i])
        return (np.sum(a <= v) + np.sum(a < v)) / (2 * a.size)

    def f_tot(v):
        return sum(f_i(v, i) for i in range(g))

    def f_com(v):
        return sum(f_i(v, i) * groups[i].size for i in range(g)) / n

    t = var = 0.0
    for i, xi in enumerate(groups):
        first = (np.sum(xi > 0) - np.sum(xi < 0)) / xi.size
        second = sum(np.sign(v) * (f_tot(abs(v)) - f_i(abs(v), i)) for v in xi) / xi.size
        third = sum(np.sign(v) * f_com(abs(v)) for v in xi) / xi.size
        t += first + second
        var += (first + (g - 1) * third) ** 2
    return t, var


def test_datta_satten_equals_the_cluster_by_cluster_formula():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 6, size=30)
    cluster = np.repeat(rng.permutation(np.arange(500, 530)), sizes)
    x = np.round(rng.normal(0.2, 1.0, size=cluster.size), 1)     # ties and zeros
    x[:4] = 0.0
    assert datta_satten_statistic(x, cluster) == pytest.approx(_datta_satten_loop(x, cluster))


def test_datta_satten_hand_computation_small_case():
    # identities A: (+1, -2), B: (+3); |d| mid-CDFs: F_A(1) = 1/4, F_A(2) = 3/4, F_A(3) = 1, F_B(1) = F_B(2) = 0, F_B(3) = 1/2
    x = np.array([1.0, -2.0, 3.0])
    cluster = np.array(["A", "A", "B"])
    # T = first_A + first_B + (1/2)[(+1)(F_tot(1) - F_A(1)) + (-1)(F_tot(2) - F_A(2))] + (+1)(F_tot(3) - F_B(3))
    #   = 0 + 1 + (1/2)[(0) - (0)] + (1) = 2
    # F_com(1) = 1/6, F_com(2) = 1/2, F_com(3) = 5/6; V = (0 + (1/2)(1/6 - 1/2))^2 + (1 + 5/6)^2
    t, v = datta_satten_statistic(x, cluster)
    assert t == pytest.approx(2.0)
    assert v == pytest.approx((0.5 * (1 / 6 - 1 / 2)) ** 2 + (1 + 5 / 6) ** 2)


def test_signed_rank_reduces_to_wilcoxon_with_one_query_per_identity():
    rng = np.random.default_rng(3)
    d = rng.normal(0.06, 1.0, size=2000)
    t, _ = datta_satten_statistic(d, np.arange(d.size))
    ranks = stats.rankdata(np.abs(d))
    assert t == pytest.approx(np.sum(np.sign(d) * ranks))          # W+ - W-
    row = clustered_signed_rank(np.zeros_like(d), d, np.arange(d.size))
    ordinary = stats.wilcoxon(d, method="approx", correction=False)
    assert row["p"] == pytest.approx(ordinary.pvalue, rel=0.02)   # large-sample normal form


# ------------------------------------------------------------------------ level under identity effects
def test_clustered_tests_hold_their_level_where_query_tests_do_not():
    """Each identity's effect is drawn around zero: query-level tests reject far too often."""
    rng = np.random.default_rng(7)
    reject = {"mcnemar": 0, "clustered_mcnemar": 0, "wilcoxon": 0, "clustered_signed_rank": 0}
    n_worlds, n_ids, per_id = 200, 60, 6
    ids = np.repeat(np.arange(n_ids), per_id)
    for _ in range(n_worlds):
        # identity-specific effect, mean 0, split between the two conditions so they are exchangeable
        shift = rng.normal(0.0, 1.5, size=n_ids)[ids]
        common = 1.0 + rng.normal(0, 1, size=n_ids)[ids] + rng.logistic(size=ids.size)
        base_z = common + shift / 2 + rng.logistic(size=ids.size) * 0.5
        cond_z = common - shift / 2 + rng.logistic(size=ids.size) * 0.5
        base_hit, cond_hit = base_z > 0, cond_z > 0
        b, c = int(np.sum(base_hit & ~cond_hit)), int(np.sum(~base_hit & cond_hit))
        reject["mcnemar"] += sm_mcnemar([[0, b], [c, 0]], exact=False, correction=False).pvalue <= 0.05
        reject["clustered_mcnemar"] += clustered_mcnemar(base_hit, cond_hit, ids)["p"] <= 0.05
        d = cond_z - base_z
        reject["wilcoxon"] += stats.wilcoxon(d).pvalue <= 0.05
        reject["clustered_signed_rank"] += clustered_signed_rank(base_z, cond_z, ids)["p"] <= 0.05
    rate = {k: v / n_worlds for k, v in reject.items()}
    assert rate["clustered_mcnemar"] <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / n_worlds), rate
    assert rate["clustered_signed_rank"] <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / n_worlds), rate
    assert rate["mcnemar"] > 0.2 and rate["wilcoxon"] > 0.2, rate


# ------------------------------------------------------------------------------------ on a trace
@pytest.fixture(scope="module")
def varying():
    """Planted effects that vary by identity (sd 0.5 around each group's mean)."""
    from analysis.methods.paired import paired_tables
    from analysis.settings import AnalysisSettings
    from analysis.simulation.trace import simulate

    effects = {f"g{i:02d}": 0.15 * (i + 1) for i in range(10)}
    trace = simulate(groups=10, effects=effects, effect_sd=0.5, n_ids=250, n_subsets=0,
                     kinds=("oracle", "drop", "counterfactual"), seed=0)
    return trace, effects, paired_tables(trace, AnalysisSettings(n_bootstrap=300, n_permutations=300))


def test_paired_tables_name_their_unit_and_draw_the_rank1_interval_from_analysis(varying):
    trace, _, tables = varying
    for name, frame in tables.items():
        assert (frame["unit"] == "identity").all(), name
    mcnemar = tables["paired_mcnemar"]
    ok = mcnemar["status"] == "ok"
    assert (mcnemar.loc[ok, "ci_low"] <= mcnemar.loc[ok, "delta_rank1"]).all()
    assert (mcnemar.loc[ok, "delta_rank1"] <= mcnemar.loc[ok, "ci_high"]).all()
    assert (mcnemar["design_effect"] >= 1).all()
    data = trace.data
    names = data.condition_name.tolist()
    row = mcnemar.set_index(["comparison", "group"]).loc[("drop", "g05")]
    direct = rank1_difference_interval(data.rank1[names.index("oracle")][data.valid],
                                       data.rank1[names.index("drop:g05")][data.valid], data.query_pid[data.valid])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((direct["ci_low"], direct["ci_high"]))
    # the signed-rank table's ΔmAP interval is the identity table's (same resamples)
    wilcoxon = tables["paired_wilcoxon"].set_index(["comparison", "group"])
    identity = tables["paired_identity"].set_index(["comparison", "group"])
    np.testing.assert_allclose(wilcoxon["ci_low"], identity["ci_low"])
    np.testing.assert_allclose(wilcoxon["mean_delta_ap"], identity["delta_map"])


def test_planted_order_recovered_by_every_paired_score_with_identity_varying_effects(varying):
    _, effects, tables = varying
    truth = pd.Series(effects)
    for table, column in (("paired_identity", "delta_map"), ("paired_mcnemar", "delta_rank1"),
                          ("paired_wilcoxon", "rbc"), ("paired_wilcoxon", "z")):
        for comparison, block in tables[table].groupby("comparison"):
            score = -block.set_index("group")[column]
            rho = stats.spearmanr(score, truth[score.index]).statistic
            assert rho >= 0.9, (table, column, comparison, rho)
