"""The identity-valid statistics against their reference implementations in R, from stored values.

``tests/reference/<name>.R`` runs the reference package (clubSandwich, metafor, clust.bin.pair,
clusrank, PropCIs, R's stats) on the packages' own example datasets and stores the inputs, the
results and the versions of R and of every package in ``tests/reference/<name>.json``
(``make reference`` regenerates them). These tests read only the JSON: R is not needed.

Tolerances: closed forms 1e-9 relative; iterative fits (the GLM's coefficients, the root of
Paule–Mandel and of the Q-profile) 1e-6 relative; Tango's interval 1e-6 absolute, because PropCIs
stops its bisection at a step of 1e-7.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from analysis.methods.query.glm import cr2_inference
from analysis.stats.cluster_robust import cr2, glm_working_parts
from analysis.stats.clustered import clustered_mcnemar, clustered_signed_rank, rank1_difference_interval, tango_interval
from analysis.stats.concordance import kendalls_w
from analysis.stats.corrections import benjamini_hochberg, holm
from analysis.stats.glm import fit_glm
from analysis.stats.metaanalysis import between_seed_variance, combination, generalised_q

REFERENCE = Path(__file__).parent / "reference"
CLOSED_FORM = {"rtol": 1e-9, "atol": 0.0}
ITERATIVE = {"rtol": 1e-6, "atol": 0.0}
TANGO = {"rtol": 0.0, "atol": 1e-6}


@lru_cache(maxsize=None)
def _stored(name: str) -> dict:
    return json.loads((REFERENCE / f"{name}.json").read_text())


def _cases(name: str, part: str | None = None) -> list:
    cases = _stored(name)["cases"]
    cases = cases[part] if part else cases
    return [pytest.param(case, id=key) for key, case in cases.items()]


def _numbers(values) -> np.ndarray:
    """A stored vector as floats, ``null`` (R's NA) as NaN."""
    values = values if isinstance(values, list) else [values]
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def test_every_reference_script_has_its_stored_values_with_versions():
    scripts = sorted(p.stem for p in REFERENCE.glob("*.R") if p.name != "common.R")
    assert scripts == sorted(p.stem for p in REFERENCE.glob("*.json"))
    for name in scripts:
        stored = _stored(name)
        assert stored["script"] == f"{name}.R" and stored["r_version"].startswith("R version")
        assert stored["packages"] and all(stored["packages"].values())


# --------------------------------------------------------------------------- CR2 of GLMs (clubSandwich)
def _glm_parts(case: dict):
    X = np.column_stack(case["X"]).astype(float)
    successes = _numbers(case["successes"])
    trials = None if case["trials"] is None else _numbers(case["trials"])
    return X, successes, trials, np.asarray(case["cluster"])


def _check_against_clubsandwich(robust, beta: np.ndarray, case: dict, tolerance: dict) -> None:
    np.testing.assert_allclose(robust.se, case["se"], **tolerance)
    np.testing.assert_allclose(robust.cov, np.column_stack(case["vcov"]), **tolerance)
    df = [robust.satterthwaite_df(c) for c in np.eye(len(beta))]
    np.testing.assert_allclose(df, case["df_satterthwaite"], **tolerance)
    for hypothesis in case["htz"]:
        terms = np.atleast_1d(hypothesis["terms"]).tolist()
        contrasts = np.eye(len(beta))[:, [case["terms"].index(t) for t in terms]]
        test = robust.hotelling(beta, contrasts)
        np.testing.assert_allclose([test["F"], test["df1"], test["df2"], test["p"]],
                                   [hypothesis["Fstat"], hypothesis["df_num"], hypothesis["df_denom"], hypothesis["p"]],
                                   **tolerance)


@pytest.mark.parametrize("case", _cases("cr2_glm"))
def test_cr2_se_df_and_htz_of_a_glm_equal_clubsandwichs(case):
    """Closed form: CR2 at clubSandwich's own estimate, weights varying within clusters."""
    X, successes, trials, clusters = _glm_parts(case)
    beta = np.asarray(case["coef"])
    Xw, residuals, response_variance = glm_working_parts(X, successes, expit(X @ beta), trials)
    _check_against_clubsandwich(cr2(Xw, residuals, clusters, response_variance=response_variance),
                                beta, case, CLOSED_FORM)
    # the comparison can tell the forms apart: the adjustment on the working scale is off here
    working_scale = cr2(Xw, residuals, clusters)
    assert np.max(np.abs(working_scale.se / np.asarray(case["se"]) - 1)) > 1e-4


@pytest.mark.parametrize("case", _cases("cr2_glm"))
def test_query_glm_inference_from_its_own_fit_equals_clubsandwichs(case):
    """The path the query GLM takes: fit_glm (with the binomial trials where there are any), then
    cr2_inference; its coefficients come from its own iterative fit."""
    X, successes, trials, clusters = _glm_parts(case)
    design = pd.DataFrame(X[:, 1:], columns=case["terms"][1:])
    result = fit_glm(successes, design, family="binomial", trials=trials, clusters=clusters)
    assert result.rows_used.all()
    beta = np.asarray(result.fit.params)
    np.testing.assert_allclose(beta, case["coef"], **ITERATIVE)
    inference = cr2_inference(result, clusters, 0.95)
    np.testing.assert_allclose(inference["df"], case["df_satterthwaite"], **ITERATIVE)
    np.testing.assert_allclose(inference["p"], case["p_satterthwaite"], **ITERATIVE)
    _check_against_clubsandwich(inference["cr2"], beta, case, ITERATIVE)


# --------------------------------------------------------------- Durkalski and Tango (clust.bin.pair, PropCIs)
@pytest.mark.parametrize("case", _cases("clustered_paired", "durkalski_tango"))
def test_clustered_mcnemar_equals_durkalskis_test_of_clust_bin_pair(case):
    row = clustered_mcnemar(np.asarray(case["baseline"], bool), np.asarray(case["condition"], bool),
                            np.asarray(case["cluster"]))
    reference = case["durkalski"]
    np.testing.assert_allclose(row["chi2"], reference["chi2"], **CLOSED_FORM)
    # with few discordant identities the p-value is the exact sign-flip one, not chi-square's
    expected_p = reference["exact_sign_flip_p"] if row["exact"] else reference["p"]
    np.testing.assert_allclose(row["p"], expected_p, **CLOSED_FORM)
    rank1 = case["rank1"]
    assert (row["b"], row["c"], row["n"]) == (rank1["b"], rank1["c"], rank1["n"])
    np.testing.assert_allclose([row["delta_rank1"], row["design_effect"]], [rank1["delta"], rank1["design_effect"]],
                               **CLOSED_FORM)
    np.testing.assert_allclose([row["ci_low"], row["ci_high"]], [rank1["ci_low"], rank1["ci_high"]], **TANGO)


@pytest.mark.parametrize("case", _cases("clustered_paired", "tango"))
def test_tango_interval_equals_propcis_scoreci_mp(case):
    low, high = tango_interval(case["n"], case["b"], case["c"], case["conf_level"])
    np.testing.assert_allclose([low, high], [case["ci_low"], case["ci_high"]], **TANGO)


def test_rank1_interval_with_one_query_per_identity_is_tangos():
    case = _stored("clustered_paired")["cases"]["tango"]["example"]
    b, c, n = int(case["b"]), int(case["c"]), int(case["n"])
    baseline = np.r_[np.ones(b), np.zeros(c), np.ones(n - b - c)].astype(bool)
    condition = np.r_[np.zeros(b), np.ones(c), np.ones(n - b - c)].astype(bool)
    row = rank1_difference_interval(baseline, condition, np.arange(n))
    assert row["design_effect"] == 1.0
    np.testing.assert_allclose([row["ci_low"], row["ci_high"]], [case["ci_low"], case["ci_high"]], **TANGO)


# ------------------------------------------------------------------------- Datta–Satten (clusrank)
@pytest.mark.parametrize("case", _cases("clustered_paired", "datta_satten"))
def test_clustered_signed_rank_equals_clusranks_datta_satten(case):
    difference, cluster = _numbers(case["difference"]), np.asarray(case["cluster"])
    # clusrank needs the rows sorted by cluster; mosaic does not: give them shuffled
    order = np.random.default_rng(0).permutation(difference.size)
    row = clustered_signed_rank(np.zeros(difference.size), difference[order], cluster[order])
    np.testing.assert_allclose([row["statistic"], (row["statistic"] / row["z"]) ** 2, row["z"], row["p"]],
                               [case["statistic"], case["variance"], case["z"], case["p"]], **CLOSED_FORM)


# ------------------------------------------------------------- Paule–Mandel and pooled effects (metafor, t.test)
@pytest.mark.parametrize("case", _cases("metaanalysis", "heterogeneity"))
def test_between_seed_variance_equals_metafors_paule_mandel_and_q_profile(case):
    result = between_seed_variance(_numbers(case["yi"]), np.diag(case["vi"]), case["conf_level"])
    np.testing.assert_allclose(result["q"], case["q"], **CLOSED_FORM)
    np.testing.assert_allclose([result["tau2"], result["tau2_low"], result["tau2_high"]],
                               [case["tau2"], case["tau2_low"], case["tau2_high"]], **ITERATIVE)


def test_generalised_q_of_independent_runs_is_cochrans_q_even_with_very_unequal_variances():
    theta = np.array([0.3, -0.1, 0.25, 0.05])
    variances = np.array([1e-9, 1e-2, 3e-3, 5e-2])       # one run a million times more precise
    weights = 1.0 / variances
    mean = np.sum(weights * theta) / weights.sum()
    assert generalised_q(theta, np.diag(variances), 0.0) == pytest.approx(np.sum(weights * (theta - mean) ** 2), rel=1e-12)


@pytest.mark.parametrize("key,coefficients", [("mean_label0", {0: 1.0}), ("contrast_label0_minus_label1", {0: 1.0, 1: -1.0})])
def test_pooled_effects_of_independent_runs_equal_the_t_intervals_of_t_test(key, coefficients):
    pooled = _stored("metaanalysis")["cases"]["pooled"]
    reference = pooled[key]
    result = combination(_numbers(pooled["theta"]), np.diag(pooled["vi"]), np.asarray(pooled["label"]),
                         coefficients, n_ids=100, ci_level=reference["conf_level"])
    names = ["estimate", "se", "df", "ci_low", "ci_high", "statistic", "p"]
    np.testing.assert_allclose([result[n] for n in names], [reference[n] for n in names], **CLOSED_FORM)


# ------------------------------------------------------------------- Holm, BH and Kendall's W (R's stats)
@pytest.mark.parametrize("case", _cases("corrections"))
def test_holm_and_bh_equal_p_adjust_with_untested_entries(case):
    p = _numbers(case["p"])
    np.testing.assert_allclose(holm(p), _numbers(case["holm"]), equal_nan=True, **CLOSED_FORM)
    np.testing.assert_allclose(benjamini_hochberg(p), _numbers(case["bh"]), equal_nan=True, **CLOSED_FORM)


@pytest.mark.parametrize("case", _cases("concordance"))
def test_kendalls_w_equals_friedman_test(case):
    ranks = np.array(case["ranks"], dtype=float)
    w = kendalls_w(ranks)
    np.testing.assert_allclose([w["w"], w["chi2"], w["df"], w["p"]],
                               [case["w"], case["chi2"], case["df"], case["p"]], **CLOSED_FORM)
