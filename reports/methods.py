"""What each analysis method is, whose it is (the paper's or this project's), and how it was run.

:data:`METHODS` is the one place that describes the methods: the per-method sections take
their title, origin label and introduction from it, and the methods section is generated from
it and the analysis settings recorded in :class:`analysis.Results` (so the text always states
the alpha, corrections, resampling counts and seed that produced the numbers next to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from reports.numbers import level_text

Settings = Mapping[str, Any]


def _ci(settings: Settings) -> str:
    return f"{level_text(settings.get('ci_level', 0.95))} confidence intervals"


def _comparisons(settings: Settings) -> str:
    comps = settings.get("comparisons") or ["drop", "counterfactual"]
    base = settings.get("baseline", "oracle")
    return ", ".join(f"`{base}` vs `{c}:<group>`" for c in comps)


@dataclass(frozen=True)
class MethodInfo:
    """One analysis method as the report presents it."""

    key: str
    title: str
    origin: str  # "paper" | "extension" | "mixed"
    tables: tuple[str, ...]
    describe: Callable[[Settings], str]
    analysis_method: str = ""  # name in analysis.analyze.METHODS (how Results.warnings names it)


METHODS: tuple[MethodInfo, ...] = (
    MethodInfo(
        key="config_glm",
        title="Configuration-level GLMs",
        origin="paper",
        tables=("config_glm_gaussian", "config_glm_binomial"),
        describe=lambda s: (
            "Each configuration (a set of enabled attribute experts: the `subset`, `drop`, `only`, `oracle` and "
            "`none` conditions) is one observation. A Gaussian GLM regresses mAP, and a binomial GLM the rank-1 hits "
            "out of the valid queries, on the enabled-group indicators. The configurations share one test set, so "
            "their outcomes are not independent trials: every configuration's mAP and rank-1 hits are recomputed on "
            f"{s.get('n_bootstrap', '?')} identity-cluster bootstrap resamples and both GLMs refitted on each "
            "(one matrix product for the Gaussian GLM, a warm-started Newton fit for the binomial one); the spread "
            f"of the refitted coefficients gives the standard errors, the {_ci(s)} and t tests on identities − 1 "
            "degrees of freedom (unit resampled: identity), Holm and Benjamini–Hochberg across groups at "
            f"alpha = {s.get('alpha', 0.05)}. The paper's numbers, which treat the test set's identities as fixed, "
            "stay beside them in the `*_conditional` columns and decide nothing."
        ),
        analysis_method="configuration",
    ),
    MethodInfo(
        key="config_surrogate",
        title="Configuration-level surrogate models",
        origin="paper",
        tables=("config_surrogate",),
        describe=lambda s: (
            "A random-forest surrogate (and an XGBoost one where it ran) predicts configuration mAP from the "
            "enabled-group indicators; each group's importance is its permutation importance and its mean "
            f"absolute SHAP value (seed {s.get('seed', 0)}). Both surrogates are refitted on identity resamples "
            f"(option surrogate_resamples), which gives the importances {_ci(s)} (estimate ± t · SE over the refits) and the signed SHAP "
            "direction a t test (unit resampled: identity)."
        ),
        analysis_method="configuration",
    ),
    MethodInfo(
        key="config_ttest",
        title="Configuration-level t-tests",
        origin="paper",
        tables=("config_ttest",),
        describe=lambda s: (
            "For each group, the mean mAP of the `subset` configurations with the group enabled minus without, "
            f"tested on identity resamples of every configuration's mAP ({_ci(s)}, t on identities − 1 degrees "
            "of freedom; unit resampled: identity). The paper's Welch t-test, conditional on this test set's "
            "identities, stays beside it; Cohen's d is the effect size."
        ),
        analysis_method="configuration",
    ),
    MethodInfo(
        key="paired",
        title="Paired query-level tests",
        origin="extension",
        tables=("paired_mcnemar", "paired_wilcoxon", "paired_identity"),
        describe=lambda s: (
            f"Per group, {_comparisons(s)} on the same queries, with the **identity** as the independent unit "
            "(queries of one identity share its attribute states, so they are not independent trials): a clustered "
            "McNemar test on rank-1 hits (Durkalski et al. 2003; every sign pattern enumerated when few identities "
            "are discordant), with Δrank-1 bounded by Tango's score interval on counts divided by the identity design "
            "effect (Rao–Scott), which keeps its coverage when few queries change; a clustered Wilcoxon signed-rank "
            "test on per-query AP (Datta & Satten 2008; rank-biserial correlation and common-language effect size "
            "describe the queries); and a sign-flip "
            f"permutation test over identities ({s.get('n_permutations', '?')} permutations, or every sign pattern "
            f"when there are few identities) with an identity-cluster bootstrap ({s.get('n_bootstrap', '?')} "
            f"resamples) for the {_ci(s)} of ΔmAP. `drop` removes the expert (information and capacity); "
            "`counterfactual` routes the queries' state by another identity's while the gallery keeps its own, so it "
            "measures misrouting: how far a wrong route misleads retrieval (it can cost far more than `drop`). "
            "Information and capacity are separated by `fixed` (see the decomposition). Holm and Benjamini–Hochberg adjustments run within each table and "
            f"comparison across groups, at alpha = {s.get('alpha', 0.05)}."
        ),
        analysis_method="paired",
    ),
    MethodInfo(
        key="query_glm",
        title="Query-level GLM",
        origin="extension",
        tables=("query_glm",),
        describe=lambda s: (
            f"A binomial GLM of each valid query's rank-1 hit under `{s.get('baseline', 'oracle')}` on the query's "
            "attribute states (treatment coding against each group's most frequent state), with identity-clustered "
            "CR2 standard errors (Bell & McCaffrey 2002), a t test per term on Satterthwaite degrees of freedom and "
            f"{_ci(s)}, and a joint test per group with the approximate Hotelling T² reference (Pustejovsky & "
            "Tipton 2018); the identity is the unit. A level whose queries all hit or all miss "
            "(quasi-complete separation) is marked not estimable instead of reporting an absurd estimate."
        ),
        analysis_method="explanatory",
    ),
    MethodInfo(
        key="query_surrogate",
        title="Query-level surrogate (XGBoost + SHAP)",
        origin="extension",
        tables=("query_surrogate", "query_surrogate_fit"),
        describe=lambda s: (
            "One pooled XGBoost surrogate predicts each query's AP change under `drop:<group>` from which group "
            "was dropped and the query's attribute states; XGBoost's own TreeSHAP values are summed per group "
            "and per family, and the fit is validated with identity-grouped cross-validation folds "
            f"(seed {s.get('seed', 0)})."
        ),
        analysis_method="explanatory",
    ),
    MethodInfo(
        key="decomposition",
        title="Decomposition: information, capacity, misrouting, semantics, code",
        origin="extension",
        tables=("decomposition", "decomposition_code"),
        describe=lambda s: (
            "Per group, differences between routings that each remove one thing: information = `fixed` − `oracle` "
            "(every image gets the same gates for the group: capacity kept, identity information removed, nobody "
            "misled); capacity = `drop` − `fixed` (the experts' parameters once their information is gone); "
            "misrouting = `counterfactual` − `oracle` (the queries routed by another identity's state: how far a "
            "wrong route misleads retrieval); semantic specialisation = `relabel` − `oracle` (states permuted "
            "consistently for every image: the identity partition is the oracle's, only what an expert learned a "
            "state looks like is wrong). Per trace, the code share = (`code` − `none`) / (`oracle` − `none`): how "
            "much of the oracle's gain retrieval by attribute codes alone, without the model, reaches. On mAP and "
            f"rank-1, with {_ci(s)} from an identity-cluster bootstrap ({s.get('n_bootstrap', '?')} resamples; the "
            "resampling unit is the identity, and both conditions of a difference are resampled together)."
        ),
        analysis_method="decomposition",
    ),
    MethodInfo(
        key="ranking",
        title="Ranking and agreement across methods",
        origin="mixed",
        tables=("ranking_groups", "ranking_families", "agreement"),
        describe=lambda s: (
            "Each method scores every group (larger = more relied on). The consensus rank averages the ranks of "
            "the identity-valid methods only (paired ΔmAP and Δrank-1, the configuration-level GLM coefficients "
            "and mAP differences): each is recomputed on the same identity resamples, which gives the groups' "
            f"ranks {_ci(s)} (\"rank 1–3\"); surrogate importances are ranked beside them but stay out of the "
            "consensus. Kendall's W (with an identity-resampled interval) and pairwise Spearman correlations "
            "measure how much the methods agree. Families are ranked by the mean ΔmAP of their groups with "
            "identity-cluster bootstrap intervals of the effect and of the rank."
        ),
        analysis_method="ranking",
    ),
)

METHODS_BY_KEY = {m.key: m for m in METHODS}


def settings_items(settings: Settings) -> list[tuple[str, str]]:
    """The analysis settings as (name, value) text pairs, in a stable order."""
    labels = (
        ("alpha", "significance level (alpha)"),
        ("ci_level", "confidence level"),
        ("n_bootstrap", "bootstrap resamples"),
        ("n_permutations", "permutations"),
        ("seed", "seed"),
        ("baseline", "baseline condition"),
        ("comparisons", "comparisons"),
        ("methods", "methods run"),
        ("options", "method options"),
    )
    items = []
    for key, label in labels:
        if key in settings:
            value = settings[key]
            if value is None and key == "methods":
                value = "all"
            elif isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value)
            elif isinstance(value, dict):
                value = "; ".join(f"{k}: {v}" for k, v in sorted(value.items())) or "defaults"
            items.append((label, str(value)))
    for key in sorted(set(settings) - {k for k, _ in labels}):
        items.append((key, str(settings[key])))
    return items
