"""Paired tests and corrections, cross-checked against scipy, statsmodels and pingouin."""

from __future__ import annotations

import itertools

import numpy as np
import pingouin as pg
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests

from analysis.stats.corrections import benjamini_hochberg, holm
from analysis.methods.paired import (
    identity_tests,
    mcnemar_exact,
    paired_identity,
    paired_mcnemar,
    paired_tables,
    paired_wilcoxon,
    wilcoxon_signed_rank,
)
from analysis.settings import AnalysisSettings
from analysis.simulation.trace import simulate

SETTINGS = AnalysisSettings(n_bootstrap=400, n_permutations=400, seed=0)


# ------------------------------------------------------------------------------- corrections
@pytest.mark.parametrize("seed", range(5))
def test_corrections_match_statsmodels_on_finite_input(seed):
    p = np.random.default_rng(seed).uniform(0, 0.2, size=17) ** 2
    p[3] = p[4]  # a tie
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])
    np.testing.assert_allclose(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1])


def test_nan_stays_in_its_slot_and_does_not_spread():
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan])
    finite = p[np.isfinite(p)]
    for ours, method in ((holm, "holm"), (benjamini_hochberg, "fdr_bh")):
        out = ours(p)
        assert np.isnan(out[[1, 4]]).all()
        np.testing.assert_allclose(out[np.isfinite(p)], multipletests(finite, method=method)[1])
    assert np.isnan(holm([np.nan, np.nan])).all()
    assert holm([]).size == 0


# ---------------------------------------------------------------------------------- McNemar
@pytest.mark.parametrize("b,c", [(7, 3), (0, 5), (12, 0), (20, 21), (1, 1)])
def test_mcnemar_matches_statsmodels_and_binomtest(b, c):
    base = np.array([1] * b + [0] * c + [1] * 30 + [0] * 9, bool)
    cond = np.array([0] * b + [1] * c + [1] * 30 + [0] * 9, bool)
    out = mcnemar_exact(base, cond)
    assert (out["b"], out["c"], out["n"]) == (b, c, b + c + 39)
    assert out["delta_rank1"] == pytest.approx(cond.mean() - base.mean())
    table = [[30, b], [c, 9]]
    assert out["p"] == pytest.approx(sm_mcnemar(table, exact=True).pvalue)
    assert out["p"] == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue)
    ci = stats.binomtest(b, b + c).proportion_ci(0.95, method="exact")
    with np.errstate(divide="ignore"):
        assert out["ci_low"] == pytest.approx(ci.low / (1 - ci.low))
        assert out["ci_high"] == pytest.approx(ci.high / (1 - ci.high) if ci.high < 1 else np.inf)
    assert out["ci_low"] <= out["odds_ratio"] <= out["ci_high"]
    assert out["status"] == "ok"


def test_mcnemar_without_discordant_pairs_is_not_tested():
    hits = np.array([1, 1, 0, 1], bool)
    out = mcnemar_exact(hits, hits)
    assert out["status"] == "not tested" and "discordant" in out["reason"]
    assert np.isnan(out["p"]) and out["delta_rank1"] == 0
    assert mcnemar_exact([], [])["status"] == "not estimable"


# --------------------------------------------------------------------------------- Wilcoxon
@pytest.mark.parametrize("seed", range(4))
def test_wilcoxon_matches_scipy_and_pingouin(seed):
    rng = np.random.default_rng(seed)
    base = rng.uniform(size=80)
    cond = np.clip(base - rng.normal(0.05, 0.1, size=80), 0, 1)
    cond[:10] = base[:10]  # zero differences
    cond[10:14] = base[10:14] - 0.05  # tied |d|
    out = wilcoxon_signed_rank(base, cond)
    ref = stats.wilcoxon(cond - base)
    assert out["W"] == pytest.approx(ref.statistic) and out["p"] == pytest.approx(ref.pvalue)
    pgw = pg.wilcoxon(cond, base, correction=False)
    assert out["W"] == pytest.approx(pgw["W_val"].iloc[0])
    assert out["p"] == pytest.approx(pgw["p_val"].iloc[0])
    assert out["rbc"] == pytest.approx(pgw["RBC"].iloc[0])
    assert out["cles"] == pytest.approx(pgw["CLES"].iloc[0])
    d = cond - base
    assert out["n_zero"] == 10 and out["mean_delta_ap"] == pytest.approx(d.mean())
    assert out["cles_paired"] == pytest.approx(np.mean(d > 0) + 0.5 * np.mean(d == 0))
    assert out["ci_low"] < out["mean_delta_ap"] < out["ci_high"]


def test_wilcoxon_all_zero_differences_is_not_tested():
    x = np.linspace(0, 1, 9)
    out = wilcoxon_signed_rank(x, x)
    assert out["status"] == "not tested" and np.isnan(out["p"]) and out["mean_delta_ap"] == 0


# -------------------------------------------------------------------------- identity level
def test_exact_sign_flip_matches_brute_force():
    rng = np.random.default_rng(4)
    ids = np.repeat(np.arange(6), [1, 2, 3, 1, 2, 3])
    delta = rng.normal(-0.1, 0.2, size=ids.size)
    row = identity_tests(delta, ids, n_bootstrap=200, seed=1).iloc[0]
    means = np.array([delta[ids == i].mean() for i in range(6)])
    observed = abs(means.mean())
    null = [abs((np.array(s) * means).mean()) for s in itertools.product([-1, 1], repeat=6)]
    assert row["exact"] and row["n_permutations"] == 64
    assert row["p"] == pytest.approx(np.mean(np.array(null) >= observed - 1e-12))
    assert row["delta_map"] == pytest.approx(delta.mean())
    assert row["mean_identity_delta"] == pytest.approx(means.mean())


def test_bootstrap_ci_equals_a_plain_loop_over_resampled_identities():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(40), 3)
    delta = rng.normal(-0.05, 0.1, size=ids.size)
    row = identity_tests(delta, ids, n_bootstrap=300, n_permutations=300, seed=9).iloc[0]
    from analysis.methods.paired import bootstrap_weights

    weights = bootstrap_weights(40, 300, 9)
    loop = []
    for w in weights:
        chosen = np.repeat(np.arange(40), w.astype(int))  # identity i taken w[i] times
        loop.append(np.concatenate([delta[ids == i] for i in chosen]).mean())
    assert row["ci_low"] == pytest.approx(np.quantile(loop, 0.025))
    assert row["ci_high"] == pytest.approx(np.quantile(loop, 0.975))
    assert not row["exact"] and 0 < row["p"] <= 1


def test_one_identity_and_all_zero_are_not_tested():
    rows = identity_tests(np.array([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]]), np.array([5, 5, 5]), n_bootstrap=100)
    assert rows["status"].tolist() == ["not tested", "not tested"]
    assert "one identity" in rows["reason"][0] and "zero" in rows["reason"][1]
    assert rows["p"].isna().all()


# ----------------------------------------------------------------------------- on a trace
@pytest.fixture(scope="module")
def trace():
    return simulate(n_ids=120, groups=5, effects={"g03": 1.5, "g04": 3.0}, n_subsets=0,
                    kinds=("oracle", "drop", "counterfactual"), missing_rate={"g02": 1.0}, seed=2)


def test_tables_have_one_row_per_group_and_comparison(trace):
    tables = paired_tables(trace, SETTINGS)
    for name, frame in tables.items():
        assert len(frame) == 10, name
        assert frame[["group", "comparison"]].drop_duplicates().shape[0] == 10
        assert {"p", "p_holm", "p_bh", "reject_holm", "reject_bh", "status", "reason"} <= set(frame.columns)
        ok = frame["status"] == "ok"
        assert frame.loc[ok, "p"].between(0, 1).all() and frame.loc[ok, "p_holm"].notna().all()
        assert frame.loc[~ok, ["p", "p_holm", "p_bh"]].isna().all().all()
        assert not frame.loc[~ok, "reject_holm"].any()


def test_large_effects_detected_null_and_inactive_groups_not(trace):
    for frame in paired_tables(trace, SETTINGS).values():
        frame = frame.set_index(["comparison", "group"])
        for comparison in ("drop", "counterfactual"):
            assert frame.loc[(comparison, "g04"), "reject_holm"]
            assert frame.loc[(comparison, "g02"), "status"] == "not tested"  # never annotated
    identity = paired_identity(trace, SETTINGS).set_index(["comparison", "group"])
    assert identity.loc[("drop", "g04"), "ci_high"] < 0
    assert identity.loc[("drop", "g02"), "delta_map"] == 0


def test_corrections_are_within_each_comparison(trace):
    frame = paired_wilcoxon(trace, SETTINGS)
    for _, block in frame.groupby("comparison"):
        ok = block["status"] == "ok"
        np.testing.assert_allclose(block.loc[ok, "p_holm"], multipletests(block.loc[ok, "p"], method="holm")[1])
        np.testing.assert_allclose(block.loc[ok, "p_bh"], multipletests(block.loc[ok, "p"], method="fdr_bh")[1])


def test_missing_counterfactual_condition_of_one_group_is_a_not_tested_row(trace):
    from analysis.trace import Trace

    d = trace.data
    sliced = d.select_conditions(np.array([n != "counterfactual:g01" for n in d.condition_name.tolist()]))
    frame = paired_mcnemar(Trace(sliced), SETTINGS).set_index(["comparison", "group"])
    assert frame.loc[("counterfactual", "g01"), "status"] == "not tested"
    assert "counterfactual:g01" in frame.loc[("counterfactual", "g01"), "reason"]
