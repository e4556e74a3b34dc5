"""Rankings: per-method ranks, Kendall's W with ties, pairwise Spearman, family effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.methods.paired import paired_tables
from analysis.methods.ranking import SCORE_SOURCES, agreement, method_scores, rank_families, rank_groups
from analysis.settings import AnalysisSettings
from analysis.simulation.trace import simulate
from analysis.stats.concordance import kendalls_w

SETTINGS = AnalysisSettings(n_bootstrap=300, n_permutations=200, seed=0)


@pytest.mark.parametrize("seed", range(3))
def test_kendalls_w_matches_friedman_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(5, 8)).astype(float)  # many ties
    ranks = np.vstack([stats.rankdata(-row) for row in scores])
    w = kendalls_w(ranks)
    friedman = stats.friedmanchisquare(*ranks.T)
    m, n = ranks.shape
    assert w["chi2"] == pytest.approx(friedman.statistic)
    assert w["p"] == pytest.approx(friedman.pvalue)
    assert w["w"] == pytest.approx(friedman.statistic / (m * (n - 1)))


def test_kendalls_w_extremes():
    same = np.tile(np.arange(1.0, 7.0), (4, 1))
    assert kendalls_w(same)["w"] == pytest.approx(1.0)
    opposite = np.vstack([np.arange(1.0, 7.0), np.arange(6.0, 0.0, -1)])
    assert kendalls_w(opposite)["w"] == pytest.approx(0.0)
    assert np.isnan(kendalls_w(np.ones((3, 4)))["w"])


@pytest.fixture(scope="module")
def planted():
    effects = {f"g{i:02d}": 0.15 * (i + 1) for i in range(10)}
    trace = simulate(groups=10, effects=effects, n_ids=250, n_subsets=0,
                     kinds=("oracle", "drop", "counterfactual"), seed=0)
    return trace, pd.Series(effects), paired_tables(trace, SETTINGS)


def test_every_paired_method_and_the_consensus_recover_the_planted_order(planted):
    trace, truth, tables = planted
    ranking, methods, warnings = rank_groups(trace, tables, settings=SETTINGS)
    ranking = ranking.set_index("group")
    # the Wilcoxon rank-biserial score is not recomputed on identity resamples: ranked, not in the consensus
    assert sorted(methods) == sorted(["identity:drop", "identity:counterfactual", "mcnemar:drop",
                                      "mcnemar:counterfactual"]) and warnings == []
    for method in [c[len("rank:"):] for c in ranking.columns if c.startswith("rank:")]:
        rho = stats.spearmanr(-ranking[f"rank:{method}"], truth[ranking.index]).statistic
        assert rho >= 0.9, (method, rho)
        assert (ranking[f"score:{method}"] > 0).all()  # every planted effect is a loss: right sign
    assert stats.spearmanr(-ranking["consensus_rank"], truth[ranking.index]).statistic >= 0.9
    assert ranking.index[0] == "g09" and list(ranking["consensus_rank"]) == sorted(ranking["consensus_rank"])
    assert ranking["consensus_score"].between(0, 1).all()


def test_agreement_table(planted):
    trace, _, tables = planted
    scores = method_scores(tables, list(trace.group_names))
    table = agreement(scores, list(scores.columns))
    w = table[table["statistic"] == "kendall_w"].iloc[0]
    assert w["status"] == "ok" and w["value"] > 0.9 and w["p"] < 1e-6
    assert w["n_methods"] == 6 and w["n_groups"] == 10
    pairs = table[table["statistic"] == "spearman"]
    assert len(pairs) == 15 and (pairs["value"] > 0.85).all()
    a, b = pairs.iloc[0][["method_a", "method_b"]]
    assert pairs.iloc[0]["value"] == pytest.approx(stats.spearmanr(scores[a], scores[b]).statistic)


def test_method_missing_a_group_is_left_out_of_the_consensus(planted):
    trace, _, tables = planted
    tables = dict(tables)
    mcnemar = tables["paired_mcnemar"].copy()
    mcnemar.loc[mcnemar["group"] == "g03", "status"] = "not estimable"
    tables["paired_mcnemar"] = mcnemar
    ranking, methods, warnings = rank_groups(trace, tables, settings=SETTINGS)
    assert "mcnemar:drop" not in methods and "mcnemar:counterfactual" not in methods
    assert any("g03" in w["reason"] for w in warnings)
    assert pd.isna(ranking.set_index("group").loc["g03", "rank:mcnemar:drop"])


def test_family_effects_with_bootstrap_intervals():
    effects = {"g00": 2.0, "g04": 2.0, "g08": 2.0}  # the intrinsic groups of a 10-group synthetic schema
    trace = simulate(groups=10, effects=effects, n_ids=200, n_subsets=0, kinds=("oracle", "drop", "counterfactual"), seed=1)
    families = rank_families(trace, SETTINGS)
    assert set(families["level"]) == {"coarse", "fine"}
    for (level, comparison), block in families.groupby(["level", "comparison"]):
        block = block.set_index("family")
        assert block.loc["intrinsic", "rank"] == 1
        assert block.loc["intrinsic", "ci_high"] < 0
        assert (block["ci_low"] <= block["effect"]).all() and (block["effect"] <= block["ci_high"]).all()
        others = block.drop(index="intrinsic")
        assert (others["ci_low"] < 0.02).all()
        # the planted family is first on every identity resample; the null ones share the other places
        assert block.loc["intrinsic", "rank_low"] == 1 and block.loc["intrinsic", "rank_high"] == 1
        assert (others["rank_low"] >= 2).all() and (block["resampled"] == "identities").all()
    fine = families[(families["level"] == "fine") & (families["comparison"] == "drop")].set_index("family")
    assert fine.loc["intrinsic", "groups"] == "g00,g04,g08" and fine.loc["intrinsic", "n_groups"] == 3


def test_consensus_rank_interval_separates_planted_groups_and_covers_tied_ones():
    # two strong, well separated effects; the remaining eight groups are null and exchangeable
    effects = {"g00": 1.5, "g01": 0.8}
    trace = simulate(groups=10, effects=effects, n_ids=150, n_subsets=0, kinds=("oracle", "drop"), seed=4)
    tables = paired_tables(trace, SETTINGS)
    ranking, methods, _ = rank_groups(trace, tables, settings=SETTINGS)
    ranking = ranking.set_index("group")
    assert (ranking.loc["g00", ["rank_low", "rank_high"]] == [1, 1]).all()
    assert (ranking.loc["g01", ["rank_low", "rank_high"]] == [2, 2]).all()
    nulls = ranking.drop(index=["g00", "g01"])
    assert (nulls["rank_low"] >= 3).all() and (nulls["rank_high"] - nulls["rank_low"] >= 3).all()
    assert (ranking["rank_low"] <= ranking["consensus_rank"]).all()
    assert (ranking["consensus_rank"] <= ranking["rank_high"]).all()
    assert (ranking["n_resamples"] == SETTINGS.n_bootstrap).all()


def test_kendalls_w_gets_an_identity_resampled_interval(planted):
    from analysis.methods.ranking import identity_replicates

    trace, _, tables = planted
    scores = method_scores(tables, list(trace.group_names))
    replicates, _ = identity_replicates(trace, scores, SCORE_SOURCES, SETTINGS)
    methods = list(replicates)
    w = agreement(scores, methods, replicates, 0.9).set_index("statistic").loc["kendall_w"]
    assert w["ci_low"] <= w["value"] <= w["ci_high"] <= 1.0
