"""analysis.analyze end to end: recovery, determinism, degenerate traces, Results round trip."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy import stats

import analysis
from analysis.results import Results
from mosaic.core.errors import MosaicError

# Smaller resampling and smaller surrogates keep the suite fast; the statistics are unchanged.
FAST = dict(
    n_bootstrap=200,
    n_permutations=200,
    seed=0,
    options={
        "configuration": {"rf_n_estimators": 40, "xgb_n_estimators": 40, "permutation_repeats": 3, "cv_folds": 3,
                          "surrogate_resamples": 10},
        "explanatory": {"n_estimators": 40, "n_folds": 3},
    },
)
PAIRED_TABLES = ("paired_mcnemar", "paired_wilcoxon", "paired_identity")


def _no_nan_spreading(results: Results) -> None:
    """Every tested row has a finite p and adjusted p; untested rows carry a reason."""
    for name, table in results.tables.items():
        if "status" not in table.columns:
            continue
        assert set(table["status"]) <= {"ok", "not tested", "not estimable", "unavailable"}, name
        bad = table["status"] != "ok"
        assert (table.loc[bad, "reason"].astype(str).str.len() > 0).all(), name
        # intercept rows (no group) are tested but belong to no family of corrected tests
        in_family = ~bad & (table["group"].astype(str) != "") if "group" in table.columns else ~bad
        for column, rows in (("p", ~bad), ("p_holm", in_family), ("p_bh", in_family)):
            if column in table.columns:
                assert table.loc[rows, column].notna().all(), (name, column)


@pytest.fixture(scope="module")
def full_results():
    effects = {"g00": 0.2, "g01": 0.6, "g02": 1.0, "g03": 1.4, "g04": 1.8}
    trace = analysis.simulate(n_ids=100, groups=5, effects=effects, n_subsets=12, seed=4)
    return trace, pd.Series(effects), analysis.analyze(trace, **FAST)


def test_all_methods_produce_their_tables(full_results):
    _, _, results = full_results
    for name in ("ranking_groups", "ranking_families", "agreement", *PAIRED_TABLES, "conditions", "cmc", "gates"):
        assert name in results, name
    _no_nan_spreading(results)
    assert results.settings["n_bootstrap"] == 200 and results.settings["seed"] == 0
    assert results.trace_info["groups"] == ["g00", "g01", "g02", "g03", "g04"]
    assert set(results.timings) >= {"paired", "ranking"}
    failed = results.warnings[results.warnings["reason"].str.startswith(("failed", "not available"))]
    assert failed.empty, failed.to_dict("records")


def test_consensus_recovers_planted_order(full_results):
    _, truth, results = full_results
    ranking = results.table("ranking_groups").set_index("group")
    assert stats.spearmanr(-ranking["consensus_rank"], truth[ranking.index]).statistic >= 0.9
    assert ranking.index[0] == "g04"


def test_every_method_recovers_the_planted_order_and_the_consensus_is_identity_valid():
    # enough random configurations for the configuration-level surrogates to learn five effects
    truth = pd.Series({"g00": 0.3, "g01": 0.7, "g02": 1.1, "g03": 1.5, "g04": 1.9})
    trace = analysis.simulate(n_ids=100, groups=5, effects=truth.to_dict(), effect_sd=0.3, n_subsets=60, seed=4)
    results = analysis.analyze(trace, **FAST)
    ranking = results.table("ranking_groups").set_index("group")
    methods = [c[len("rank:"):] for c in ranking.columns if c.startswith("rank:")]
    # the paired, configuration-level and query-surrogate methods all rank the groups
    assert {"identity:drop", "mcnemar:drop", "config_glm_gaussian", "config_glm_binomial", "config_ttest",
            "config_rf_permutation", "config_xgb_shap", "query_surrogate_shap"} <= set(methods)
    for method in methods:
        rho = stats.spearmanr(-ranking[f"rank:{method}"], truth[ranking.index]).statistic
        assert rho >= 0.9 - 1e-9, (method, rho)  # one adjacent swap of five groups is 0.9
    assert (ranking["rank_low"] <= ranking["consensus_rank"]).all()
    assert (ranking["consensus_rank"] <= ranking["rank_high"]).all()
    assert (ranking["resampled"] == "identities").all()


@pytest.mark.parametrize("options, message", [
    ({"configuration": {"rf_n_estimators": "20"}}, "configuration option rf_n_estimators must be an integer"),
    ({"explanatory": {"n_estimators": 20.5}}, "explanatory option n_estimators must be an integer, got 20.5"),
    ({"explanatory": {"learning_rate": -1}}, "explanatory option learning_rate must be at least 0, got -1"),
])
def test_a_wrong_typed_option_is_an_error_not_a_warning_row(options, message):
    trace = analysis.simulate(n_ids=10, groups=2, n_subsets=8, seed=0)
    with pytest.raises(MosaicError, match=message):
        analysis.analyze(trace, options=options, n_bootstrap=100, n_permutations=100)


def test_a_missing_declared_dependency_is_an_error_not_a_warning_row(monkeypatch):
    import sys

    trace = analysis.simulate(n_ids=10, groups=2, n_subsets=8, seed=0)
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    monkeypatch.setitem(sys.modules, "statsmodels.api", None)
    with pytest.raises(MosaicError, match="needs the package 'statsmodels'"):
        analysis.analyze(trace, methods="configuration", n_bootstrap=100, n_permutations=100)


def test_recovery_of_ten_distinct_effects_by_paired_methods():
    effects = {f"g{i:02d}": 0.15 * (i + 1) for i in range(10)}
    trace = analysis.simulate(n_ids=250, groups=10, effects=effects, n_subsets=0,
                              kinds=("oracle", "drop", "counterfactual"), seed=2)
    results = analysis.analyze(trace, methods="paired", **FAST)
    ranking = results.table("ranking_groups").set_index("group")
    truth = pd.Series(effects)[ranking.index]
    for column in [c for c in ranking.columns if c.startswith("rank:")] + ["consensus_rank"]:
        assert stats.spearmanr(-ranking[column], truth).statistic >= 0.9, column
    identity = results.table("paired_identity")
    assert (identity["delta_map"] < 0).all()  # right sign for every planted loss
    assert identity.loc[identity["group"] == "g09", "reject_holm"].all()


def test_same_seed_same_json_and_round_trip():
    trace = analysis.simulate(n_ids=40, groups=3, effects={"g02": 1.0}, n_subsets=0, seed=1)
    a = analysis.analyze(trace, methods="paired", **FAST)
    b = analysis.analyze(trace, methods="paired", **FAST)
    assert a.to_json() == b.to_json()
    again = Results.from_json(a.to_json())
    assert again.to_json() == a.to_json()
    pd.testing.assert_frame_equal(again.table("paired_identity"), a.table("paired_identity"), check_dtype=False)
    c = analysis.analyze(trace, methods="paired", **{**FAST, "seed": 1})  # the seed matters
    assert c.table("paired_identity")["ci_low"].tolist() != a.table("paired_identity")["ci_low"].tolist()


def test_trace_path_is_accepted_and_hashed(tmp_path):
    analysis.simulate(tmp_path / "t.h5", n_ids=20, groups=2, n_subsets=0, seed=0)
    results = analysis.analyze(tmp_path / "t.h5", methods="paired", **FAST)
    assert len(results.trace_info["sha256"]) == 64 and results.trace_info["path"].endswith("t.h5")


def _degenerate(**kwargs) -> Results:
    trace = analysis.simulate(**{"n_ids": 30, "groups": 3, "n_subsets": 0, "seed": 0, **kwargs})
    results = analysis.analyze(trace, **FAST)
    _no_nan_spreading(results)
    return results


def test_every_query_hits_everywhere():
    results = _degenerate(baseline_logit=60.0, identity_sd=0.0, query_sd=0.0, effects={"g01": 1.0})
    for name in PAIRED_TABLES:
        table = results.table(name)
        assert (table["status"] == "not tested").all(), name
    assert results.table("paired_mcnemar")["reason"].str.contains("discordant").all()
    assert results.table("paired_wilcoxon")["reason"].str.contains("zero").all()
    assert "ranking_groups" in results  # zero effects are still estimates that can be ranked
    assert not results.warnings.empty


def test_no_discordant_pairs_but_ap_changes():
    results = _degenerate(baseline_logit=60.0, gap_logit=64.0, identity_sd=0.0, query_sd=0.0, effects={"g01": 2.0})
    assert (results.table("paired_mcnemar")["status"] == "not tested").all()
    wilcoxon = results.table("paired_wilcoxon").set_index(["comparison", "group"])
    assert wilcoxon.loc[("drop", "g01"), "status"] == "ok" and wilcoxon.loc[("drop", "g01"), "p"] < 0.01


def test_one_identity():
    results = _degenerate(n_ids=1, queries_per_id=25, gallery_per_id=10, effects={"g00": 2.0}, missing_rate=0.0)
    identity = results.table("paired_identity")
    assert (identity["status"] == "not tested").all() and identity["reason"].str.contains("one identity").all()


def test_group_never_active():
    results = _degenerate(effects={"g01": 1.5}, missing_rate={"g01": 1.0})
    for name in PAIRED_TABLES:
        rows = results.table(name).query("group == 'g01'")
        assert (rows["status"] == "not tested").all(), name
    warned = results.warnings.query("group == 'g01'")
    assert set(warned["method"]) >= set(PAIRED_TABLES)


def test_trace_without_subsets_leaves_configuration_rows_not_tested():
    results = _degenerate(effects={"g02": 1.0}, kinds=("oracle", "drop", "counterfactual"))
    config = [name for name in results.tables if name.startswith("config_")]
    assert config, "the configuration method should report why it could not test"
    for name in config:
        assert (results.table(name)["status"] != "ok").all(), name
    assert results.table("paired_identity").query("group == 'g02'")["reject_holm"].all()


def test_user_errors():
    trace = analysis.simulate(n_ids=10, groups=2, n_subsets=0, seed=0)
    with pytest.raises(MosaicError, match="unknown analysis method"):
        analysis.analyze(trace, methods=["nope"])
    with pytest.raises(MosaicError, match="n_bootstrap"):
        analysis.analyze(trace, n_bootstrap=5)
    with pytest.raises(MosaicError, match="no table"):
        Results().table("ranking_groups")
    with pytest.raises(MosaicError, match="not a mosaic results"):
        Results.from_json('{"a": 1}')


def test_missing_baseline_is_a_warning_not_a_crash():
    trace = analysis.simulate(n_ids=10, groups=2, n_subsets=0, seed=0)
    results = analysis.analyze(trace, methods="paired", baseline="none", **FAST)
    assert "paired_identity" in results
    trace_without = analysis.simulate(n_ids=10, groups=2, n_subsets=0, seed=0, kinds=("oracle", "only"))
    results = analysis.analyze(trace_without, methods="paired", **FAST)
    assert "paired_identity" not in results
    assert results.warnings["reason"].str.contains("no drop or counterfactual").any()


@pytest.mark.slow
def test_calibration_family_wise_error_and_coverage():
    """Holm keeps the family-wise error near alpha on population-null worlds; bootstrap CIs cover the truth."""
    from analysis.settings import AnalysisSettings
    from benchmarks.calibration import family_wise_error, parse_args, planted, population_values

    args = parse_args(["--n-traces", "60", "--truth-ids", "5000", "--truth-traces", "3"])
    settings = AnalysisSettings(n_bootstrap=500, n_permutations=500)
    fwer, cover = family_wise_error(args, settings, "population null")
    identity_level = fwer["test"].str.startswith("paired_")
    assert fwer.loc[identity_level, "any_holm"].mean() <= 0.05 + 0.04  # alpha plus simulation error
    assert fwer.loc[~identity_level, "any_holm"].mean() > 0.15          # queries as trials: far too many
    assert 0.92 <= cover["covered"].mean() <= 0.98
    effects = {f"g{i:02d}": 0.15 * i for i in range(args.groups)}
    cover, _ = planted(parse_args(["--n-traces", "40"]), settings, effects, population_values(args, effects))
    rate = cover.loc[cover["interval"] == "paired_identity", "covered"].mean()
    assert 0.92 <= rate <= 0.98, rate
