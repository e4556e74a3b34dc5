"""The decomposition recovers what was planted, with identity-cluster intervals that cover it."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import analyze
from analysis.methods.decomposition import QUANTITIES, decomposition_tables, point_decomposition
from analysis.settings import AnalysisSettings
from analysis.simulation.decomposition import simulate_decomposition, simulate_decomposition_data
from mosaic.core.errors import MosaicError


# Effects that differ in sign and size between groups, each varying by identity around its mean.
PLANTED = {
    "g00": {"information": -0.08, "capacity": -0.03, "misrouting": -0.15, "semantics": -0.06},
    "g01": {"information": -0.04, "capacity": 0.02, "misrouting": -0.02, "semantics": 0.0},
    "g02": {"information": 0.0, "capacity": -0.05, "misrouting": 0.03, "semantics": 0.0},
}


def _settings(**kw):
    return AnalysisSettings(n_bootstrap=kw.pop("n_bootstrap", 400), seed=kw.pop("seed", 0), **kw)


def test_recovers_planted_decomposition_with_identity_varying_effects():
    trace = simulate_decomposition(groups=3, planted=PLANTED, effect_sd=0.04, n_ids=300, seed=3)
    table = decomposition_tables(trace, _settings())["decomposition"]
    assert (table["status"] == "ok").all()
    assert set(table["resampling_unit"]) == {"identity"}
    assert (table["n_ids"] == 300).all()
    for row in table.itertuples():
        truth = PLANTED[row.group][row.quantity]
        tolerance = 0.012 if row.metric == "mAP" else 0.05
        assert abs(row.estimate - truth) < tolerance, (row.group, row.quantity, row.metric, row.estimate, truth)
        assert row.ci_low < row.estimate < row.ci_high
    # signs: a relied-on group has a negative delta, a helpful misrouting a positive one
    mAP = table[table["metric"] == "mAP"].set_index(["group", "quantity"])["estimate"]
    assert mAP[("g00", "misrouting")] < mAP[("g00", "information")] < 0
    assert mAP[("g02", "misrouting")] > 0


def test_identity_cluster_intervals_cover_the_population_value():
    """Over independent test sets the 90% intervals cover the planted mean at about 90%."""
    covered, total, widths = 0, 0, []
    for seed in range(40):
        trace = simulate_decomposition(groups=2, planted={g: PLANTED[g] for g in ("g00", "g01")}, effect_sd=0.08,
                                       n_ids=60, queries_per_id=4, query_spread=0.0, seed=100 + seed,
                                       quality=(0.45, 0.65))
        table = decomposition_tables(trace, _settings(ci_level=0.9, n_bootstrap=300, seed=seed))["decomposition"]
        table = table[table["metric"] == "mAP"]
        for row in table.itertuples():
            truth = PLANTED[row.group][row.quantity]
            covered += row.ci_low <= truth <= row.ci_high
            total += 1
            widths.append(row.ci_high - row.ci_low)
    coverage = covered / total
    assert 0.82 <= coverage <= 0.97, coverage
    # the effect varies by identity, not by query: an interval that treated the 240 queries as
    # independent would be half as wide (sd/sqrt(240) vs sd/sqrt(60)); these are not
    assert np.median(widths) > 2 * 1.645 * 0.08 / np.sqrt(60) * 0.8


def test_code_share_recovers_the_planted_share():
    trace = simulate_decomposition(groups=2, code_share=0.35, share_sd=0.15, oracle_gain=0.3, n_ids=300, seed=5)
    code = decomposition_tables(trace, _settings())["decomposition_code"].set_index("metric")
    assert list(code.index) == ["mAP", "rank1"]
    assert (code["status"] == "ok").all() and set(code["resampling_unit"]) == {"identity"}
    assert abs(code.loc["mAP", "estimate"] - 0.35) < 0.03
    assert code.loc["mAP", "ci_low"] <= 0.35 <= code.loc["mAP", "ci_high"]
    assert code.loc["mAP", "code_gain"] / code.loc["mAP", "oracle_gain"] == pytest.approx(code.loc["mAP", "estimate"])
    assert abs(code.loc["mAP", "oracle_gain"] - 0.3) < 0.02


def test_estimates_equal_differences_of_the_stored_condition_metrics():
    """The decomposition is plain arithmetic on the conditions' mAP and rank-1 (what inspect prints)."""
    trace = simulate_decomposition(groups=3, planted=PLANTED, seed=7)
    tables = decomposition_tables(trace, _settings())
    conditions = trace.conditions.set_index("condition")
    metrics = {c: {"mAP": r.mAP, "rank1": r.rank1} for c, r in conditions.iterrows()}
    points, share = point_decomposition(metrics, trace.group_names, schema_version=trace.schema_version)
    merged = tables["decomposition"].merge(points, on=["group", "quantity", "metric"], suffixes=("", "_point"))
    np.testing.assert_allclose(merged["estimate"], merged["estimate_point"], atol=1e-6)
    np.testing.assert_allclose(tables["decomposition_code"]["estimate"], share["estimate"], atol=1e-6)
    row = merged[(merged["group"] == "g00") & (merged["quantity"] == "capacity") & (merged["metric"] == "mAP")].iloc[0]
    assert row.estimate == pytest.approx(conditions.loc["drop:g00", "mAP"] - conditions.loc["fixed:g00", "mAP"], abs=1e-6)


def test_missing_kinds_are_unavailable_with_a_reason_not_dropped():
    trace = simulate_decomposition(groups=2, kinds=("oracle", "none", "drop", "counterfactual"), seed=1)
    tables = decomposition_tables(trace, _settings())
    table = tables["decomposition"]
    assert len(table) == 2 * len(QUANTITIES) * 2              # every group x quantity x metric is a row
    status = table.set_index(["group", "quantity", "metric"])["status"]
    assert status[("g00", "misrouting", "mAP")] == "ok"
    for quantity in ("information", "capacity", "semantics"):
        assert status[("g01", quantity, "rank1")] == "unavailable"
    info = table[(table["quantity"] == "information")].iloc[0]
    assert "'fixed:g00'" in info.reason and np.isnan(info.estimate) and np.isnan(info.ci_low)
    code = tables["decomposition_code"]
    assert (code["status"] == "unavailable").all() and code["reason"].str.contains("'code'").all()


def test_schema_1_0_trace_says_which_decompositions_it_predates():
    data = simulate_decomposition_data(groups=2, kinds=("oracle", "none", "drop", "counterfactual"), seed=2)
    from analysis.trace import Trace

    trace = Trace(data, schema_version="1.0.0")
    tables = decomposition_tables(trace, _settings())
    unavailable = tables["decomposition"][tables["decomposition"]["status"] == "unavailable"]
    assert set(unavailable["quantity"]) == {"information", "capacity", "semantics"}
    assert unavailable["reason"].str.contains("schema 1.0.0 predates").all()
    assert tables["decomposition_code"]["reason"].str.contains("predates").all()


def test_analyze_runs_the_method_and_keeps_warnings_short(tmp_path):
    trace = simulate_decomposition(tmp_path / "t.h5", groups=3, planted=PLANTED,
                                   kinds=("oracle", "none", "drop", "counterfactual"), seed=4)
    results = analyze(trace, methods=["decomposition"], n_bootstrap=200)
    assert {"decomposition", "decomposition_code"} <= set(results.tables)
    # unavailable quantities are reported once by the report, not as a warning per row
    assert not results.warnings["method"].isin(["decomposition", "decomposition_code"]).any()
    again = analyze(trace, methods=["decomposition"], n_bootstrap=200)
    assert results.to_json() == again.to_json()


def test_bad_plants_are_one_line_errors():
    with pytest.raises(MosaicError, match="outside \\[0, 1\\]"):
        simulate_decomposition_data(groups=1, planted={"g00": {"misrouting": -0.9}})
    with pytest.raises(MosaicError, match="unknown"):
        simulate_decomposition_data(groups=1, planted={"g00": {"informaton": -0.1}})
    with pytest.raises(MosaicError, match="oracle"):
        simulate_decomposition_data(groups=1, kinds=("none", "code"))
