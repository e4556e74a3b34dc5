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
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from analysis.paired import NOT_ESTIMABLE, NOT_TESTED, OK, identity_deltas
from analysis.resampling import cluster_bootstrap
from analysis.settings import AnalysisSettings, MethodNotApplicable

__all__ = [
    "ScoreSource",
    "SCORE_SOURCES",
    "method_scores",
    "kendalls_w",
    "rank_groups",
    "agreement",
    "rank_families",
    "ranking_tables",
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


SCORE_SOURCES: tuple[ScoreSource, ...] = (
    # paired query-level tests (this project's extension)
    ScoreSource("identity:drop", "paired_identity", "delta_map", -1.0, {"comparison": "drop"},
                description="loss of mAP when the group's experts are dropped"),
    ScoreSource("identity:counterfactual", "paired_identity", "delta_map", -1.0, {"comparison": "counterfactual"},
                description="loss of mAP when the queries' group is routed by another identity's state"),
    ScoreSource("mcnemar:drop", "paired_mcnemar", "delta_rank1", -1.0, {"comparison": "drop"},
                description="loss of rank-1 accuracy when the group's experts are dropped"),
    ScoreSource("mcnemar:counterfactual", "paired_mcnemar", "delta_rank1", -1.0, {"comparison": "counterfactual"},
                description="loss of rank-1 accuracy under counterfactual routing"),
    ScoreSource("wilcoxon:drop", "paired_wilcoxon", "rbc", -1.0, {"comparison": "drop"},
                description="rank-biserial correlation of the AP change when dropped (negated)"),
    ScoreSource("wilcoxon:counterfactual", "paired_wilcoxon", "rbc", -1.0, {"comparison": "counterfactual"},
                description="rank-biserial correlation of the AP change under counterfactual routing (negated)"),
    # configuration level (the paper's)
    ScoreSource("config_glm_gaussian", "config_glm_gaussian", "coef",
                description="Gaussian GLM coefficient: mAP gained when the group is enabled"),
    ScoreSource("config_glm_binomial", "config_glm_binomial", "coef",
                description="binomial GLM coefficient: rank-1 log-odds gained when the group is enabled"),
    ScoreSource("config_rf_permutation", "config_surrogate", "perm_importance_mean", 1.0, {"model": "random_forest"},
                description="random-forest surrogate: permutation importance of the group's indicator"),
    ScoreSource("config_xgb_shap", "config_surrogate", "mean_abs_shap", 1.0, {"model": "xgboost"},
                description="XGBoost surrogate: mean |SHAP| of the group's indicator"),
    ScoreSource("config_ttest", "config_ttest", "diff",
                description="Welch t-test: mAP with the group enabled minus without"),
    # query level, explanatory
    ScoreSource("query_surrogate_shap", "query_surrogate", "mean_shap", -1.0, {"level": "group"},
                description="XGBoost surrogate of the per-query AP change: AP lost (mean SHAP, negated) "
                            "where the group is dropped"),
    # query_glm is not a ranking method: it explains the oracle's rank-1 hit by the query's
    # states, which says which states are hard, not which experts the model relies on.
)

_REDUCERS = {"mean": np.mean, "max": np.max, "sum": np.sum}


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
        per_group = pd.Series(values[keep]).groupby(rows["group"].to_numpy()[keep]).agg(_REDUCERS[source.reduce])
        if per_group.size >= 2:
            columns[source.method] = per_group.reindex(groups)
    return pd.DataFrame(columns, index=pd.Index(groups, name="group"))


def _ranks(scores: pd.Series) -> pd.Series:
    """1 = largest score; ties share their mean rank; NaN stays NaN."""
    return scores.rank(ascending=False, method="average")


def kendalls_w(ranks: np.ndarray) -> dict[str, float]:
    """Kendall's coefficient of concordance of ``ranks`` (methods x items), tie-corrected.

    ``W = 12 S / (m^2 (n^3 - n) - m sum T)``, ``T = sum(t^3 - t)`` over each method's tie groups;
    ``chi2 = m (n - 1) W`` on ``n - 1`` degrees of freedom.
    """
    ranks = np.asarray(ranks, dtype=float)
    m, n = ranks.shape
    column_sums = ranks.sum(0)
    s = float(np.sum((column_sums - m * (n + 1) / 2.0) ** 2))
    ties = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts**3 - counts))
    denominator = m**2 * (n**3 - n) - m * ties
    if denominator <= 0:
        return {"w": np.nan, "chi2": np.nan, "df": float(n - 1), "p": np.nan}
    w = 12.0 * s / denominator
    chi2 = m * (n - 1) * w
    return {"w": w, "chi2": chi2, "df": float(n - 1), "p": float(stats.chi2.sf(chi2, n - 1))}


def rank_groups(trace, tables: Mapping[str, pd.DataFrame],
                sources: tuple[ScoreSource, ...] = SCORE_SOURCES) -> tuple[pd.DataFrame, list[str], list[dict]]:
    """The ``ranking_groups`` table, the methods in the consensus, and warning rows."""
    schema = getattr(trace, "data", trace).schema
    groups = list(schema.group_names)
    scores = method_scores(tables, groups, sources)
    warnings = []
    if scores.shape[1] == 0:
        raise MethodNotApplicable("no method produced group scores, so there is nothing to rank")
    complete = [m for m in scores.columns if scores[m].notna().all()]
    for m in scores.columns:
        if m not in complete:
            missing = ", ".join(scores.index[scores[m].isna()])
            warnings.append({"method": "ranking", "group": "", "comparison": m,
                             "reason": f"{m} scores no {missing}; left out of the consensus"})
    consensus_methods = complete or list(scores.columns)
    ranks = scores.apply(_ranks)
    mean_rank = ranks[consensus_methods].mean(axis=1)
    n = len(groups)
    frame = pd.DataFrame({
        "group": groups,
        "family": [g.family for g in schema.groups],
        "coarse_family": [g.coarse_family for g in schema.groups],
        "consensus_rank": mean_rank.rank(method="average").to_numpy(),
        "consensus_score": (1.0 - (mean_rank - 1.0) / max(n - 1, 1)).to_numpy(),
        "mean_rank": mean_rank.to_numpy(),
        "n_methods": ranks[consensus_methods].notna().sum(axis=1).to_numpy().astype(np.int64),
    })
    for m in scores.columns:
        frame[f"rank:{m}"] = ranks[m].to_numpy()
    for m in scores.columns:
        frame[f"score:{m}"] = scores[m].to_numpy()
    frame = frame.sort_values(["consensus_rank", "group"], kind="stable").reset_index(drop=True)
    return frame, consensus_methods, warnings


def agreement(scores: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Kendall's W over ``methods`` (complete rows only) and Spearman's rho for every pair."""
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
                     "chi2": w["chi2"], "df": w["df"], **base, "status": OK if ok else NOT_ESTIMABLE,
                     "reason": "" if ok else "every method ties every group"})
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


def rank_families(trace, settings: AnalysisSettings) -> pd.DataFrame:
    """Mean ΔmAP of each family's groups per comparison, with identity-cluster bootstrap CIs.

    The bootstrap resamples identities once for all groups (the same weights as
    :func:`analysis.paired.identity_tests`), so a family mean is resampled consistently.
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
            rows.extend(block)
    columns = ["family", "level", "comparison", "effect", "ci_low", "ci_high", "n_groups", "groups", "rank",
               "status", "reason"]
    return pd.DataFrame(rows, columns=columns).astype({"n_groups": np.int64})


def ranking_tables(trace, tables: Mapping[str, pd.DataFrame],
                   settings: AnalysisSettings | None = None) -> tuple[dict[str, pd.DataFrame], list[dict]]:
    """``ranking_groups``, ``agreement`` and ``ranking_families``, plus warning rows."""
    settings = settings or AnalysisSettings()
    groups_table, methods, warnings = rank_groups(trace, tables)
    schema = getattr(trace, "data", trace).schema
    scores = method_scores(tables, list(schema.group_names))
    out = {"ranking_groups": groups_table, "agreement": agreement(scores, methods)}
    try:
        out["ranking_families"] = rank_families(trace, settings)
    except MethodNotApplicable as exc:
        warnings.append({"method": "ranking_families", "group": "", "comparison": "", "reason": str(exc)})
    return out, warnings
