"""Specs of the query-level, decomposition, ranking and trace-view tables (continues :mod:`analysis.tables.specs`)."""

from __future__ import annotations

from analysis.tables.registry import ColumnSpec as C
from analysis.tables.registry import TableSpec, register_table
from analysis.tables.specs import GROUP_KEYS, IDENTITY, P_SHOWN, PP, _interval, _p, _status

register_table(TableSpec(
    "query_glm", "explanatory",
    "Binomial GLM of each valid query's baseline rank-1 hit on its attribute states, identity-clustered CR2 "
    "errors. Rows at two levels: term (one per non-reference state) and group (the joint test that all of a "
    "group's estimable terms are zero).",
    (
        C("level", "str", "term or group", role="key"),
        C("term", "str", "group=state (empty on group rows)", role="key"),
        C("group", "str", "attribute group", role="key"),
        C("state", "str", "the state (term rows)", role="key"),
        C("family", "str", "fine family of the group", role="key"),
        C("reference", "str", "the group's reference state (its most frequent annotated state that neither always "
                              "hits nor always misses)"),
        C("coef", "float", "log-odds of a rank-1 hit relative to the reference (term rows)", label="coef (log-odds)",
          unit="log-odds", role="estimate"),
        C("se", "float", "CR2 identity-clustered standard error"),
        *_interval("coef", "t on df", unit="log-odds"),
        C("odds_ratio", "float", "exp(coef)", label="odds ratio"),
        C("t", "float", "coef / se (term rows)", role="test"),
        C("F", "float", "HTZ approximate Hotelling T² F of the group (group rows)", role="test"),
        C("df_num", "float", "numerator degrees of freedom of F (group rows)", label="df (num.)", role="test"),
        C("df", "float", "Bell–McCaffrey / Satterthwaite degrees of freedom", role="test"),
        *_p("CR2 t test (term rows) or HTZ F test (group rows)"),
        C("resampled", "str", "the independent unit of the errors (identities)", label="unit"),
        C("n_clusters", "int", "identities in the fit", label="identities", role="count"),
        C("n", "int", "valid queries in the state (term rows) or fitted (group rows)", label="queries", role="count"),
        *_status(),
    ),
    resamples=IDENTITY, test="CR2 t (Satterthwaite df) / HTZ F, identity clusters", family_keys=("level",),
    shown_first=("level", "term", "group", "reference", "coef", "ci_low", "ci_high", "odds_ratio", "t", "F", "df_num",
                 "df") + P_SHOWN + ("resampled", "n_clusters", "n"),
    caption="Query-level binomial GLM (unit: identity; CR2 cluster-robust errors, Satterthwaite t per term, HTZ F "
            "per group)",
))

register_table(TableSpec(
    "query_surrogate", "explanatory",
    "SHAP summary of the XGBoost surrogate of the per-query AP change under each drop:<group> (descriptive: no "
    "test). Rows at three levels: group, family and coarse_family.",
    (
        C("level", "str", "group, family or coarse_family", role="key"),
        C("group", "str", "attribute group (empty on family rows)", role="key"),
        C("family", "str", "family (of the group, or the row's own)", role="key"),
        C("mean_abs_shap", "float", "mean over all rows of |SHAP|", label="mean |SHAP|", **PP, role="estimate"),
        C("mean_abs_shap_drop", "float", "|SHAP| of the offset plus the dropped: indicator alone (group rows)",
          label="|SHAP| of the drop", **PP),
        C("mean_abs_shap_state", "float", "|SHAP| of the state one-hots alone (group rows)",
          label="|SHAP| of the state", **PP),
        C("mean_shap", "float", "mean signed SHAP over the rows where the group (or one of the family's) is dropped: "
                                "negative = dropping it costs AP", label="mean SHAP when dropped", **PP),
        C("share", "float", "share of the level's total mean_abs_shap", unit="fraction"),
        C("rank", "float", "rank within the level, 1 = largest mean_abs_shap"),
        C("n_rows", "int", "query × drop rows explained", role="count"),
        *_status("ok or not estimable"),
    ),
    resamples="", shown_first=("level", "group", "family", "mean_abs_shap", "mean_abs_shap_drop",
                               "mean_abs_shap_state", "mean_shap", "share", "rank"),
    caption="Query-level surrogate: SHAP summary",
))

register_table(TableSpec(
    "query_surrogate_fit", "explanatory",
    "Held-out fit of the query surrogate on identity-grouped folds (no identity in both parts).",
    (
        C("model", "str", "the surrogate", role="key"),
        C("fold", "str", "1, 2, ... and mean", role="key"),
        C("r2", "float", "held-out R²", unit="R²"),
        C("r2_offset", "float", "held-out R² of the per-group offsets alone", unit="R²"),
        C("n_train", "int", "training rows", role="count"),
        C("n_test", "int", "held-out rows", role="count"),
        *_status("ok or not estimable"),
    ),
    resamples=IDENTITY, shown_first=("model", "status", "reason"),
    caption="Surrogate fit (identity-grouped cross-validation)",
))

_DECOMPOSITION_SHARED = (
    C("condition", "str", "the condition of the difference", role="key"),
    C("reference", "str", "the condition subtracted", label="minus", role="key"),
)
_DECOMPOSITION_TAIL = (
    C("estimate", "float", "condition - reference over valid queries, of mAP or the rank-1 rate", label="Δ", **PP,
      role="estimate"),
    *_interval("estimate", "identity-cluster percentile bootstrap, both conditions resampled together", **PP),
    C("ci_level", "float", "coverage of the interval", hidden=True),
    C("n_queries", "int", "valid queries", label="queries", role="count"),
    C("n_ids", "int", "their identities", label="identities", role="count"),
    C("n_bootstrap", "int", "bootstrap resamples", role="count", hidden=True),
    C("resampling_unit", "str", "identity", label="resampled"),
    *_status("ok, unavailable (the trace lacks the conditions) or not estimable"),
)

register_table(TableSpec(
    "decomposition", "decomposition",
    "Per group: information (fixed − oracle), capacity (drop − fixed), misrouting (counterfactual − oracle) and "
    "semantics (relabel − oracle), on mAP and rank-1; one row per group × quantity × metric.",
    (
        *GROUP_KEYS,
        C("quantity", "str", "information, capacity, misrouting or semantics", role="key"),
        C("metric", "str", "mAP or rank1", role="key"),
        *_DECOMPOSITION_SHARED, *_DECOMPOSITION_TAIL,
    ),
    resamples=IDENTITY,
    shown_first=("group", "family", "quantity", "metric", "condition", "reference", "estimate", "ci_low", "ci_high",
                 "n_queries", "n_ids", "resampling_unit", "status", "reason"),
    caption="Decomposition per group on mAP and rank-1",
))

_CODE_SHARE = C("estimate", "float", "code_gain / oracle_gain: the share of the oracle's gain the attribute code "
                                     "alone reaches", label="code share", unit="fraction", role="estimate")
register_table(TableSpec(
    "decomposition_code", "decomposition",
    "The code share per metric: (code − none) / (oracle − none).",
    (
        C("quantity", "str", "code_share", role="key"),
        C("metric", "str", "mAP or rank1", role="key"),
        C("condition", "str", "code", role="key", hidden=True),
        C("reference", "str", "oracle", role="key", hidden=True),
        C("baseline", "str", "none", role="key", hidden=True),
        C("code_gain", "float", "code - none", label="code − none", **PP),
        C("oracle_gain", "float", "oracle - none", label="oracle − none", **PP),
        _CODE_SHARE,
        *_interval("the code share", "identity-cluster bootstrap of the ratio of identity sums", unit="fraction"),
        *(c if c.name != "n_queries" else C("n_queries", "int", "valid queries", role="count", hidden=True)
          for c in _DECOMPOSITION_TAIL[3:]),
    ),
    resamples=IDENTITY,
    shown_first=("quantity", "metric", "estimate", "ci_low", "ci_high", "code_gain", "oracle_gain", "n_ids",
                 "resampling_unit", "status", "reason"),
    caption="Code share on mAP and rank-1",
))

register_table(TableSpec(
    "ranking_groups", "ranking", "One row per group, most relied on first: the consensus of the methods' rankings.",
    (
        C("group", "str", "attribute group", role="key"),
        C("family", "str", "fine family", role="key"),
        C("coarse_family", "str", "intrinsic or extrinsic"),
        C("consensus_rank", "float", "mean rank over the identity-valid methods, 1 = most relied on (ties averaged)",
          role="estimate"),
        C("rank_low", "float", "lower end of the ci_level interval of the consensus rank over identity resamples",
          role="interval"),
        C("rank_high", "float", "upper end of that interval", role="interval"),
        C("consensus_score", "float", "1 = first in every method, 0 = last in every method"),
        C("mean_rank", "float", "mean rank over the methods in the consensus"),
        C("n_methods", "int", "methods in the consensus that ranked the group", role="count"),
        C("resampled", "str", "identities"),
        C("n_resamples", "int", "identity resamples", role="count"),
        C("rank:<method>", "float", "the group's rank by one method (analysis.methods.ranking.SCORE_SOURCES)",
          required=False),
        C("score:<method>", "float", "that method's score, larger = more relied on", required=False),
    ),
    resamples=IDENTITY, shown_first=("group", "family"),
    caption="Per-method ranks and scores of each group (consensus from the identity-valid methods only; rank "
            "interval: identity resamples)",
))

register_table(TableSpec(
    "ranking_families", "ranking", "One row per family × level × comparison: the family's mean ΔmAP and its rank.",
    (
        C("family", "str", "the family", role="key"),
        C("level", "str", "coarse (intrinsic, extrinsic) or fine", role="key"),
        C("comparison", "str", "drop or counterfactual", role="key"),
        C("effect", "float", "mean over the family's groups of ΔmAP", label="mean ΔmAP", **PP, role="estimate"),
        *_interval("effect", "identity-cluster bootstrap", **PP),
        C("n_groups", "int", "groups in the family", role="count"),
        C("groups", "str", "its groups, comma-separated"),
        C("rank", "float", "rank within level and comparison, 1 = largest loss"),
        C("rank_low", "float", "lower end of the rank's interval over the same identity resamples", role="interval"),
        C("rank_high", "float", "upper end of the rank's interval", role="interval"),
        C("resampled", "str", "identities"),
        C("n_resamples", "int", "identity resamples", role="count"),
        *_status(),
    ),
    resamples=IDENTITY, caption="Ranking of attribute families (rank interval: identity resamples)",
))

register_table(TableSpec(
    "agreement", "ranking", "Agreement between the methods' rankings: Kendall's W over the consensus methods and "
                            "Spearman's rho per pair of methods.",
    (
        C("statistic", "str", "kendall_w or spearman", role="key"),
        C("method_a", "str", "first method (empty for Kendall's W)", label="method A", role="key"),
        C("method_b", "str", "second method (empty for Kendall's W)", label="method B", role="key"),
        C("value", "float", "W or rho", label="W or rho", role="estimate"),
        C("p", "float", "chi-square p of W with the tie correction; Spearman's p", role="test"),
        C("chi2", "float", "chi-square of W (NaN for Spearman rows)", role="test"),
        C("df", "float", "its degrees of freedom (NaN for Spearman rows)", role="test"),
        C("n_methods", "int", "methods compared", label="methods", role="count"),
        C("n_groups", "int", "groups ranked", label="groups", role="count"),
        *_interval("W", "identity resamples of the consensus methods' scores; W only"),
        *_status(),
    ),
    resamples=IDENTITY, test="Kendall W chi² / Spearman",
    shown_first=("statistic", "method_a", "method_b", "value", "ci_low", "ci_high", "p", "test", "chi2", "df",
                 "n_methods", "n_groups"),
    caption="Agreement between methods (Kendall's W interval: identity resamples)",
))

register_table(TableSpec(
    "conditions", "view", "The trace's condition table (analysis.trace.Trace.conditions).",
    (
        C("condition", "str", "condition name", role="key"),
        C("kind", "str", "condition kind"),
        C("group", "str", "the group it acts on"),
        C("router", "str", "the router that set its gates"),
        C("n_enabled", "int", "groups enabled", role="count"),
        C("mAP", "float", "mean average precision", unit="fraction"),
        C("mINP", "float", "mean inverse negative penalty", unit="fraction"),
        C("rank<k>", "float", "CMC at rank k (1, 5, 10, 20; NaN beyond the trace's max_rank)", unit="fraction"),
        C("n_valid", "int", "queries with a true match", role="count"),
        C("enabled:<group>", "bool", "whether the group's experts are enabled", required=False),
    ),
))
register_table(TableSpec(
    "cmc", "view", "Long CMC curves (Trace.cmc_table()).",
    (C("condition", "str", "condition name", role="key"), C("rank", "int", "rank", role="key"),
     C("cmc", "float", "share of valid queries with a true match within the rank", unit="fraction")),
))
register_table(TableSpec(
    "gates", "view", "Long mean gate weights (Trace.gates_mean()).",
    (C("condition", "str", "condition name", role="key"), C("layer", "int", "block index", role="key"),
     C("expert", "int", "expert index", role="key"), C("label", "str", "expert label (group=state)"),
     C("group", "str", "the expert's group"), C("mean_gate", "float", "mean gate weight over queries")),
))
