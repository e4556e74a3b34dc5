"""Configuration-level analysis: the paper's method.

A *configuration* is one routing condition scored as a whole: which attribute groups had their
experts enabled (the predictors, one 0/1 indicator per group) and the mAP / Rank-1 it reached
(the outcomes). The configurations analysed are the conditions of kinds ``subset`` (the paper's
seeded random sets of enabled groups), ``drop``, ``only``, ``oracle`` and ``none``;
``counterfactual`` and ``learned`` conditions are left out because their experts are routed by
something other than the ground truth, so "enabled" does not mean the same there.

:func:`configuration_level` returns four tables. Every row carries ``status`` (``"ok"`` |
``"not estimable"`` | ``"not tested"``) and ``reason`` (empty when ok); a row that is not ok has
NaN numbers and stays out of the ``p_holm`` / ``p_bh`` corrections, which run over the group rows
of one table (one family of tests).

``config_glm_binomial``
    Binomial GLM of the Rank-1 hits out of the valid queries of each configuration on the
    indicators. ``term`` (``Intercept`` or ``enabled:<group>``), ``group``, ``family``, ``coef``
    (change in log-odds of a rank-1 hit when the group's experts are enabled), ``se``, ``ci_low``,
    ``ci_high``, ``z``, ``p``, ``p_holm``, ``p_bh``, ``odds_ratio``, ``dispersion``, ``n_configs``,
    ``status``, ``reason``. The same queries are scored under every configuration, so the binomial
    variance is wrong by construction; by default the dispersion is estimated from Pearson's
    chi² (quasi-binomial; option ``binomial_scale``, ``1.0`` gives the plain binomial GLM).
    Separation (e.g. every configuration with a group enabled reaching 100 % Rank-1) is detected
    before fitting (:func:`analysis.glm.fit_glm`).
``config_glm_gaussian``
    Gaussian GLM (identity link; identical to OLS, t reference distribution) of mAP on the
    indicators: ``term``, ``group``, ``family``, ``coef`` (change in mAP when the group's experts
    are enabled, in the trace's mAP units), ``se``, ``ci_low``, ``ci_high``, ``t``, ``df``, ``p``,
    ``p_holm``, ``p_bh``, ``n_configs``, ``status``, ``reason``.
``config_surrogate``
    Random-forest and XGBoost surrogates of mAP on the indicators, one row per ``model``
    (``"random_forest"`` | ``"xgboost"``) and group: ``perm_importance_mean`` /
    ``perm_importance_sd`` (drop in R² when the group's indicator is permuted, scikit-learn's
    ``permutation_importance`` on the configurations, seeded), ``mean_abs_shap`` (mean |TreeSHAP|
    in mAP units), ``shap_direction`` (mean SHAP over configurations with the group enabled minus
    over those without; for an additive model this is the group's effect on mAP, so its sign is
    the direction), ``rank_permutation``, ``rank_shap`` (1 = most important), ``r2_cv``
    (cross-validated R² of the surrogate, to judge whether it is worth explaining),
    ``n_configs``, ``status``, ``reason``. XGBoost SHAP values come from XGBoost's own TreeSHAP
    (``pred_contribs``); the random forest's from ``shap.TreeExplainer``.
``config_ttest``
    Per group, Welch's t-test of mAP between the ``subset`` configurations with the group enabled
    and those without (option ``ttest_kinds``):
    ``group``, ``family``, ``n_on``, ``n_off``, ``mean_on``, ``mean_off``, ``diff`` (on - off),
    ``ci_low``, ``ci_high`` (Welch interval of ``diff``), ``t``, ``df`` (Welch–Satterthwaite),
    ``p``, ``p_holm``, ``p_bh``, ``cohens_d`` (``diff`` over the pooled standard deviation
    ``sqrt(((n_on-1) s_on² + (n_off-1) s_off²) / (n_on + n_off - 2))``), ``status``, ``reason``.

Too few configurations (no ``subset:*`` conditions, or fewer than the number of GLM parameters
plus ``min_extra_configs``) make every row ``not tested`` with the reason; a group whose indicator
never varies across the configurations is ``not estimable`` in every table.

Options (``AnalysisSettings.options["configuration"]``) are the fields of
:class:`ConfigurationOptions`; ``alpha`` and ``seed`` come from the shared settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from analysis.glm import INTERCEPT, NOT_ESTIMABLE, NOT_TESTED, OK, adjusted, as_settings, fit_glm, small_blas
from mosaic.errors import MosaicError

__all__ = ["configuration_level", "ConfigurationOptions", "ConfigurationDesign", "configuration_design", "SURROGATES"]

METHOD = "configuration"
TABLES = ("config_glm_binomial", "config_glm_gaussian", "config_surrogate", "config_ttest")


@dataclass(frozen=True)
class ConfigurationOptions:
    """Knobs of the configuration-level analysis.

    kinds : condition kinds that count as configurations (GLMs and surrogates).
    ttest_kinds : kinds compared by the t-tests. Only the random ``subset`` configurations by
        default: in the one-factor-at-a-time conditions every ``only:h`` sits on the "off" side of
        every other group and every ``drop:h`` on its "on" side, so a marginal on/off comparison
        over them measures the design, not the group. The GLMs adjust for the other groups and
        use every kind in ``kinds``.
    require_subsets : without any ``subset:*`` condition the design is only oracle / none /
        drop / only, a one-factor-at-a-time design rather than the paper's random configurations;
        by default that is reported as not tested.
    min_extra_configs : configurations needed beyond the number of GLM parameters.
    binomial_scale : dispersion of the binomial GLM: ``"X2"`` (Pearson, quasi-binomial) or a number.
    rf_n_estimators, rf_min_samples_leaf : random-forest surrogate size.
    xgb_n_estimators, xgb_max_depth, xgb_learning_rate : XGBoost surrogate size; shallow trees
        because there are few configurations and the indicators act mostly additively.
    permutation_repeats : shuffles per indicator in the permutation importance.
    cv_folds : folds of the cross-validated R² of each surrogate.
    n_jobs : threads for the surrogates.
    """

    kinds: tuple[str, ...] = ("subset", "drop", "only", "oracle", "none")
    ttest_kinds: tuple[str, ...] = ("subset",)
    require_subsets: bool = True
    min_extra_configs: int = 5
    binomial_scale: str | float = "X2"
    rf_n_estimators: int = 100
    rf_min_samples_leaf: int = 3
    xgb_n_estimators: int = 100
    xgb_max_depth: int = 2
    xgb_learning_rate: float = 0.1
    permutation_repeats: int = 10
    cv_folds: int = 5
    n_jobs: int = 1

    @classmethod
    def from_settings(cls, settings) -> "ConfigurationOptions":
        given = settings.options_for(METHOD, cls)
        for name in ("kinds", "ttest_kinds"):
            if name in given:
                given[name] = tuple([given[name]] if isinstance(given[name], str) else given[name])
        options = cls(**given)
        if not set(options.ttest_kinds) <= set(options.kinds):
            raise MosaicError(
                f"configuration option ttest_kinds={list(options.ttest_kinds)} must be among kinds={list(options.kinds)}"
            )
        return options


@dataclass
class ConfigurationDesign:
    """The configurations as a regression problem.

    ``configs`` has one row per configuration (``condition, kind, mAP, hits, n_valid``);
    ``indicators`` the 0/1 enabled indicator per group (columns = group names, schema order);
    ``varying`` the groups whose indicator takes both values; ``not_tested`` the reason the
    whole analysis cannot run ("" when it can).
    """

    configs: pd.DataFrame
    indicators: pd.DataFrame
    groups: list[str]
    families: dict[str, str]
    varying: list[str]
    not_tested: str = ""

    @property
    def n_configs(self) -> int:
        return len(self.configs)

    def never_varies(self, group: str) -> str:
        on = int(self.indicators[group].sum())
        state = "enabled" if on else "disabled"
        return f"never varies: {state} in all {self.n_configs} configurations"


def configuration_design(trace, options: ConfigurationOptions) -> ConfigurationDesign:
    """Select the configurations of ``trace`` and build the indicator design."""
    conditions = trace.conditions
    selected = conditions[conditions["kind"].isin(options.kinds)].reset_index(drop=True)
    groups = list(trace.schema.group_names)
    families = {g: trace.schema.group(g).family for g in groups}
    indicators = pd.DataFrame(
        {g: selected[f"enabled:{g}"].astype(float).to_numpy() for g in groups}, index=selected.index
    )
    n_valid = selected["n_valid"].to_numpy(dtype=float)
    configs = pd.DataFrame(
        {
            "condition": selected["condition"].astype(str),
            "kind": selected["kind"].astype(str),
            "mAP": selected["mAP"].to_numpy(dtype=float),
            # CMC@1 is the share of valid queries hit at rank 1, so this recovers the count exactly
            "hits": np.rint(selected["rank1"].to_numpy(dtype=float) * n_valid),
            "n_valid": n_valid,
        }
    )
    varying = [g for g in groups if indicators[g].nunique() > 1]
    design = ConfigurationDesign(configs, indicators, groups, families, varying)
    n_params = 1 + len(varying)
    n_subsets = int((selected["kind"] == "subset").sum())
    if options.require_subsets and "subset" in options.kinds and n_subsets == 0:
        design.not_tested = (
            "no subset:* conditions in the trace: the configuration-level analysis needs the random "
            "configurations; trace again with subsets enabled"
        )
    elif not varying:
        design.not_tested = f"no group's experts vary across the {design.n_configs} configurations"
    elif design.n_configs < n_params + options.min_extra_configs:
        design.not_tested = (
            f"{design.n_configs} configurations for {n_params} parameters: need at least "
            f"{n_params + options.min_extra_configs}; trace more subset:* configurations"
        )
    elif n_valid.max(initial=0) <= 0:
        design.not_tested = "no valid query in the trace: no configuration has a mAP or Rank-1"
    return design


# ---------------------------------------------------------------------------- GLMs
def _glm_table(design: ConfigurationDesign, kind: str, alpha: float, scale) -> pd.DataFrame:
    binomial = kind == "binomial"
    stat = "z" if binomial else "t"
    result = None
    if not design.not_tested:
        X = design.indicators[design.varying].rename(columns=lambda g: f"enabled:{g}")
        if binomial:
            result = fit_glm(
                design.configs["hits"].to_numpy(), X, family="binomial",
                trials=design.configs["n_valid"].to_numpy(), alpha=alpha, scale=scale,
            )
        else:
            result = fit_glm(design.configs["mAP"].to_numpy(), X, family="gaussian", alpha=alpha, use_t=True)
        fitted = result.table.set_index("term")
    rows = []
    for group in [""] + design.groups:
        term = f"enabled:{group}" if group else INTERCEPT
        row = {"term": term, "group": group, "family": design.families.get(group, ""),
               "coef": np.nan, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan, stat: np.nan, "p": np.nan}
        if result is None:
            row.update(status=NOT_TESTED, reason=design.not_tested)
        elif group and group not in design.varying:
            row.update(status=NOT_ESTIMABLE, reason=design.never_varies(group))
        else:
            fit = fitted.loc[term]
            row.update(coef=fit["coef"], se=fit["se"], ci_low=fit["ci_low"], ci_high=fit["ci_high"],
                       p=fit["p"], status=fit["status"], reason=fit["reason"])
            row[stat] = fit["stat"]
        if not binomial:
            row["df"] = result.df_resid if result is not None and row["status"] == OK else np.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    tested = (frame["term"] != INTERCEPT) & (frame["status"] == OK)
    for name, values in adjusted(frame["p"].where(tested).to_numpy()).items():
        frame[name] = values
    if binomial:
        frame["odds_ratio"] = np.exp(frame["coef"])
        frame["dispersion"] = result.scale if result is not None else np.nan
    frame["n_configs"] = design.n_configs
    order = ["term", "group", "family", "coef", "se", "ci_low", "ci_high", stat] + ([] if binomial else ["df"])
    order += ["p", "p_holm", "p_bh"] + (["odds_ratio", "dispersion"] if binomial else []) + ["n_configs", "status", "reason"]
    return frame[order]


def config_glm_binomial(design: ConfigurationDesign, options: ConfigurationOptions, alpha: float) -> pd.DataFrame:
    """Binomial GLM of Rank-1 hits out of valid queries on the enabled indicators."""
    return _glm_table(design, "binomial", alpha, options.binomial_scale)


def config_glm_gaussian(design: ConfigurationDesign, options: ConfigurationOptions, alpha: float) -> pd.DataFrame:
    """Gaussian GLM of mAP on the enabled indicators."""
    return _glm_table(design, "gaussian", alpha, None)


# ----------------------------------------------------------------------- surrogates
def _random_forest(options: ConfigurationOptions, seed: int):
    from sklearn.ensemble import RandomForestRegressor

    def fit(X: np.ndarray, y: np.ndarray):
        return RandomForestRegressor(
            n_estimators=options.rf_n_estimators, min_samples_leaf=options.rf_min_samples_leaf,
            random_state=seed, n_jobs=options.n_jobs,
        ).fit(X, y)

    def explain(model, X: np.ndarray) -> np.ndarray:
        import shap

        return np.asarray(shap.TreeExplainer(model).shap_values(X, check_additivity=False))

    return fit, explain


def _xgboost(options: ConfigurationOptions, seed: int):
    import xgboost as xgb

    def fit(X: np.ndarray, y: np.ndarray):
        return xgb.XGBRegressor(
            n_estimators=options.xgb_n_estimators, max_depth=options.xgb_max_depth,
            learning_rate=options.xgb_learning_rate, random_state=seed, n_jobs=options.n_jobs,
            tree_method="exact",
        ).fit(X, y)

    def explain(model, X: np.ndarray) -> np.ndarray:
        # XGBoost's own TreeSHAP; the last column is the bias (expected value).
        return model.get_booster().predict(xgb.DMatrix(X), pred_contribs=True)[:, :-1]

    return fit, explain


# model name -> factory(options, seed) -> (fit(X, y) -> model, explain(model, X) -> SHAP (n, p))
SURROGATES: dict[str, Callable] = {"random_forest": _random_forest, "xgboost": _xgboost}

_SURROGATE_NUMBERS = (
    "perm_importance_mean", "perm_importance_sd", "mean_abs_shap", "shap_direction",
    "rank_permutation", "rank_shap", "r2_cv",
)


def config_surrogate(design: ConfigurationDesign, options: ConfigurationOptions, seed: int) -> pd.DataFrame:
    """Random-forest and XGBoost surrogates of mAP, explained by permutation importance and SHAP."""
    rows = []
    y = design.configs["mAP"].to_numpy()
    reason_all = design.not_tested
    status_all = NOT_TESTED if reason_all else OK
    if not reason_all and np.ptp(y) == 0:
        status_all, reason_all = NOT_ESTIMABLE, f"mAP is identical in all {design.n_configs} configurations"
    for model_name, factory in SURROGATES.items():
        numbers = {g: dict.fromkeys(_SURROGATE_NUMBERS, np.nan) for g in design.groups}
        if status_all == OK:
            numbers.update(_explain_surrogate(design, factory(options, seed), y, options, seed))
        for g in design.groups:
            status, reason = status_all, reason_all
            if status == OK and g not in design.varying:
                status, reason = NOT_ESTIMABLE, design.never_varies(g)
            rows.append(
                {"model": model_name, "group": g, "family": design.families[g], **numbers[g],
                 "n_configs": design.n_configs, "status": status, "reason": reason}
            )
    return pd.DataFrame(rows)


def _explain_surrogate(design, model_fns, y, options, seed) -> dict[str, dict[str, float]]:
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import KFold

    fit, explain = model_fns
    X = design.indicators[design.varying].to_numpy()
    model = fit(X, y)
    perm = permutation_importance(
        model, X, y, n_repeats=options.permutation_repeats, random_state=seed, n_jobs=1
    )
    shap_values = explain(model, X)
    folds = min(options.cv_folds, design.n_configs)
    held_out = np.empty_like(y)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(X):
        held_out[test] = fit(X[train], y[train]).predict(X[test])
    r2_cv = 1.0 - np.sum((y - held_out) ** 2) / np.sum((y - y.mean()) ** 2)
    mean_abs = np.abs(shap_values).mean(axis=0)
    direction = np.array(
        [shap_values[X[:, j] == 1, j].mean() - shap_values[X[:, j] == 0, j].mean() for j in range(X.shape[1])]
    )
    rank_perm = pd.Series(-perm.importances_mean).rank(method="min").to_numpy()
    rank_shap = pd.Series(-mean_abs).rank(method="min").to_numpy()
    return {
        g: {
            "perm_importance_mean": float(perm.importances_mean[j]),
            "perm_importance_sd": float(perm.importances_std[j]),
            "mean_abs_shap": float(mean_abs[j]),
            "shap_direction": float(direction[j]),
            "rank_permutation": float(rank_perm[j]),
            "rank_shap": float(rank_shap[j]),
            "r2_cv": float(r2_cv),
        }
        for j, g in enumerate(design.varying)
    }


# --------------------------------------------------------------------------- t-tests
def config_ttest(design: ConfigurationDesign, options: ConfigurationOptions, alpha: float) -> pd.DataFrame:
    """Per group, Welch's t-test of mAP between configurations with the group on and off."""
    from scipy import stats

    compared = design.configs["kind"].isin(options.ttest_kinds).to_numpy()
    y = design.configs["mAP"].to_numpy()[compared]
    rows = []
    for g in design.groups:
        on_mask = design.indicators[g].to_numpy()[compared] == 1
        on, off = y[on_mask], y[~on_mask]
        row = {"group": g, "family": design.families[g], "n_on": int(len(on)), "n_off": int(len(off))}
        row.update(mean_on=on.mean() if len(on) else np.nan, mean_off=off.mean() if len(off) else np.nan)
        row["diff"] = row["mean_on"] - row["mean_off"]
        row.update(dict.fromkeys(("ci_low", "ci_high", "t", "df", "p", "cohens_d"), np.nan))
        status, reason = OK, ""
        if design.not_tested:
            status, reason = NOT_TESTED, design.not_tested
        elif g not in design.varying:
            status, reason = NOT_ESTIMABLE, design.never_varies(g)
        elif min(len(on), len(off)) < 2:
            side = "enabled" if len(on) < 2 else "disabled"
            kinds = "/".join(options.ttest_kinds)
            status, reason = NOT_ESTIMABLE, (
                f"only {min(len(on), len(off))} {kinds} configuration(s) with the group {side}: need 2 on each side"
            )
        elif np.var(on) == 0 and np.var(off) == 0:
            status, reason = NOT_ESTIMABLE, "mAP does not vary within either side: the t statistic is undefined"
        else:
            res = stats.ttest_ind(on, off, equal_var=False)
            ci = res.confidence_interval(confidence_level=1 - alpha)
            pooled = np.sqrt(((len(on) - 1) * on.var(ddof=1) + (len(off) - 1) * off.var(ddof=1)) / (len(on) + len(off) - 2))
            row.update(
                t=float(res.statistic), df=float(res.df), p=float(res.pvalue),
                ci_low=float(ci.low), ci_high=float(ci.high),
                cohens_d=float(row["diff"] / pooled) if pooled > 0 else np.nan,
            )
        row.update(status=status, reason=reason)
        rows.append(row)
    frame = pd.DataFrame(rows)
    for name, values in adjusted(frame["p"].where(frame["status"] == OK).to_numpy()).items():
        frame[name] = values
    order = ["group", "family", "n_on", "n_off", "mean_on", "mean_off", "diff", "ci_low", "ci_high",
             "t", "df", "p", "p_holm", "p_bh", "cohens_d", "status", "reason"]
    return frame[order]


# ------------------------------------------------------------------------ entry point
def configuration_level(trace, settings=None) -> dict[str, pd.DataFrame]:
    """The paper's configuration-level analysis of ``trace``.

    Parameters
    ----------
    trace : :class:`analysis.trace.Trace` (its ``conditions`` view and ``schema`` are used).
    settings : :class:`analysis.settings.AnalysisSettings`, or a dict of its fields; ``alpha``,
        ``seed`` and ``options["configuration"]`` (fields of :class:`ConfigurationOptions`).

    Returns
    -------
    ``{"config_glm_binomial", "config_glm_gaussian", "config_surrogate", "config_ttest"}`` ->
    tidy DataFrame; the columns are documented in this module's docstring. Never raises on a
    degenerate design: its rows say ``not tested`` / ``not estimable`` and why.
    """
    settings = as_settings(settings)
    options = ConfigurationOptions.from_settings(settings)
    design = configuration_design(trace, options)
    with small_blas():
        return {
            "config_glm_binomial": config_glm_binomial(design, options, settings.alpha),
            "config_glm_gaussian": config_glm_gaussian(design, options, settings.alpha),
            "config_surrogate": config_surrogate(design, options, settings.seed),
            "config_ttest": config_ttest(design, options, settings.alpha),
        }
