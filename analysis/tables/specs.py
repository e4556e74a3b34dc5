"""The specs of every built-in result table (see :mod:`analysis.tables.registry` for what a spec is).

Sign convention, everywhere: a *delta* is ``condition - baseline`` (the baseline is ``oracle``),
so a group the model relies on has a **negative** delta when it is dropped or misrouted.
Every row of a test table carries ``status`` and ``reason``; a row that is not ok keeps NaN in
its p-value and stays out of the multiple-testing corrections (:mod:`analysis.stats.corrections`).
"""

from __future__ import annotations

from analysis.stats.corrections import CORRECTIONS
from analysis.tables.registry import ColumnSpec as C
from analysis.tables.registry import TableSpec, register_table

IDENTITY = "identity"
# Retrieval rates are computed as fractions and held in percent; their changes in percentage points.
PP = dict(unit="pp", scale=100.0)
PERCENT = dict(unit="%", scale=100.0)


def _status(done: str = "ok, not tested or not estimable") -> tuple[C, ...]:
    return (C("status", "str", f"{done}", role="status"),
            C("reason", "str", "why the row is not ok (empty when ok)", role="status"))


# correction -> (short name in report headers, full name in descriptions)
CORRECTION_NAMES = {"holm": ("Holm", "Holm"), "bh": ("BH", "Benjamini-Hochberg")}


def _p(test: str) -> tuple[C, ...]:
    """p, then per correction of :data:`analysis.stats.corrections.CORRECTIONS` its adjusted p within the row's family
    of tests and the decision at alpha."""
    columns = [C("p", "float", f"p-value of the {test}", role="test")]
    for name in CORRECTIONS:
        short, title = CORRECTION_NAMES.get(name, (name, name))
        columns += [
            C(f"p_{name}", "float", f"p {title}-adjusted within the row's family of tests", label=f"p {short}",
              role="correction"),
            C(f"reject_{name}", "bool", f"p_{name} <= alpha (False where not tested)", role="decision"),
        ]
    return tuple(columns)


def _interval(of: str, how: str, label: str = "CI low", high: str = "CI high", prefix: str = "",
              unit: str = "", scale: float = 1.0) -> tuple[C, ...]:
    return (C(f"{prefix}ci_low", "float", f"lower end of the ci_level interval of {of} ({how})", label=label,
              unit=unit, scale=scale, role="interval"),
            C(f"{prefix}ci_high", "float", f"upper end of the ci_level interval of {of} ({how})", label=high,
              unit=unit, scale=scale, role="interval"))


GROUP_KEYS = (
    C("group", "str", "attribute group", role="key"),
    C("family", "str", "fine family of the group", role="key"),
)
PAIRED_KEYS = GROUP_KEYS + (
    C("comparison", "str", "drop or counterfactual", role="key"),
    C("condition", "str", "the condition, e.g. drop:hat", role="key", hidden=True),
    C("baseline", "str", "the baseline condition (oracle)", role="key", hidden=True),
    C("unit", "str", "the independent unit of the test (identity)"),
)
QUERY_COUNTS = (
    C("n", "int", "valid queries", label="queries", role="count"),
    C("n_ids", "int", "identities of the valid queries", label="identities", role="count"),
)
PAIRED_SHOWN = ("group", "family", "comparison", "unit")
P_SHOWN = ("p", "p_holm", "p_bh", "test")
CONFIG_RESAMPLED = (
    C("resampled", "str", "the unit the decision columns resample (identities)", label="unit resampled"),
    C("n_ids", "int", "identities in the test set", label="identities", role="count"),
)

register_table(TableSpec(
    "paired_mcnemar", "paired", "Clustered McNemar test on rank-1 hits, one row per group × comparison.",
    PAIRED_KEYS + (
        *QUERY_COUNTS,
        C("n_ids_discordant", "int", "identities whose hits lost and gained do not cancel", role="count"),
        C("rank1_baseline", "float", "rank-1 rate under the baseline", label="R-1 oracle", **PERCENT),
        C("rank1_condition", "float", "rank-1 rate under the condition", label="R-1 condition", **PERCENT),
        C("delta_rank1", "float", "rank1_condition - rank1_baseline", label="ΔR-1", **PP, role="estimate"),
        *_interval("delta_rank1", "Tango's score interval divided by the identity design effect",
                   "ΔR-1 CI low", "ΔR-1 CI high", **PP),
        C("design_effect", "float", "identity-clustered over query-level variance of Δrank-1, at least 1",
          label="design effect"),
        C("b", "int", "hits lost: baseline hit, condition miss", label="hits lost", role="count"),
        C("c", "int", "hits gained", label="hits gained", role="count"),
        C("chi2", "float", "clustered McNemar statistic (Durkalski et al. 2003)", label="χ²", role="test"),
        C("exact", "bool", "p from every sign pattern of the discordant identities"),
        *_p("clustered McNemar test"), *_status(),
    ),
    resamples=IDENTITY, test="clustered McNemar (Durkalski), identity as unit", family_keys=("comparison",),
    shown_first=PAIRED_SHOWN + ("n", "n_ids", "rank1_baseline", "rank1_condition", "delta_rank1", "ci_low", "ci_high",
                                "b", "c", "design_effect", "chi2") + P_SHOWN,
    caption="Clustered McNemar test on rank-1 hits (Durkalski; unit: identity; Δrank-1 interval: Tango score "
            "interval with the identity design effect)",
))

register_table(TableSpec(
    "paired_wilcoxon", "paired", "Clustered signed-rank test on per-query AP, one row per group × comparison.",
    PAIRED_KEYS + (
        *QUERY_COUNTS,
        C("n_zero", "int", "queries whose AP did not change", role="count"),
        C("mean_delta_ap", "float", "mean change of AP (ΔmAP)", label="ΔmAP", **PP, role="estimate"),
        *_interval("mean_delta_ap", "identity-cluster percentile bootstrap, the resamples of paired_identity",
                   **PP),
        C("median_delta_ap", "float", "median change of AP over queries (descriptive)", label="median ΔAP", **PP),
        C("rbc", "float", "matched-pairs rank-biserial correlation over queries (Kerby 2014; descriptive)",
          label="rank-biserial r"),
        C("cles", "float", "Vargha–Delaney common-language effect size over all pairs (descriptive)", label="CLES"),
        C("cles_paired", "float", "share of queries whose AP rose, ties counted half (descriptive)"),
        C("statistic", "float", "Datta & Satten (2008) clustered signed-rank T", role="test"),
        C("z", "float", "standardised statistic", role="test"),
        *_p("clustered signed-rank test"), *_status(),
    ),
    resamples=IDENTITY, test="clustered signed-rank (Datta–Satten), identity as unit", family_keys=("comparison",),
    shown_first=PAIRED_SHOWN + ("n", "n_ids", "mean_delta_ap", "ci_low", "ci_high", "median_delta_ap", "rbc", "cles",
                                "z") + P_SHOWN,
    caption="Clustered signed-rank test on per-query AP (Datta–Satten; unit: identity, interval: identity-cluster "
            "bootstrap)",
))

register_table(TableSpec(
    "paired_identity", "paired", "Identity-level test of ΔmAP, one row per group × comparison.",
    PAIRED_KEYS + (
        C("n_ids", "int", "identities", label="identities", role="count"),
        C("n_queries", "int", "valid queries", label="queries", role="count"),
        C("delta_map", "float", "ΔmAP over valid queries", label="ΔmAP", **PP, role="estimate"),
        C("mean_identity_delta", "float", "mean over identities of each identity's mean ΔAP (the permutation "
                                          "statistic)", **PP),
        *_interval("delta_map", "identity-cluster percentile bootstrap", **PP),
        C("n_bootstrap", "int", "bootstrap resamples", role="count"),
        C("n_permutations", "int", "sign patterns used", role="count"),
        C("exact", "bool", "every sign pattern was enumerated (at most 12 identities)"),
        *_p("sign-flip permutation test over identities"), *_status(),
    ),
    resamples=IDENTITY, test="sign-flip permutation over identities", family_keys=("comparison",),
    shown_first=PAIRED_SHOWN + ("n_ids", "n_queries", "delta_map", "ci_low", "ci_high") + P_SHOWN,
    caption="Identity-level test of ΔmAP (sign-flip permutation over identities; unit: identity)",
))

_CONFIG_GLM_COMMON = (
    C("term", "str", "Intercept or enabled:<group>", role="key"),
    C("group", "str", "attribute group (empty for the intercept)", role="key"),
    C("family", "str", "fine family of the group", role="key"),
)
_CONFIG_DECISION = (
    C("se", "float", "standard error over identity resamples of the refitted estimate"),
    C("t", "float", "estimate / se", role="test"),
    C("df", "float", "n_ids - 1", role="test"),
)
_CONFIG_COUNTS = (
    C("n_resamples", "int", "identity resamples that could be refitted", role="count"),
)


def _conditional(*names: str, what: str = "the paper's test, conditional on the test set's identities",
                 **unit) -> tuple[C, ...]:
    return tuple(C(n, "float", f"{n.removesuffix('_conditional')} of {what} (no decision is made on it)", **unit)
                 for n in names)


def _se(**unit) -> C:
    return C("se", "float", "standard error over identity resamples of the refitted estimate", **unit)


register_table(TableSpec(
    "config_glm_binomial", "configuration",
    "Binomial GLM of the rank-1 hits of each configuration on its group indicators (the paper's analysis).",
    _CONFIG_GLM_COMMON + (
        C("coef", "float", "change in log-odds of a rank-1 hit when the group's experts are enabled",
          label="coef (log-odds)", unit="log-odds", role="estimate"),
        _CONFIG_DECISION[0], *_interval("coef", "estimate ± t · se over identity resamples", unit="log-odds"),
        *_CONFIG_DECISION[1:], *_p("t test on identity-resampled errors"), *CONFIG_RESAMPLED, *_CONFIG_COUNTS,
        *_conditional("se_conditional", "ci_low_conditional", "ci_high_conditional", "z_conditional", "p_conditional",
                      what="the paper's quasi-binomial GLM"),
        C("odds_ratio", "float", "exp(coef)"),
        C("dispersion", "float", "Pearson chi² dispersion of the quasi-binomial fit"),
        C("n_configs", "int", "configurations fitted", role="count"),
        *_status(),
    ),
    resamples=IDENTITY, test="t, identity-resampled SE (binomial GLM)", outside_families=(("term", "Intercept"),),
    shown_first=("term", "family", "coef", "ci_low", "ci_high", "se") + P_SHOWN + ("resampled", "n_ids"),
    caption="Binomial GLM of configuration rank-1 hits (unit resampled: identity; the paper's numbers, "
            "conditional on this test set's identities, in the CSV and JSON)",
))

register_table(TableSpec(
    "config_glm_gaussian", "configuration",
    "Gaussian GLM (OLS) of each configuration's mAP on its group indicators (the paper's analysis).",
    _CONFIG_GLM_COMMON + (
        C("coef", "float", "change in mAP when the group's experts are enabled", label="ΔmAP (coef)", **PP,
          role="estimate"),
        _se(**PP), *_interval("coef", "estimate ± t · se over identity resamples", **PP),
        *_CONFIG_DECISION[1:], *_p("t test on identity-resampled errors"), *CONFIG_RESAMPLED, *_CONFIG_COUNTS,
        *_conditional("se_conditional", "ci_low_conditional", "ci_high_conditional", what="OLS", **PP),
        *_conditional("t_conditional", "df_conditional", "p_conditional", what="OLS"),
        C("n_configs", "int", "configurations fitted", role="count"),
        *_status(),
    ),
    resamples=IDENTITY, test="t, identity-resampled SE (Gaussian GLM)", outside_families=(("term", "Intercept"),),
    shown_first=("term", "family", "coef", "ci_low", "ci_high", "se") + P_SHOWN + ("resampled", "n_ids"),
    caption="Gaussian GLM of configuration mAP (unit resampled: identity; the paper's numbers, conditional on "
            "this test set's identities, in the CSV and JSON)",
))


def _refit_interval(prefix: str, of: str, **unit) -> tuple[C, ...]:
    how = "estimate ± t · the standard error over surrogates refitted on identity resamples"
    return (C(f"{prefix}_ci_low", "float", f"lower end of the interval of {of} ({how})", label="CI low", **unit,
              role="interval"),
            C(f"{prefix}_ci_high", "float", f"upper end of the interval of {of} ({how})", label="CI high", **unit,
              role="interval"))


register_table(TableSpec(
    "config_surrogate", "configuration",
    "Random-forest and XGBoost surrogates of mAP on the group indicators, one row per model × group.",
    (
        C("model", "str", "random_forest or xgboost", role="key"),
        *GROUP_KEYS,
        C("perm_importance_mean", "float", "drop in R² when the group's indicator is permuted (seeded)",
          label="permutation importance", unit="R²", role="estimate"),
        *_refit_interval("perm_importance", "the permutation importance", unit="R²"),
        C("perm_importance_sd_conditional", "float", "sd of the permutation importance over shuffles", unit="R²"),
        C("mean_abs_shap", "float", "mean |TreeSHAP| of the group's indicator", label="mean |SHAP|", **PP,
          role="estimate"),
        *_refit_interval("mean_abs_shap", "mean |SHAP|", **PP),
        C("shap_direction", "float", "mean SHAP with the group enabled minus without", label="SHAP direction",
          **PP, role="estimate"),
        *_refit_interval("shap_direction", "the SHAP direction", **PP),
        C("se", "float", "standard error of the SHAP direction over identity resamples", **PP),
        C("t", "float", "shap_direction / se", role="test"),
        C("df", "float", "n_ids - 1", role="test"),
        *_p("t test of the SHAP direction"),
        C("rank_permutation", "float", "rank by permutation importance (1 = most important)"),
        C("rank_shap", "float", "rank by mean |SHAP| (1 = most important)"),
        C("r2_cv", "float", "cross-validated R² of the surrogate", unit="R²"),
        *CONFIG_RESAMPLED,
        C("n_resamples", "int", "surrogate refits on identity resamples (option surrogate_resamples)", role="count"),
        C("n_configs", "int", "configurations fitted", role="count"),
        *_status(),
    ),
    resamples=IDENTITY, test="t of the SHAP direction, identity-resampled SE", family_keys=("model",),
    shown_first=("model", "group", "family", "mean_abs_shap", "mean_abs_shap_ci_low", "mean_abs_shap_ci_high",
                 "perm_importance_mean", "perm_importance_ci_low", "perm_importance_ci_high", "shap_direction",
                 "shap_direction_ci_low", "shap_direction_ci_high") + P_SHOWN + ("resampled", "n_ids"),
    caption="Configuration-level surrogate importances (intervals: surrogates refitted on identity resamples; unit "
            "resampled: identity)",
))

register_table(TableSpec(
    "config_ttest", "configuration",
    "Per group, mean mAP of the subset configurations with the group enabled minus without.",
    (
        *GROUP_KEYS,
        C("n_on", "int", "configurations with the group enabled", role="count"),
        C("n_off", "int", "configurations without it", role="count"),
        C("mean_on", "float", "mean mAP with the group enabled", label="mAP with", **PERCENT),
        C("mean_off", "float", "mean mAP without it", label="mAP without", **PERCENT),
        C("diff", "float", "mean_on - mean_off", label="ΔmAP on − off", **PP, role="estimate"),
        C("se", "float", "standard error of diff over identity resamples", **PP),
        *_interval("diff", "estimate ± t · se over identity resamples", **PP),
        C("t", "float", "diff / se", role="test"),
        C("df", "float", "n_ids - 1", role="test"),
        *_p("t test on identity-resampled errors"),
        C("cohens_d", "float", "diff over the pooled sd of the configurations", label="Cohen's d"),
        *CONFIG_RESAMPLED,
        C("n_resamples", "int", "identity resamples used", role="count"),
        *_conditional("ci_low_conditional", "ci_high_conditional", what="the paper's Welch test", **PP),
        *_conditional("t_conditional", "df_conditional", "p_conditional", what="the paper's Welch test"),
        *_status(),
    ),
    resamples=IDENTITY, test="t, identity-resampled SE",
    shown_first=("group", "family", "diff", "ci_low", "ci_high", "cohens_d") + P_SHOWN + ("resampled", "n_ids"),
    caption="mAP with − without each group, with Cohen's d (unit resampled: identity; the paper's Welch test, "
            "conditional on this test set's identities, in the CSV and JSON)",
))
