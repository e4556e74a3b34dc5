"""Configuration-level analysis: recovery of planted effects, cross-checks, degenerate designs."""

from __future__ import annotations

import copy
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.methods.configuration.level import (
    SURROGATES,
    ConfigurationOptions,
    config_ttest,
    configuration_design,
    configuration_level,
)
from analysis.settings import AnalysisSettings
from analysis.simulation.trace import simulate, simulate_data
from analysis.stats.glm import INTERCEPT, fit_glm
from analysis.trace import Trace
from mosaic.core.errors import MosaicError

GROUPS = [f"g{i:02d}" for i in range(10)]
# distinct magnitudes, two groups that hurt retrieval (negative), small enough that mAP stays
# roughly linear in the number of enabled groups
TRUTH = 0.05 * np.array([3, -4, 5, 6, -7, 8, 9, 10, 11, 12])
KINDS = ("oracle", "none", "drop", "only", "subset")
FAST = {"configuration": {"rf_n_estimators": 50, "permutation_repeats": 5, "cv_folds": 3, "surrogate_resamples": 10}}
TABLES = ("config_glm_binomial", "config_glm_gaussian", "config_surrogate", "config_ttest")


def spearman(a, b) -> float:
    return float(stats.spearmanr(a, b)[0])


@pytest.fixture(scope="module")
def planted():
    trace = simulate(
        n_ids=100, queries_per_id=4, groups=10, effects=dict(zip(GROUPS, TRUTH)),
        n_subsets=300, kinds=KINDS, seed=2,
    )
    return trace, configuration_level(trace, {"seed": 0, "options": FAST})


def _group_rows(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table["group"] != ""].set_index("group").loc[GROUPS]
    assert (rows["status"] == "ok").all(), rows[rows["status"] != "ok"]["reason"]
    return rows


# ------------------------------------------------------------------------------ recovery
@pytest.mark.parametrize("table, score", [
    ("config_glm_binomial", "coef"),
    ("config_glm_gaussian", "coef"),
    ("config_ttest", "diff"),
])
def test_signed_effects_recover_the_planted_ranking_and_signs(planted, table, score):
    rows = _group_rows(planted[1][table])
    assert spearman(rows[score], TRUTH) >= 0.9
    assert (np.sign(rows[score]) == np.sign(TRUTH)).all()


@pytest.mark.parametrize("model", sorted(SURROGATES))
def test_surrogates_recover_importance_ranking_and_direction(planted, model):
    table = planted[1]["config_surrogate"]
    rows = _group_rows(table[table["model"] == model])
    assert spearman(rows["mean_abs_shap"], np.abs(TRUTH)) >= 0.9
    assert spearman(rows["perm_importance_mean"], np.abs(TRUTH)) >= 0.9
    assert spearman(rows["shap_direction"], TRUTH) >= 0.9
    assert (np.sign(rows["shap_direction"]) == np.sign(TRUTH)).all()
    assert rows["r2_cv"].iloc[0] > 0.5  # a surrogate worth explaining
    assert set(rows["rank_shap"]) == set(range(1, 11))


def test_group_terms_are_significant_and_corrections_cover_only_group_rows(planted):
    table = planted[1]["config_glm_gaussian"]
    intercept = table[table["term"] == INTERCEPT]
    assert intercept["p_holm"].isna().all()
    rows = _group_rows(table)
    floor = rows["p"] * (1 - 1e-12)  # equal up to rounding when nothing is adjusted
    assert (rows["p_holm"] >= floor).all() and (rows["p_bh"] >= floor).all()
    assert (rows["ci_low"] < rows["coef"]).all() and (rows["coef"] < rows["ci_high"]).all()


# ------------------------------------------------------------------------------ cross-checks
def test_welch_t_test_matches_scipy_and_pingouin(planted):
    pingouin = pytest.importorskip("pingouin")
    trace, results = planted
    conditions = trace.conditions
    subsets = conditions[conditions["kind"] == "subset"]
    row = results["config_ttest"].set_index("group").loc["g07"]
    on = subsets.loc[subsets["enabled:g07"], "mAP"].to_numpy()
    off = subsets.loc[~subsets["enabled:g07"], "mAP"].to_numpy()
    ref = stats.ttest_ind(on, off, equal_var=False)
    assert row["t_conditional"] == pytest.approx(ref.statistic)
    assert row["p_conditional"] == pytest.approx(ref.pvalue)
    assert (row["n_on"], row["n_off"]) == (len(on), len(off))
    ci = ref.confidence_interval(0.95)
    assert [row["ci_low_conditional"], row["ci_high_conditional"]] == pytest.approx([ci.low, ci.high])
    pg = pingouin.ttest(on, off, correction=True)
    pg_cols = {c.lower().replace("-", "_"): c for c in pg.columns}
    assert row["t_conditional"] == pytest.approx(float(pg[pg_cols["t"]].iloc[0]))
    assert row["df_conditional"] == pytest.approx(float(pg[pg_cols["dof"]].iloc[0]))
    assert row["p_conditional"] == pytest.approx(float(pg[pg_cols.get("p_val", pg_cols.get("p_value"))].iloc[0]))
    pg_ci = np.asarray(pg[[c for k, c in pg_cols.items() if k.startswith("ci")][0]].iloc[0], dtype=float)
    assert [row["ci_low_conditional"], row["ci_high_conditional"]] == pytest.approx(list(pg_ci), abs=0.005)  # pingouin rounds to 2 digits
    # pingouin's Cohen's d uses the pooled standard deviation, as documented in our table
    assert row["cohens_d"] == pytest.approx(float(pg[pg_cols["cohen_d"]].iloc[0]), rel=1e-6)


def test_gaussian_glm_equals_ols(planted):
    import statsmodels.api as sm

    trace, results = planted
    design = configuration_design(trace, ConfigurationOptions())
    X = sm.add_constant(design.indicators[GROUPS].to_numpy())
    ols = sm.OLS(design.configs["mAP"].to_numpy(), X).fit()
    table = results["config_glm_gaussian"]
    np.testing.assert_allclose(table["coef"], ols.params, rtol=1e-8)
    np.testing.assert_allclose(table["se_conditional"], ols.bse, rtol=1e-8)
    np.testing.assert_allclose(table["p_conditional"], ols.pvalues, rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(table[["ci_low_conditional", "ci_high_conditional"]], ols.conf_int(0.05), rtol=1e-8)


def test_binomial_glm_counts_rank1_hits_of_valid_queries(planted):
    import statsmodels.api as sm

    trace, results = planted
    design = configuration_design(trace, ConfigurationOptions())
    d = trace.data
    keep = np.isin(d.condition_kind, KINDS)
    hits = d.rank1[keep][:, d.valid].sum(axis=1)
    np.testing.assert_array_equal(design.configs["hits"], hits)
    X = sm.add_constant(design.indicators[GROUPS].to_numpy())
    endog = np.column_stack([hits, d.valid.sum() - hits])
    ref = sm.GLM(endog, X, family=sm.families.Binomial()).fit(scale="X2")
    np.testing.assert_allclose(results["config_glm_binomial"]["coef"], ref.params, rtol=1e-6)
    np.testing.assert_allclose(results["config_glm_binomial"]["se_conditional"], ref.bse, rtol=1e-6)


def test_xgboost_contributions_sum_to_the_prediction(planted):
    import xgboost as xgb

    trace, _ = planted
    options = ConfigurationOptions(xgb_n_estimators=30)
    design = configuration_design(trace, options)
    X = design.indicators[GROUPS].to_numpy()
    fit, explain = SURROGATES["xgboost"](options, 0)
    model = fit(X, design.configs["mAP"].to_numpy())
    full = model.get_booster().predict(xgb.DMatrix(X), pred_contribs=True)
    np.testing.assert_allclose(full.sum(axis=1), model.predict(X), atol=1e-5)
    np.testing.assert_allclose(explain(model, X), full[:, :-1])


def test_random_forest_shap_sums_to_prediction_minus_expected_value(planted):
    import shap

    trace, _ = planted
    options = ConfigurationOptions(rf_n_estimators=20)
    design = configuration_design(trace, options)
    X = design.indicators[GROUPS].to_numpy()
    fit, explain = SURROGATES["random_forest"](options, 0)
    model = fit(X, design.configs["mAP"].to_numpy())
    values = explain(model, X)
    expected = float(np.ravel(shap.TreeExplainer(model).expected_value)[0])
    np.testing.assert_allclose(values.sum(axis=1) + expected, model.predict(X), atol=1e-8)


def test_same_seed_same_numbers_and_seed_matters(planted):
    trace, results = planted
    again = configuration_level(trace, {"seed": 0, "options": FAST})
    for name in TABLES:
        pd.testing.assert_frame_equal(results[name], again[name])
    other = configuration_level(trace, {"seed": 1, "options": FAST})["config_surrogate"]
    assert not np.allclose(other["perm_importance_mean"], results["config_surrogate"]["perm_importance_mean"])


# --------------------------------------------------------------------------- degenerate designs
def _small(**kwargs) -> Trace:
    base = dict(n_ids=30, queries_per_id=2, groups=10, effects=dict(zip(GROUPS, TRUTH)), n_subsets=40, kinds=KINDS, seed=3)
    base.update(kwargs)
    return Trace(simulate_data(**base))


def _edited(trace: Trace, edit) -> Trace:
    data = copy.deepcopy(trace.data)
    edit(data)
    return Trace(data)


def _assert_clean(results: dict[str, pd.DataFrame]) -> None:
    """Rows that are not ok carry a reason and no p-value; ok rows have finite numbers."""
    for name, table in results.items():
        bad = table["status"] != "ok"
        assert set(table["status"]) <= {"ok", "not estimable", "not tested"}, name
        assert (table.loc[bad, "reason"].str.len() > 0).all(), name
        assert (table.loc[~bad, "reason"] == "").all(), name
        p_columns = [c for c in ("p", "p_holm", "p_bh") if c in table]
        assert table.loc[bad, p_columns].isna().all().all(), name
        if name != "config_surrogate":
            ok_groups = ~bad & (table.get("term", pd.Series("", index=table.index)) != INTERCEPT)
            assert np.isfinite(table.loc[ok_groups, p_columns].to_numpy(dtype=float)).all(), name


def test_no_subset_conditions_means_not_tested_everywhere():
    results = configuration_level(_small(kinds=("oracle", "none", "drop", "only")), {"options": FAST})
    _assert_clean(results)
    for name in TABLES:
        table = results[name]
        assert (table["status"] == "not tested").all(), name
        assert table["reason"].str.contains("subset").all(), name


def test_too_few_configurations_is_not_tested_with_the_count():
    results = configuration_level(_small(kinds=("oracle", "subset"), n_subsets=8), {"options": FAST})
    _assert_clean(results)
    reason = results["config_glm_gaussian"]["reason"].iloc[0]
    assert (results["config_glm_gaussian"]["status"] == "not tested").all()
    assert "9 configurations for 11 parameters" in reason


@pytest.mark.parametrize("enabled, word", [(True, "enabled"), (False, "disabled")])
def test_a_group_that_never_varies_is_not_estimable_and_the_rest_still_fit(enabled, word):
    def constant(data):
        data.enabled_groups[:, 3] = enabled

    results = configuration_level(_edited(_small(), constant), {"options": FAST})
    _assert_clean(results)
    for name in TABLES:
        table = results[name]
        g03 = table[table["group"] == "g03"]
        assert (g03["status"] == "not estimable").all(), name
        assert g03["reason"].str.contains(f"never varies: {word} in all").all(), name
        others = table[(table["group"] != "g03") & (table["group"] != "")]
        assert (others["status"] == "ok").all(), name


def test_one_identity_still_runs_but_nothing_is_tested():
    results = configuration_level(_small(n_ids=1, queries_per_id=6), {"options": FAST})
    _assert_clean(results)
    table = results["config_glm_gaussian"]
    assert (table["status"] == "not tested").all()
    assert table["reason"].str.contains("1 identity").all()
    # the paper's numbers, conditional on the one identity, are still there beside the empty test
    assert np.isfinite(table["coef"]).all() and np.isfinite(table["p_conditional"]).all()


def test_two_groups_always_enabled_together_are_reported_as_aliased():
    def tied(data):
        data.enabled_groups[:, 5] = data.enabled_groups[:, 4]

    table = configuration_level(_edited(_small(), tied), {"options": FAST})["config_glm_gaussian"]
    row = table.set_index("group").loc["g05"]
    assert row["status"] == "not estimable" and "aliased" in row["reason"] and "enabled:g04" in row["reason"]
    assert table.set_index("group").loc["g04", "status"] == "ok"


def test_separation_in_the_binomial_glm_is_detected_not_fitted():
    # every configuration with g02 enabled reaches 100 % rank-1: the MLE of its term is infinite
    def perfect(data):
        on = data.enabled_groups[:, 2] & np.isin(data.condition_kind, KINDS)
        data.rank1[on] = data.valid[None, :]
        data.cmc[on, 0] = 1.0

    table = configuration_level(_edited(_small(), perfect), {"options": FAST})["config_glm_binomial"]
    _assert_clean({"config_glm_binomial": table})
    row = table.set_index("group").loc["g02"]
    assert row["status"] == "not estimable" and "separation" in row["reason"]
    rest = table[(table["group"] != "g02")]
    assert (rest["status"] == "ok").all()
    assert (rest["coef"].abs() < 10).all()


def test_every_query_a_hit_gives_reasons_not_nan_p_values():
    def all_hit(data):
        data.rank1[:] = data.valid[None, :]
        data.cmc[:, :] = 1.0

    results = configuration_level(_edited(_small(), all_hit), {"options": FAST})
    _assert_clean(results)
    binomial = results["config_glm_binomial"]
    assert (binomial["status"] == "not estimable").all()
    assert binomial["reason"].str.contains("success").all()
    assert (results["config_glm_gaussian"]["status"] == "ok").all()  # mAP still varies


def test_identical_map_everywhere_is_not_estimable():
    def flat(data):
        data.mAP[:] = 0.5

    results = configuration_level(_edited(_small(), flat), {"options": FAST})
    _assert_clean(results)
    assert (results["config_surrogate"]["status"] == "not estimable").all()
    assert (results["config_ttest"]["status"] == "not estimable").all()


def test_counterfactual_and_learned_conditions_are_not_configurations():
    trace = _small(kinds=KINDS + ("counterfactual",))
    design = configuration_design(trace, ConfigurationOptions())
    assert set(design.configs["kind"]) == set(KINDS)


def test_ttest_needs_two_configurations_per_side():
    trace = _small()
    options = ConfigurationOptions()
    design = configuration_design(trace, options)
    subset = design.configs["kind"] == "subset"
    design.indicators.loc[subset, "g01"] = 1.0
    design.indicators.loc[subset[subset].index[0], "g01"] = 0.0
    row = config_ttest(design, options, 0.05).set_index("group").loc["g01"]
    assert row["status"] == "not estimable" and "only 1 subset configuration(s)" in row["reason"]


def test_settings_object_and_unknown_options():
    trace = _small()
    settings = AnalysisSettings(seed=0, options=FAST)
    assert set(configuration_level(trace, settings)) == set(TABLES)
    with pytest.raises(MosaicError, match="unknown configuration option"):
        configuration_level(trace, {"options": {"configuration": {"n_trees": 5}}})
    with pytest.raises(MosaicError, match="unknown analysis setting"):
        configuration_level(trace, {"sead": 1})
    with pytest.raises(MosaicError, match="ttest_kinds"):
        configuration_level(trace, {"options": {"configuration": {"ttest_kinds": ["counterfactual"]}}})


def test_fit_glm_reports_a_constant_column_without_fitting_it():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=50), "const": np.ones(50)})
    y = 2 * X["a"].to_numpy() + rng.normal(size=50)
    table = fit_glm(y, X, family="gaussian").table.set_index("term")
    assert table.loc["const", "status"] == "not estimable"
    assert table.loc["a", "coef"] == pytest.approx(2, abs=0.5)


# ------------------------------------------------------------------- identity-resampled inference
def test_resampled_refits_equal_statsmodels_on_explicit_resamples(planted):
    """The vectorised refits equal a statsmodels fit on the queries of each resample's identities."""
    import statsmodels.api as sm

    from analysis.methods.configuration.inference import logistic_refit, ols_refit

    trace, _ = planted
    design = configuration_design(trace, ConfigurationOptions(), n_bootstrap=100, seed=4)
    d = trace.data
    X = sm.add_constant(design.indicators[GROUPS].to_numpy())
    keep = np.isin(d.condition_kind, KINDS)
    pids = np.unique(d.query_pid[d.valid])
    mean_ap = design.outcomes.mean_ap(design.weights[:3])
    hits, trials = design.outcomes.hit_counts(design.weights[:3])
    start = sm.GLM(design.configs["hits"].to_numpy() / design.configs["n_valid"].to_numpy(), X,
                   family=sm.families.Binomial(), var_weights=design.configs["n_valid"].to_numpy()).fit().params
    logistic = logistic_refit(X, hits, np.broadcast_to(trials, hits.shape), start)
    for b in range(3):
        # the resample as an explicit list of queries: each identity's valid queries, repeated
        count = dict(zip(pids, design.weights[b]))
        repeat = np.array([count[p] for p in d.query_pid[d.valid]])
        ap = np.repeat(d.ap[keep][:, d.valid].astype(np.float64), repeat.astype(int), axis=1)
        hit = np.repeat(d.rank1[keep][:, d.valid], repeat.astype(int), axis=1)
        np.testing.assert_allclose(mean_ap[b], ap.mean(1), rtol=1e-10)
        ref = sm.OLS(ap.mean(1), X).fit().params
        np.testing.assert_allclose(ols_refit(X, mean_ap[b:b + 1])[0], ref, rtol=1e-8, atol=1e-12)
        endog = np.column_stack([hit.sum(1), hit.shape[1] - hit.sum(1)])
        ref = sm.GLM(endog, X, family=sm.families.Binomial()).fit().params
        np.testing.assert_allclose(logistic[b], ref, rtol=1e-6, atol=1e-8)


def test_identity_columns_name_their_unit_and_use_ci_level_not_alpha(planted):
    from analysis.methods.configuration.level import config_glm_binomial, config_glm_gaussian

    trace, _ = planted
    options = ConfigurationOptions()
    design = configuration_design(trace, options, n_bootstrap=200, seed=0)
    for level in (0.95, 0.80):
        tables = {"gaussian": config_glm_gaussian(design, options, 0.01, level),
                  "binomial": config_glm_binomial(design, options, 0.01, level),
                  "ttest": config_ttest(design, options, 0.01, level)}
        for name, table in tables.items():
            ok = table[table["status"] == "ok"]
            assert (ok["resampled"] == "identities").all() and (ok["n_ids"] == 100).all()
            estimate = ok["coef"] if "coef" in ok else ok["diff"]
            multiplier = stats.t.ppf(0.5 + level / 2, ok["df"])
            np.testing.assert_allclose(ok["ci_high"] - estimate, multiplier * ok["se"], rtol=1e-9)
            np.testing.assert_allclose(ok["p"], 2 * stats.t.sf(np.abs(estimate / ok["se"]), ok["df"]), rtol=1e-9)
            assert (ok["reject_holm"] == (ok["p_holm"] <= 0.01)).all()   # alpha decides, nothing else
        # the paper's interval follows ci_level too, whatever alpha is
        gaussian = tables["gaussian"]
        t = stats.t.ppf(0.5 + level / 2, gaussian["df_conditional"])
        np.testing.assert_allclose(gaussian["ci_high_conditional"] - gaussian["coef"],
                                   t * gaussian["se_conditional"], rtol=1e-8)


def test_population_null_world_conditional_p_values_reject_identity_resampled_do_not():
    """Each identity's effect of every group is drawn around a population mean of zero.

    Treating every query of the test set as a fixed trial (the paper's numbers) finds groups that
    matter; resampling identities does not.
    """
    trace = simulate(n_ids=60, queries_per_id=4, groups=6, effect_sd=0.8, n_subsets=40, kinds=KINDS, seed=11)
    results = configuration_level(trace, {"seed": 0, "options": FAST})
    for name in ("config_glm_binomial", "config_glm_gaussian", "config_ttest"):
        table = results[name]
        groups = table[(table["group"] != "") & (table["status"] == "ok")]
        assert len(groups) == 6
        assert not (groups["p_holm"] < 0.05).any(), name
    binomial = results["config_glm_binomial"]
    conditional = binomial.loc[binomial["group"] != "", "p_conditional"]
    assert (conditional < 0.05 / 6).any()


@pytest.mark.parametrize("options, message", [
    ({"rf_n_estimators": "20"}, "rf_n_estimators must be an integer, got '20'"),
    ({"xgb_learning_rate": "fast"}, "xgb_learning_rate must be a number, got 'fast'"),
    ({"surrogate_resamples": 5}, "surrogate_resamples must be at least 10, got 5"),
    ({"kinds": [1, 2]}, "kinds must be a list of a string"),
    ({"require_subsets": "yes"}, "require_subsets must be true or false"),
    ({"binomial_scale": "pearson"}, "binomial_scale must be 'X2' or a number"),
])
def test_wrong_option_is_a_one_line_error_naming_option_constraint_and_value(options, message):
    with pytest.raises(MosaicError, match=re.escape(message)):
        configuration_level(_small(), {"options": {"configuration": options}})
