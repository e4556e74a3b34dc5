"""Rankings of attribute groups and families, and how far the methods agree.

Each method's table yields one score per group (larger = the model relies on the group more);
:data:`SCORE_SOURCES` says, as data, which table, which rows and which column. Scores become
ranks per method (1 = most relied on, ties averaged), the ranks a consensus (mean rank), and the
agreement between methods is measured with Kendall's W (tie-corrected, chi-square p) and pairwise
Spearman correlations. Families (intrinsic vs extrinsic, and the four fine families) are ranked
by the mean ΔmAP of their groups, with identity-cluster bootstrap intervals.

Column meanings of ``ranking_groups``, ``ranking_families`` and ``agreement`` are listed in
:mod:`analysis.results`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from analysis.methods.paired import NOT_ESTIMABLE, NOT_TESTED, OK, identity_deltas
from analysis.methods.rank_intervals import configuration_replicates, paired_replicates
from analysis.settings import AnalysisSettings, MethodNotApplicable
from analysis.stats.concordance import kendalls_w
from analysis.stats.resampling import cluster_bootstrap, percentile_interval

__all__ = [
    "ScoreSource",
    "SCORE_SOURCES",
    "method_scores",
    "rank_groups",
    "agreement",
    "rank_families",
    "ranking_tables",
    "distinguishable_groups",
    "is_population_null",
    "headline",
]


@dataclass(frozen=True)
class ScoreSource:
    """Where one method's per-group score comes from.

    ``score = sign * table.loc[rows matching where, column]``, one row per group (several rows of
    a group are combined with ``reduce``). Rows whose status is ``not estimable`` or whose score is
    not finite are left out; a ``not tested`` row still has a valid estimate (e.g. ΔmAP = 0).
    """

    method: str
    table: str
    column: str
    sign: float = 1.0
    where: Mapping[str, Any] = field(default_factory=dict)
    reduce: str = "mean"            # how several rows of one group combine: mean | max | sum
    description: str = ""
    label: str = ""                 # a short header for the report (the method's name otherwise)
    # (trace, settings) -> the scores recomputed on each identity resample, (B, groups), before
    # ``sign``; a method without one has no identity-valid score and stays out of the consensus
    replicate: Callable | None = None


SCORE_SOURCES: tuple[ScoreSource, ...] = (
    # paired query-level tests (this project's extension)
    ScoreSource("identity:drop", "paired_identity", "delta_map", -1.0, {"comparison": "drop"},
                label="ΔmAP drop", description="loss of mAP when the group's experts are dropped",
                replicate=partial(paired_replicates, comparison="drop", outcome="ap")),
    ScoreSource("identity:counterfactual", "paired_identity", "delta_map", -1.0, {"comparison": "counterfactual"},
                label="ΔmAP cf.", description="loss of mAP when the queries' group is routed by another identity's state",
                replicate=partial(paired_replicates, comparison="counterfactual", outcome="ap")),
    ScoreSource("mcnemar:drop", "paired_mcnemar", "delta_rank1", -1.0, {"comparison": "drop"},
                label="ΔR-1 drop", description="loss of rank-1 accuracy when the group's experts are dropped",
                replicate=partial(paired_replicates, comparison="drop", outcome="rank1")),
    ScoreSource("mcnemar:counterfactual", "paired_mcnemar", "delta_rank1", -1.0, {"comparison": "counterfactual"},
                label="ΔR-1 cf.", description="loss of rank-1 accuracy under counterfactual routing",
                replicate=partial(paired_replicates, comparison="counterfactual", outcome="rank1")),
    ScoreSource("wilcoxon:drop", "paired_wilcoxon", "rbc", -1.0, {"comparison": "drop"},
                label="signed-rank drop", description="rank-biserial correlation of the AP change when dropped (negated)"),
    ScoreSource("wilcoxon:counterfactual", "paired_wilcoxon", "rbc", -1.0, {"comparison": "counterfactual"},
                label="signed-rank cf.", description="rank-biserial correlation of the AP change under counterfactual routing (negated)"),
    # configuration level (the paper's)
    ScoreSource("config_glm_gaussian", "config_glm_gaussian", "coef",
                label="GLM mAP", description="Gaussian GLM coefficient: mAP gained when the group is enabled",
                replicate=partial(configuration_replicates, table="config_glm_gaussian")),
    ScoreSource("config_glm_binomial", "config_glm_binomial", "coef",
                label="GLM R-1", description="binomial GLM coefficient: rank-1 log-odds gained when the group is enabled",
                replicate=partial(configuration_replicates, table="config_glm_binomial")),
    ScoreSource("config_rf_permutation", "config_surrogate", "perm_importance_mean", 1.0, {"model": "random_forest"},
                label="forest importance", description="random-forest surrogate: permutation importance of the group's indicator"),
    ScoreSource("config_xgb_shap", "config_surrogate", "mean_abs_shap", 1.0, {"model": "xgboost"},
                label="XGBoost SHAP", description="XGBoost surrogate: mean |SHAP| of the group's indicator"),
    ScoreSource("config_ttest", "config_ttest", "diff",
                label="t-test", description="mAP of the configurations with the group enabled minus without",
                replicate=partial(configuration_replicates, table="config_ttest")),
    # query level, explanatory
    ScoreSource("query_surrogate_shap", "query_surrogate", "mean_shap", -1.0, {"level": "group"},
                label="query SHAP", description="XGBoost surrogate of the per-query AP change: AP lost (mean SHAP, negated) "
                            "where the group is dropped"),
    # query_glm is not a ranking method: it explains the oracle's rank-1 hit by the query's
    # states, which says which states are hard, not which experts the model relies on.
)

def method_scores(tables: Mapping[str, pd.DataFrame], groups: list[str],
                  sources: tuple[ScoreSource, ...] = SCORE_SOURCES) -> pd.DataFrame:
    """Scores as a ``groups x methods`` frame (NaN where a method does not score a group).

    Methods whose table is absent, or that score fewer than two groups, are left out.
    """
    columns = {}
    for source in sources:
        table = tables.get(source.table)
        if table is None or source.column not in table.columns or "group" not in table.columns:
            continue
        rows = table
        for key, value in source.where.items():
            if key not in rows.columns:
                rows = rows.iloc[0:0]
                break
            rows = rows[rows[key] == value]
        if "status" in rows.columns:
            rows = rows[rows["status"] != NOT_ESTIMABLE]
        values = pd.to_numeric(rows[source.column], errors="coerce").to_numpy(dtype=float) * source.sign
        keep = np.isfinite(values) & rows["group"].isin(groups).to_numpy()
        if not keep.any():
            continue
        per_group = pd.Series(values[keep]).groupby(rows["group"].to_numpy()[keep]).agg(source.reduce)  # pandas' own mean | max | sum
        if per_group.size >= 2:
            columns[source.method] = per_group.reindex(groups)
    return pd.DataFrame(columns, index=pd.Index(groups, name="group"))


def _ranks(scores: pd.Series) -> pd.Series:
    """1 = largest score; ties share their mean rank; NaN stays NaN."""
    return scores.rank(ascending=False, method="average")


def rank_groups(trace, tables: Mapping[str, pd.DataFrame], sources: tuple[ScoreSource, ...] = SCORE_SOURCES,
                settings: AnalysisSettings | None = None,
                replicated: tuple[dict, list] | None = None) -> tuple[pd.DataFrame, list[str], list[dict]]:
    """The ``ranking_groups`` table, the methods in the consensus, and warning rows.

    The consensus uses only identity-valid scores (sources with a ``replicate``) that score every
    group; its rank interval is the ``ci_level`` percentile interval of the consensus rank over
    identity resamples, every method's scores recomputed on the same resample. ``replicated`` is
    :func:`identity_replicates`' result when the caller has it already.
    """
    settings = settings or AnalysisSettings()
    schema = getattr(trace, "data", trace).schema
    groups = list(schema.group_names)
    scores = method_scores(tables, groups, sources)
    if scores.shape[1] == 0:
        raise MethodNotApplicable("no method produced group scores, so there is nothing to rank")
    replicates, warnings = replicated or identity_replicates(trace, scores, sources, settings)
    warnings = list(warnings)
    consensus_methods = list(replicates)
    if not consensus_methods:
        raise MethodNotApplicable(
            "no identity-valid method (paired ΔmAP / Δrank-1 or a configuration-level model) scored every "
            "group, so there is no consensus ranking"
        )
    ranks = scores.apply(_ranks)
    mean_rank = ranks[consensus_methods].mean(axis=1)
    boot_ranks = _consensus_rank_replicates(replicates)
    low, high = (percentile_interval(boot_ranks, settings.ci_level) if len(boot_ranks)
                 else (np.full(len(groups), np.nan),) * 2)
    n = len(groups)
    frame = pd.DataFrame({
        "group": groups,
        "family": [g.family for g in schema.groups],
        "coarse_family": [g.coarse_family for g in schema.groups],
        "consensus_rank": mean_rank.rank(method="average").to_numpy(),
        "rank_low": np.floor(low),
        "rank_high": np.ceil(high),
        "consensus_score": (1.0 - (mean_rank - 1.0) / max(n - 1, 1)).to_numpy(),
        "mean_rank": mean_rank.to_numpy(),
        "n_methods": ranks[consensus_methods].notna().sum(axis=1).to_numpy().astype(np.int64),
        "resampled": "identities",
        "n_resamples": int(len(boot_ranks)),
    })
    for m in scores.columns:
        frame[f"rank:{m}"] = ranks[m].to_numpy()
    for m in scores.columns:
        frame[f"score:{m}"] = scores[m].to_numpy()
    frame = frame.sort_values(["consensus_rank", "group"], kind="stable").reset_index(drop=True)
    return frame, consensus_methods, warnings


def identity_replicates(trace, scores: pd.DataFrame, sources: tuple[ScoreSource, ...],
                        settings: AnalysisSettings) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Signed scores on every identity resample ``{method: (B, groups)}`` of the identity-valid
    methods that score every group (the consensus), and warning rows for those left out."""
    by_method = {s.method: s for s in sources}
    valid = [m for m in scores.columns if by_method[m].replicate is not None]
    warnings, replicates = [], {}
    for m in valid:
        if scores[m].isna().any():
            missing = ", ".join(scores.index[scores[m].isna()])
            warnings.append({"method": "ranking", "group": "", "comparison": m,
                             "reason": f"{m} scores no {missing}; left out of the consensus"})
            continue
        draws = by_method[m].replicate(trace, settings)
        if draws is None:
            warnings.append({"method": "ranking", "group": "", "comparison": m,
                             "reason": f"{m} cannot be recomputed on identity resamples; left out of the consensus"})
        else:
            replicates[m] = by_method[m].sign * draws.reindex(columns=list(scores.index)).to_numpy(dtype=float)
    return replicates, warnings


def _method_rank_replicates(replicates: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(methods, B, groups)`` ranks (1 = largest score) on the resamples every method could score."""
    stacked = np.stack(list(replicates.values()))                                   # (m, B, G)
    usable = np.isfinite(stacked).all(axis=(0, 2))
    return stats.rankdata(-stacked[:, usable], axis=2, method="average")


def _consensus_rank_replicates(replicates: Mapping[str, np.ndarray]) -> np.ndarray:
    """The consensus rank of every group on each identity resample, ``(B, groups)``."""
    return stats.rankdata(_method_rank_replicates(replicates).mean(0), axis=1, method="average")


def agreement(scores: pd.DataFrame, methods: list[str], replicates: Mapping[str, np.ndarray] | None = None,
              ci_level: float = 0.95) -> pd.DataFrame:
    """Kendall's W over ``methods`` (complete rows only) and Spearman's rho for every pair.

    With the methods' identity ``replicates`` (see :func:`identity_replicates`), W gets the
    ``ci_level`` percentile interval of its value over the identity resamples (``ci_low``,
    ``ci_high``); the chi-square p of W treats the groups' ranks as the random part only.
    """
    data = scores[methods].dropna()
    m, n = len(methods), len(data)
    rows = []
    base = {"n_methods": m, "n_groups": n}
    if m < 2 or n < 2:
        rows.append({"statistic": "kendall_w", "method_a": "", "method_b": "", "value": np.nan, "p": np.nan,
                     "chi2": np.nan, "df": np.nan, **base, "status": NOT_ESTIMABLE,
                     "reason": f"Kendall's W needs two methods and two groups, got {m} and {n}"})
    else:
        ranks = data.apply(_ranks).to_numpy().T
        w = kendalls_w(ranks)
        ok = np.isfinite(w["w"])
        rows.append({"statistic": "kendall_w", "method_a": "", "method_b": "", "value": w["w"], "p": w["p"],
                     "chi2": w["chi2"], "df": w["df"], **base, **_w_interval(replicates, methods, ci_level),
                     "status": OK if ok else NOT_ESTIMABLE, "reason": "" if ok else "every method ties every group"})
    for a, b in itertools.combinations(methods, 2):
        pair = scores[[a, b]].dropna()
        rho, p, status, reason = np.nan, np.nan, OK, ""
        if len(pair) < 3:
            status, reason = NOT_ESTIMABLE, f"only {len(pair)} groups scored by both methods"
        elif pair[a].nunique() < 2 or pair[b].nunique() < 2:
            status, reason = NOT_ESTIMABLE, "one method gives every group the same score"
        else:
            result = stats.spearmanr(pair[a], pair[b])
            rho, p = float(result.statistic), float(result.pvalue)
        rows.append({"statistic": "spearman", "method_a": a, "method_b": b, "value": rho, "p": p,
                     "chi2": np.nan, "df": np.nan, "n_methods": 2, "n_groups": len(pair),
                     "status": status, "reason": reason})
    return pd.DataFrame(rows)


def _w_interval(replicates, methods, ci_level) -> dict[str, float]:
    if not replicates or any(m not in replicates for m in methods):
        return {"ci_low": np.nan, "ci_high": np.nan}
    ranks = _method_rank_replicates({m: replicates[m] for m in methods})          # (m, B, G)
    values = np.array([kendalls_w(ranks[:, b])["w"] for b in range(ranks.shape[1])])
    low, high = percentile_interval(values, ci_level)
    return {"ci_low": float(low[0]), "ci_high": float(high[0])}


def rank_families(trace, settings: AnalysisSettings) -> pd.DataFrame:
    """Mean ΔmAP of each family's groups per comparison, with identity-cluster bootstrap CIs.

    The bootstrap resamples identities once for all groups (the same weights as
    :func:`analysis.methods.paired.identity_tests`), so a family mean is resampled consistently.
    """
    data = getattr(trace, "data", trace)
    schema = data.schema
    deltas = identity_deltas(trace, settings)
    if not deltas.comparisons:
        raise MethodNotApplicable("the trace has none of the drop/counterfactual conditions of any group")
    resampled = cluster_bootstrap(deltas.delta, deltas.identity, n_resamples=settings.n_bootstrap, seed=settings.seed)
    n_ids = resampled.n_identities
    if n_ids == 0:
        raise MethodNotApplicable("no valid query, so no family effect can be estimated")
    estimate, boot = resampled.estimate, resampled.replicates
    tail = (1.0 - settings.ci_level) / 2.0

    levels = {
        "coarse": {c: [g.name for g in schema.groups if g.coarse_family == c]
                   for c in dict.fromkeys(g.coarse_family for g in schema.groups)},
        "fine": {f: list(gs) for f, gs in schema.families.items()},
    }
    rows = []
    for level, families in levels.items():
        for comparison in settings.comparisons:
            index = {c.group: k for k, c in enumerate(deltas.comparisons) if c.comparison == comparison}
            if not index:
                continue
            block = []
            for family, members in families.items():
                present = [index[g] for g in members if g in index]
                row = {"family": family, "level": level, "comparison": comparison, "effect": np.nan,
                       "ci_low": np.nan, "ci_high": np.nan, "n_groups": len(present),
                       "groups": ",".join(g for g in members if g in index), "status": OK, "reason": ""}
                if not present:
                    row.update(status=NOT_ESTIMABLE, reason=f"the trace has no {comparison} condition of this family")
                else:
                    row["effect"] = float(estimate[present].mean())
                    lo, hi = np.quantile(boot[:, present].mean(1), [tail, 1.0 - tail])
                    row["ci_low"], row["ci_high"] = float(lo), float(hi)
                    if n_ids < 2:
                        row.update(ci_low=np.nan, ci_high=np.nan, status=NOT_TESTED,
                                   reason="only one identity: no interval")
                block.append(row)
            effects = pd.Series([r["effect"] for r in block])
            for r, rank in zip(block, effects.rank(method="average").to_numpy()):
                r["rank"] = rank
            _family_rank_interval(block, families, index, boot, settings.ci_level, n_ids)
            rows.extend(block)
    columns = ["family", "level", "comparison", "effect", "ci_low", "ci_high", "n_groups", "groups", "rank",
               "rank_low", "rank_high", "resampled", "n_resamples", "status", "reason"]
    return pd.DataFrame(rows, columns=columns).astype({"n_groups": np.int64})


def _family_rank_interval(block, families, index, boot, ci_level, n_ids) -> None:
    """Add each family's ``ci_level`` rank interval (1 = largest loss) over the identity resamples."""
    members = [[index[g] for g in groups if g in index] for groups in families.values()]
    scored = [k for k, m in enumerate(members) if m]
    for r in block:
        r.update(rank_low=np.nan, rank_high=np.nan, resampled="identities", n_resamples=int(boot.shape[0]))
    if n_ids < 2 or not scored:
        return
    effects = np.column_stack([boot[:, members[k]].mean(1) for k in scored])      # (B, families)
    low, high = percentile_interval(stats.rankdata(effects, axis=1, method="average"), ci_level)
    for j, k in enumerate(scored):
        block[k].update(rank_low=float(np.floor(low[j])), rank_high=float(np.ceil(high[j])))


def ranking_tables(trace, tables: Mapping[str, pd.DataFrame],
                   settings: AnalysisSettings | None = None) -> tuple[dict[str, pd.DataFrame], list[dict]]:
    """``ranking_groups``, ``agreement`` and ``ranking_families``, plus warning rows."""
    settings = settings or AnalysisSettings()
    schema = getattr(trace, "data", trace).schema
    scores = method_scores(tables, list(schema.group_names))
    if scores.shape[1] == 0:
        raise MethodNotApplicable("no method produced group scores, so there is nothing to rank")
    replicated = identity_replicates(trace, scores, SCORE_SOURCES, settings)
    groups_table, methods, warnings = rank_groups(trace, tables, settings=settings, replicated=replicated)
    replicates = replicated[0]
    out = {"ranking_groups": groups_table, "agreement": agreement(scores, methods, replicates, settings.ci_level)}
    try:
        out["ranking_families"] = rank_families(trace, settings)
    except MethodNotApplicable as exc:
        warnings.append({"method": "ranking_families", "group": "", "comparison": "", "reason": str(exc)})
    return out, warnings


# ------------------------------------------------------------------------------- the headline
# The identity-valid tests that decide whether a group's effect differs from zero, in order of
# preference: the first table present decides (the Holm decision within each comparison).
DECIDING_TABLES: tuple[tuple[str, str], ...] = (("paired_identity", "reject_holm"), ("config_glm_gaussian", "reject_holm"))


def distinguishable_groups(tables: Mapping[str, pd.DataFrame]) -> tuple[list[str], str]:
    """The groups whose effect an identity-valid test tells from zero, and the table that decided.

    ``([], table)`` is the population null: no group's effect is distinguishable from zero, and the
    order of the groups is noise, not a ranking. ``([], "")`` when no deciding table exists.
    """
    for name, decision in DECIDING_TABLES:
        frame = tables.get(name)
        if frame is None or not len(frame) or decision not in frame:
            continue
        rejected = frame[frame[decision].fillna(False).astype(bool)]
        groups = [str(g) for g in rejected["group"].dropna().astype(str) if g]
        return list(dict.fromkeys(groups)), name
    return [], ""


def is_population_null(tables: Mapping[str, pd.DataFrame]) -> bool:
    """True when an identity-valid test exists and no group's effect is distinguishable from zero."""
    groups, decided_by = distinguishable_groups(tables)
    return bool(decided_by) and not groups


def headline(tables: Mapping[str, pd.DataFrame], limit: int = 3) -> str:
    """One sentence: the groups relied on most, or that none differs from zero (never a ranking of noise)."""
    ranking = tables.get("ranking_groups")
    if ranking is None or not len(ranking):
        return "No ranking of groups: the ranking did not run."
    order = ranking.sort_values(["consensus_rank", "group"], kind="stable")["group"].astype(str).tolist()
    groups, decided_by = distinguishable_groups(tables)
    if decided_by and not groups:
        return ("No group's effect is distinguishable from zero (identity-level tests, Holm-adjusted): "
                "the order of the groups is noise, not a ranking.")
    shown = [g for g in order if g in groups][:limit] if decided_by else order[:limit]
    rest = f" ({len(groups)} of {len(order)} groups differ from zero)" if decided_by else ""
    return "Most relied on (consensus across methods): " + ", ".join(shown) + rest + "."
