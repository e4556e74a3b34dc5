"""Query-level explanatory models: planted-effect recovery, the separation trap, clustered errors."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit

from analysis.methods.query.explanatory import (
    DropSurrogate,
    ExplanatoryOptions,
    query_level_explanatory,
    surrogate_data,
)
from analysis.methods.query.surrogate import _group_constraints
from analysis.simulation.trace import simulate_data
from analysis.stats.glm import as_settings, find_separation, fit_glm
from analysis.trace import Trace
from mosaic.core.errors import MosaicError

GROUPS = [f"g{i:02d}" for i in range(10)]
MULT = np.array([3, -4, 5, 6, -7, 8, 9, 10, 11, 12])
STATE_EFFECT = 0.15 * MULT   # log-odds of an oracle hit for state s1 against s0/s2, per group
DROP_EFFECT = 0.25 * MULT    # planted loss (logit) when a group's experts are dropped
FAST = {"explanatory": {"n_estimators": 100, "n_folds": 3}}


def spearman(a, b) -> float:
    return float(stats.spearmanr(a, b)[0])


def plant_state_effects(data, beta: np.ndarray, seed: int, intercept: float = 0.7) -> None:
    """Redraw the oracle rank-1 hits so that state ``s1`` of group g shifts their log-odds by beta[g].

    The simulator plants effects of *routing*; an effect of the query's own attribute states on
    its oracle outcome is what the query GLM estimates, so the test plants it here.
    """
    rng = np.random.default_rng(seed)
    is_s1 = (data.query_states == 1).astype(float)
    pid_effect = rng.normal(0.0, 0.3, size=data.query_pid.max() + 1)[data.query_pid]
    eta = intercept + (is_s1 - 1 / 3) @ beta + pid_effect
    oracle = list(data.condition_name).index("oracle")
    data.rank1[oracle] = (rng.random(eta.size) < expit(eta)) & data.valid


def _edited(data, edit) -> Trace:
    data = copy.deepcopy(data)
    edit(data)
    return Trace(data)


@pytest.fixture(scope="module")
def glm_trace() -> Trace:
    data = simulate_data(n_ids=1000, queries_per_id=2, gallery_per_id=3, n_distractors=0, groups=10,
                         kinds=("oracle",), seed=5)
    plant_state_effects(data, STATE_EFFECT, seed=5)
    return Trace(data)


@pytest.fixture(scope="module")
def glm_table(glm_trace) -> pd.DataFrame:
    return query_level_explanatory(glm_trace, {"options": FAST})["query_glm"]


@pytest.fixture(scope="module")
def drop_trace() -> Trace:
    return Trace(simulate_data(n_ids=300, queries_per_id=2, groups=10, effects=dict(zip(GROUPS, DROP_EFFECT)),
                               kinds=("oracle", "drop"), seed=2))


@pytest.fixture(scope="module")
def surrogate(drop_trace) -> dict[str, pd.DataFrame]:
    return query_level_explanatory(drop_trace, {"seed": 0, "options": FAST})


def _coef(table: pd.DataFrame, group: str, state: str) -> float:
    """Log-odds of ``group=state`` against the group's reference (0 for the reference itself)."""
    row = table[(table["level"] == "term") & (table["term"] == f"{group}={state}")]
    if row.empty:
        return 0.0
    assert row["status"].iloc[0] == "ok", row["reason"].iloc[0]
    return float(row["coef"].iloc[0])


# ------------------------------------------------------------------------------ query GLM
def test_query_glm_recovers_planted_state_effects(glm_table):
    contrast = np.array([_coef(glm_table, g, "s1") - _coef(glm_table, g, "s0") for g in GROUPS])
    assert spearman(contrast, STATE_EFFECT) >= 0.9
    assert (np.sign(contrast) == np.sign(STATE_EFFECT)).all()
    groups = glm_table[glm_table["level"] == "group"].set_index("group").loc[GROUPS]
    assert (groups["status"] == "ok").all()
    assert spearman(groups["F"] * groups["df_num"], np.abs(STATE_EFFECT)) >= 0.9
    assert (groups["df_num"] >= 2).all() and (groups["df"] > 1).all()
    assert (glm_table["resampled"] == "identities").all()


def test_query_glm_table_shape_and_coding(glm_trace, glm_table):
    terms = glm_table[glm_table["level"] == "term"]
    states = glm_trace.query_table.loc[glm_trace.query_table["valid"], GROUPS]
    for g in GROUPS:
        reference = states[g].value_counts().idxmax()
        rows = terms[terms["group"] == g]
        assert set(rows["reference"]) == {reference}
        assert reference not in set(rows["state"])       # the reference is not a term
        assert "missing" in set(rows["state"])           # unannotated queries are their own level
        assert rows.set_index("state").loc["missing", "n"] == states[g].isna().sum()
    ok = glm_table["status"] == "ok"
    np.testing.assert_allclose(glm_table.loc[ok & (glm_table["level"] == "term"), "odds_ratio"],
                               np.exp(glm_table.loc[ok & (glm_table["level"] == "term"), "coef"]))
    for level in ("term", "group"):
        rows = glm_table[(glm_table["level"] == level) & ok]
        assert (rows["p_holm"] >= rows["p"] * (1 - 1e-12)).all()


def test_missing_drop_policy_leaves_out_unannotated_queries(glm_trace):
    table = query_level_explanatory(glm_trace, {"options": {"explanatory": {"missing": "drop", **FAST["explanatory"]}}})["query_glm"]
    assert not (table["state"] == "missing").any()
    complete = glm_trace.query_table.loc[glm_trace.query_table["valid"], GROUPS].notna().all(axis=1).sum()
    assert (table.loc[(table["level"] == "group") & (table["status"] == "ok"), "n"] == complete).all()


def test_clustered_standard_errors_equal_a_hand_computed_sandwich():
    rng = np.random.default_rng(3)
    n_clusters, per = 12, 5
    clusters = np.repeat(np.arange(n_clusters), per)
    X = pd.DataFrame({"a": rng.integers(0, 2, clusters.size).astype(float), "b": rng.normal(size=clusters.size)})
    eta = -0.2 + 0.8 * X["a"] - 0.5 * X["b"] + rng.normal(0, 0.7, n_clusters)[clusters]
    y = (rng.random(clusters.size) < expit(eta)).astype(float)
    result = fit_glm(y, X, family="binomial", clusters=clusters)
    assert (result.table["status"] == "ok").all()
    Xa = np.column_stack([np.ones(len(X)), X.to_numpy()])
    beta = result.table["coef"].to_numpy()
    mu = expit(Xa @ beta)
    bread = np.linalg.inv(Xa.T @ (Xa * (mu * (1 - mu))[:, None]))
    scores = np.array([Xa[clusters == c].T @ (y - mu)[clusters == c] for c in range(n_clusters)])
    n, k = Xa.shape
    correction = n_clusters / (n_clusters - 1) * (n - 1) / (n - k)  # statsmodels' small-sample factor
    sandwich = correction * bread @ (scores.T @ scores) @ bread
    np.testing.assert_allclose(result.table["se"], np.sqrt(np.diag(sandwich)), rtol=1e-5)


def test_separation_a_state_whose_queries_all_hit_is_not_estimable(glm_trace):
    states = glm_trace.query_table.loc[glm_trace.query_table["valid"], "g04"]
    state = states.value_counts().index[-1]  # the least frequent: never the reference
    code = list(states.cat.categories).index(state)

    def all_hit(data):
        oracle = list(data.condition_name).index("oracle")
        data.rank1[oracle] |= (data.query_states[:, 4] == code) & data.valid

    trace = _edited(glm_trace.data, all_hit)
    table = query_level_explanatory(trace, {"options": FAST})["query_glm"]
    term = f"g04={state}"
    row = table.set_index("term").loc[term]
    assert row["status"] == "not estimable"
    assert "separation" in row["reason"] and "successes" in row["reason"]
    assert np.isnan(row["p"]) and np.isnan(row["coef"])
    rest = table[(table["level"] == "term") & (table["term"] != term)]
    assert (rest["status"] == "ok").all()
    assert (rest["coef"].abs() < 10).all() and (rest["se"] < 5).all()
    # the trap being avoided: a plain fit reports a huge, "significant-looking" coefficient
    import statsmodels.api as sm

    queries = trace.query_table[trace.query_table["valid"]]
    x = np.column_stack([np.ones(len(queries)), (queries["g04"] == state).to_numpy(dtype=float)])
    y = trace.data.rank1[0][trace.data.valid].astype(float)
    naive = sm.GLM(y, x, family=sm.families.Binomial()).fit(cov_type="cluster", cov_kwds={"groups": queries["pid"].to_numpy()})
    assert abs(naive.params[1]) > 10 or naive.bse[1] > 50


def test_a_separated_most_frequent_state_is_not_the_reference(glm_trace):
    states = glm_trace.query_table.loc[glm_trace.query_table["valid"], "g06"]
    common = states.value_counts().index[0]
    code = list(states.cat.categories).index(common)

    def all_hit(data):
        data.rank1[0] |= (data.query_states[:, 6] == code) & data.valid

    table = query_level_explanatory(_edited(glm_trace.data, all_hit), {"options": FAST})["query_glm"]
    rows = table[table["group"] == "g06"].set_index("term")
    assert common != rows["reference"].iloc[0]
    assert rows.loc[f"g06={common}", "status"] == "not estimable"
    assert (rows.drop(index=f"g06={common}")["status"] == "ok").all()


def test_find_separation_catches_a_combination_no_single_term_shows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    y = (x[:, 0] - x[:, 1] > 0).astype(float)           # separated by a line, not by a level
    X = np.column_stack([np.ones(80), x])
    rows, direction = find_separation(X, y)
    # every row is predicted perfectly (the LP may leave one exactly on the boundary)
    assert rows.mean() > 0.95 and np.abs(direction[1:]).min() > 0
    y_noisy = (x[:, 0] - x[:, 1] + rng.logistic(size=80) > 0).astype(float)
    rows, direction = find_separation(X, y_noisy)
    assert not rows.any() and not direction.any()
    table = fit_glm(y, pd.DataFrame(x, columns=["u", "v"]), family="binomial").table
    assert (table["status"] == "not estimable").all()


# ------------------------------------------------------------------------------ surrogate
def test_surrogate_recovers_the_planted_drop_effects(surrogate):
    table = surrogate["query_surrogate"]
    groups = table[table["level"] == "group"].set_index("group").loc[GROUPS]
    assert (groups["status"] == "ok").all()
    # condition - baseline: a group the model relies on has a negative mean SHAP when dropped
    assert spearman(groups["mean_shap"], -DROP_EFFECT) >= 0.9
    assert (np.sign(groups["mean_shap"]) == -np.sign(DROP_EFFECT)).all()
    assert spearman(groups["mean_abs_shap"], np.abs(DROP_EFFECT)) >= 0.9
    assert groups["share"].sum() == pytest.approx(1.0)
    assert sorted(groups["rank"]) == list(range(1, 11))


def test_surrogate_family_rollup(surrogate, drop_trace):
    table = surrogate["query_surrogate"]
    fams = table[table["level"] == "family"]
    assert set(fams["family"]) == set(drop_trace.schema.families)
    assert fams["share"].sum() == pytest.approx(1.0)
    coarse = table[table["level"] == "coarse_family"]
    assert set(coarse["family"]) == {"intrinsic", "extrinsic"}
    assert (fams["status"] == "ok").all() and fams["mean_abs_shap_drop"].isna().all()


def test_surrogate_validation_uses_identity_grouped_folds(surrogate, drop_trace):
    fit = surrogate["query_surrogate_fit"]
    folds = fit[fit["fold"] != "mean"]
    assert list(folds["fold"]) == ["1", "2", "3"]
    n_rows = drop_trace.data.valid.sum() * len(GROUPS)
    assert folds["n_test"].sum() == n_rows
    assert ((folds["n_train"] + folds["n_test"]) == n_rows).all()
    mean = fit.set_index("fold").loc["mean"]
    assert mean["r2"] == pytest.approx(folds["r2"].mean())
    assert mean["r2"] > 0.1 and mean["status"] == "ok"
    # grouped folds: each identity's rows are held out together exactly once
    from sklearn.model_selection import GroupKFold

    data, _, _ = surrogate_data(drop_trace, as_settings({}))
    for train, test in GroupKFold(n_splits=3).split(data.X, data.y, groups=data.pid):
        assert not set(data.pid[train]) & set(data.pid[test])


def test_shap_values_sum_to_the_prediction(drop_trace):
    options = ExplanatoryOptions(n_estimators=30)
    data, dropped_groups, _ = surrogate_data(drop_trace, as_settings({}))
    X = data.X.to_numpy(dtype=np.float32)
    model = DropSurrogate(options, 0, _group_constraints(data, GROUPS)).fit(X, data.y, data.dropped)
    features = list(data.X.columns)
    shap, base = model.shap_values(X, data.dropped, {g: features.index(f"dropped:{g}") for g in dropped_groups})
    np.testing.assert_allclose(shap.sum(axis=1) + base, model.predict(X, data.dropped), atol=1e-5)
    # trees respect the constraints: no tree mixes two groups' features
    import json

    for tree in model.model_.get_booster().get_dump(dump_format="json"):
        used, stack = set(), [json.loads(tree)]
        while stack:
            node = stack.pop()
            if "split" in node:
                used.add(data.feature_group[features[int(node["split"].lstrip("f"))]])
                stack.extend(node["children"])
        assert len(used) <= 1


def test_same_seed_same_tables(drop_trace, surrogate):
    again = query_level_explanatory(drop_trace, {"seed": 0, "options": FAST})
    for name, table in surrogate.items():
        pd.testing.assert_frame_equal(table, again[name])


# --------------------------------------------------------------------------- degenerate input
def _tiny(**kwargs):
    base = dict(n_ids=40, queries_per_id=2, groups=4, effects={"g00": 1.0, "g01": 0.5}, kinds=("oracle", "drop"), seed=1)
    base.update(kwargs)
    return simulate_data(**base)


def _assert_clean(results: dict[str, pd.DataFrame]) -> None:
    for name, table in results.items():
        bad = table["status"] != "ok"
        assert set(table["status"]) <= {"ok", "not estimable", "not tested"}, name
        assert (table.loc[bad, "reason"].str.len() > 0).all(), name
        assert (table.loc[~bad, "reason"] == "").all(), name
        if "p" in table:
            assert table.loc[bad, ["p", "p_holm", "p_bh"]].isna().all().all(), name
            assert np.isfinite(table.loc[~bad, ["p", "p_holm", "p_bh"]].to_numpy(dtype=float)).all(), name


def test_every_query_a_hit():
    def all_hit(data):
        data.rank1[:] = data.valid[None, :]

    results = query_level_explanatory(_edited(_tiny(), all_hit), {"options": FAST})
    _assert_clean(results)
    glm = results["query_glm"]
    assert (glm["status"] == "not estimable").all()
    assert glm.loc[glm["level"] == "term", "reason"].str.contains("every outcome is a success").all()
    assert (results["query_surrogate"]["status"] == "ok").all()  # the AP changes still vary


def test_one_identity_is_not_tested():
    results = query_level_explanatory(Trace(_tiny(n_ids=1, queries_per_id=6)), {"options": FAST})
    _assert_clean(results)
    glm = results["query_glm"]
    assert (glm["status"] != "ok").all()
    assert (results["query_surrogate"]["status"] == "not tested").all()
    assert results["query_surrogate"]["reason"].str.contains("1 identity").all()
    assert (results["query_surrogate_fit"]["status"] == "not tested").all()


def test_few_identities_refuse_clustered_errors():
    results = query_level_explanatory(Trace(_tiny(n_ids=6, queries_per_id=4)), {"options": FAST})
    _assert_clean(results)
    glm = results["query_glm"]
    assert glm["reason"].str.contains("cluster").any()
    assert (glm["status"] != "ok").all()


def test_a_group_that_never_varies():
    def constant(data):
        data.query_states[:, 2] = 0

    results = query_level_explanatory(_edited(_tiny(), constant), {"options": FAST})
    _assert_clean(results)
    glm = results["query_glm"].set_index("term")
    assert glm.loc["g02", "status"] == "not estimable" and "never varies" in glm.loc["g02", "reason"]
    assert glm.loc["g02=s1", "status"] == "not estimable" and "no valid query" in glm.loc["g02=s1", "reason"]
    assert (glm.loc[["g00", "g01", "g03"], "status"] == "ok").all()


def test_no_drop_conditions_and_no_baseline():
    results = query_level_explanatory(Trace(_tiny(kinds=("oracle", "only"))), {"options": FAST})
    _assert_clean(results)
    assert (results["query_surrogate"]["status"] == "not tested").all()
    assert results["query_surrogate"]["reason"].str.contains("no drop").all()
    assert (results["query_glm"]["status"] == "ok").any()

    elsewhere = query_level_explanatory(Trace(_tiny()), {"baseline": "learned", "options": FAST})
    _assert_clean(elsewhere)
    for table in elsewhere.values():
        assert (table["status"] == "not tested").all()
        assert table["reason"].str.contains("'learned'").all()


def test_drops_that_change_nothing():
    def unchanged(data):
        data.ap[:] = data.ap[0][None, :]

    results = query_level_explanatory(_edited(_tiny(), unchanged), {"options": FAST})
    _assert_clean(results)
    assert (results["query_surrogate"]["status"] == "not estimable").all()
    assert results["query_surrogate"]["reason"].str.contains("zero").all()


def test_a_group_without_its_drop_condition():
    def remove_drop(data):
        keep = np.asarray(data.condition_name) != "drop:g03"
        sliced = data.select_conditions(keep)
        for field in vars(sliced):
            setattr(data, field, getattr(sliced, field))

    results = query_level_explanatory(_edited(_tiny(), remove_drop), {"options": FAST})
    _assert_clean(results)
    table = results["query_surrogate"].set_index("group")
    assert table.loc["g03", "status"] == "not tested" and "drop:g03" in table.loc["g03", "reason"]
    assert (table.loc[["g00", "g01", "g02"], "status"] == "ok").all()


def test_option_validation():
    trace = Trace(_tiny())
    with pytest.raises(MosaicError, match="unknown explanatory option"):
        query_level_explanatory(trace, {"options": {"explanatory": {"trees": 3}}})
    with pytest.raises(MosaicError, match="missing"):
        query_level_explanatory(trace, {"options": {"explanatory": {"missing": "impute"}}})
