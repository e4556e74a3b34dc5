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

**Which unit is resampled.** The configurations share one test set, so their outcomes are not
independent trials: a coefficient's error comes mostly from which identities the test set holds.
The decision columns (``se``, ``ci_low``, ``ci_high``, ``t``, ``df``, ``p``, ``p_holm``,
``p_bh``) resample identities (column ``resampled`` = ``"identities"``,
:mod:`analysis.methods.configuration.inference`): each configuration's mAP and rank-1 hits are recomputed on
``n_bootstrap`` identity-cluster resamples and the model refitted on each; ``se`` is the spread of
the refitted estimates, ``t = estimate / se`` on ``df = n_ids - 1`` and the interval is
``estimate ± t_(ci_level) se``. ``n_ids`` and ``n_resamples`` (resamples that could be refitted)
say how much went in. The paper's own numbers, which treat the test set's identities as fixed
(every query an independent trial), stay beside them in the ``*_conditional`` columns; no
decision is made on them.

The four tables: ``config_glm_binomial`` (binomial GLM of the rank-1 hits out of the valid queries
of each configuration on the indicators; the paper's quasi-binomial fit, dispersion from Pearson's
chi² -- option ``binomial_scale``, ``1.0`` gives the plain binomial GLM -- in the ``*_conditional``
columns), ``config_glm_gaussian`` (OLS of mAP on the indicators), ``config_surrogate`` (random-forest
and XGBoost surrogates, :mod:`analysis.methods.configuration.surrogate`: permutation importance, mean |SHAP| and the
SHAP direction, each refitted on identity resamples) and ``config_ttest`` (mAP of the ``subset``
configurations with the group enabled minus without, option ``ttest_kinds``, with Cohen's d and the
paper's Welch test). Their columns are the specs in :mod:`analysis.tables.specs`. Separation (e.g.
every configuration with a group enabled reaching 100 % Rank-1) is detected before fitting
(:func:`analysis.stats.glm.fit_glm`); the resamples refit the terms and configurations the point fit kept.
XGBoost SHAP values come from XGBoost's own TreeSHAP (``pred_contribs``); the random forest's from
``shap.TreeExplainer``.

Every interval is at ``ci_level``; ``alpha`` only decides.

Too few configurations (no ``subset:*`` conditions, or fewer than the number of GLM parameters
plus ``min_extra_configs``) make every row ``not tested`` with the reason; a group whose indicator
never varies across the configurations is ``not estimable`` in every table.

Options (``AnalysisSettings.options["configuration"]``) are the fields of
:class:`ConfigurationOptions`; ``alpha``, ``ci_level``, ``n_bootstrap`` and ``seed`` come from the
shared settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from analysis.methods.configuration.inference import (
    RESAMPLED_UNIT, WALD_COLUMNS, IdentityOutcomes, identity_outcomes, logistic_refit, ols_refit, resampled_wald,
)
from analysis.methods.configuration.surrogate import SURROGATES, config_surrogate
from analysis.methods.configuration.ttest import config_ttest, on_minus_off
from analysis.stats.corrections import add_corrections
from analysis.stats.glm import INTERCEPT, as_settings, fit_glm, small_blas
from analysis.stats.resampling import identity_weights
from analysis.stats.status import NOT_ESTIMABLE, NOT_TESTED, OK
from mosaic.core.errors import MosaicError

__all__ = ["configuration_level", "ConfigurationOptions", "ConfigurationDesign", "configuration_design", "SURROGATES"]

METHOD = "configuration"


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
    surrogate_resamples : identity resamples on which both surrogates are refitted (the first
        rows of the weight matrix the GLMs use); each costs two surrogate fits.
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
    surrogate_resamples: int = 25
    cv_folds: int = 5
    n_jobs: int = 1

    bounds: ClassVar[dict[str, tuple]] = {
        "min_extra_configs": (0, None), "rf_n_estimators": (1, None), "rf_min_samples_leaf": (1, None),
        "xgb_n_estimators": (1, None), "xgb_max_depth": (1, None), "xgb_learning_rate": (0, None),
        "permutation_repeats": (1, None), "surrogate_resamples": (10, None), "cv_folds": (2, None),
        "n_jobs": (-1, None),
    }

    @classmethod
    def from_settings(cls, settings) -> "ConfigurationOptions":
        options = cls(**settings.options_for(METHOD, cls))
        if isinstance(options.binomial_scale, str) and options.binomial_scale != "X2":
            raise MosaicError(f"configuration option binomial_scale must be 'X2' or a number, got {options.binomial_scale!r}")
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
    outcomes: IdentityOutcomes | None = None   # per-identity sums of every configuration's outcomes
    weights: np.ndarray | None = None          # identity resamples (B, n_ids)

    @property
    def n_configs(self) -> int:
        return len(self.configs)

    @property
    def resamplable(self) -> bool:
        return not self.not_resamplable

    @property
    def not_resamplable(self) -> str:
        """Why identity-valid inference is impossible ("" when it is possible)."""
        n_ids = self.outcomes.n_ids if self.outcomes is not None else 0
        if n_ids < 2:
            return f"{n_ids} identity among the valid queries: identity-resampled inference needs at least 2"
        return ""

    def never_varies(self, group: str) -> str:
        on = int(self.indicators[group].sum())
        state = "enabled" if on else "disabled"
        return f"never varies: {state} in all {self.n_configs} configurations"


def configuration_design(trace, options: ConfigurationOptions, *, n_bootstrap: int = 1000,
                         seed: int = 0) -> ConfigurationDesign:
    """Select the configurations of ``trace`` and build the indicator design and its identity resamples."""
    conditions = trace.conditions
    chosen = conditions["kind"].isin(options.kinds).to_numpy()
    selected = conditions[chosen].reset_index(drop=True)
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
    outcomes = identity_outcomes(trace.data, np.flatnonzero(chosen))
    weights = identity_weights(outcomes.n_ids, n_bootstrap, seed) if outcomes.n_ids else np.zeros((0, 0))
    design = ConfigurationDesign(configs, indicators, groups, families, varying, outcomes=outcomes, weights=weights)
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
def _point_fit(design: ConfigurationDesign, binomial: bool, ci_level: float, scale):
    X = design.indicators[design.varying].rename(columns=lambda g: f"enabled:{g}")
    if binomial:
        return fit_glm(design.configs["hits"].to_numpy(), X, family="binomial",
                       trials=design.configs["n_valid"].to_numpy(), ci_level=ci_level, scale=scale)
    return fit_glm(design.configs["mAP"].to_numpy(), X, family="gaussian", ci_level=ci_level, use_t=True)


def _resampled_coefficients(design: ConfigurationDesign, result, binomial: bool) -> np.ndarray:
    """The fitted model's coefficients refitted on every identity resample ``(B, n_estimated)``."""
    terms = result.table[result.table["status"] == OK]
    columns = [INTERCEPT if t == INTERCEPT else t.split(":", 1)[1] for t in terms["term"]]
    rows = result.rows_used
    X = np.column_stack([np.ones(design.n_configs) if c == INTERCEPT else design.indicators[c].to_numpy()
                         for c in columns])[rows]
    outcomes, weights = design.outcomes, design.weights
    if binomial:
        hits, trials = outcomes.hit_counts(weights)
        return logistic_refit(X, hits[:, rows], np.broadcast_to(trials, hits.shape)[:, rows],
                              terms["coef"].to_numpy())
    return ols_refit(X, outcomes.mean_ap(weights)[:, rows])


def _glm_table(design: ConfigurationDesign, kind: str, alpha: float, ci_level: float, scale) -> pd.DataFrame:
    binomial = kind == "binomial"
    paper_stat = "z" if binomial else "t"
    result = identity = None
    if not design.not_tested:
        result = _point_fit(design, binomial, ci_level, scale)
        fitted = result.table.set_index("term")
        if result.fit is not None and design.resamplable:
            estimated = fitted[fitted["status"] == OK]
            draws = _resampled_coefficients(design, result, binomial)
            identity = pd.DataFrame(resampled_wald(estimated["coef"].to_numpy(), draws, design.outcomes.n_ids,
                                                   ci_level), index=estimated.index)
    rows = []
    for group in [""] + design.groups:
        term = f"enabled:{group}" if group else INTERCEPT
        row = {"term": term, "group": group, "family": design.families.get(group, ""),
               **dict.fromkeys(_IDENTITY_NUMBERS + _CONDITIONAL_NUMBERS, np.nan)}
        if result is None:
            row.update(status=NOT_TESTED, reason=design.not_tested)
        elif group and group not in design.varying:
            row.update(status=NOT_ESTIMABLE, reason=design.never_varies(group))
        else:
            fit = fitted.loc[term]
            row.update(coef=fit["coef"], se_conditional=fit["se"], ci_low_conditional=fit["ci_low"],
                       ci_high_conditional=fit["ci_high"], stat_conditional=fit["stat"], p_conditional=fit["p"],
                       status=fit["status"], reason=fit["reason"])
            if fit["status"] == OK and not binomial:
                row["df_conditional"] = result.df_resid
            if fit["status"] == OK and identity is not None:
                row.update({k: identity.at[term, v] for k, v in WALD_COLUMNS.items()})
            elif fit["status"] == OK:
                row.update(status=NOT_TESTED, reason=design.not_resamplable)
        rows.append(row)
    # the intercept is no hypothesis about a group: it stays out of the family (and out of its size)
    frame = pd.DataFrame(rows)
    frame["p_family"] = frame["p"].where(frame["term"] != INTERCEPT)
    frame = add_corrections(frame, alpha, by=None, p_column="p_family").drop(columns="p_family")
    frame = frame.rename(columns={"stat_conditional": f"{paper_stat}_conditional"})
    if binomial:
        frame["odds_ratio"] = np.exp(frame["coef"])
        frame["dispersion"] = result.scale if result is not None else np.nan
    frame["resampled"] = RESAMPLED_UNIT
    frame["n_ids"] = design.outcomes.n_ids if design.outcomes is not None else 0
    frame["n_configs"] = design.n_configs
    order = ["term", "group", "family", "coef", "se", "ci_low", "ci_high", "t", "df", "p", "p_holm", "p_bh",
             "reject_holm", "reject_bh", "resampled", "n_ids", "n_resamples", "se_conditional", "ci_low_conditional", "ci_high_conditional",
             f"{paper_stat}_conditional"] + ([] if binomial else ["df_conditional"]) + ["p_conditional"]
    order += (["odds_ratio", "dispersion"] if binomial else []) + ["n_configs", "status", "reason"]
    return frame[order]


# identity-valid numbers (decisions are made on these) and the paper's, conditional on the
# test set's identities (beside them, never in p_holm / p_bh)
_IDENTITY_NUMBERS = ("coef", "se", "ci_low", "ci_high", "t", "df", "p", "n_resamples")
_CONDITIONAL_NUMBERS = ("se_conditional", "ci_low_conditional", "ci_high_conditional", "stat_conditional",
                        "df_conditional", "p_conditional")


def config_glm_binomial(design: ConfigurationDesign, options: ConfigurationOptions, alpha: float,
                        ci_level: float = 0.95) -> pd.DataFrame:
    """Binomial GLM of Rank-1 hits out of valid queries on the enabled indicators."""
    return _glm_table(design, "binomial", alpha, ci_level, options.binomial_scale)


def config_glm_gaussian(design: ConfigurationDesign, options: ConfigurationOptions, alpha: float,
                        ci_level: float = 0.95) -> pd.DataFrame:
    """Gaussian GLM of mAP on the enabled indicators."""
    return _glm_table(design, "gaussian", alpha, ci_level, None)


# ------------------------------------------------------------------------ resampled scores
def group_replicates(trace, settings, table: str) -> pd.DataFrame | None:
    """Each group's estimate in ``table`` recomputed on every identity resample, ``(B, groups)``.

    ``table`` is ``config_glm_gaussian``, ``config_glm_binomial`` (the group's coefficient) or
    ``config_ttest`` (``diff``); the resamples are those of the tables themselves (same seed, same
    identities), so a ranking built from them is resampled jointly with every other method's.
    ``None`` when the design cannot be resampled; NaN where a group has no estimate.
    """
    settings = as_settings(settings)
    options = ConfigurationOptions.from_settings(settings)
    design = configuration_design(trace, options, n_bootstrap=settings.n_bootstrap, seed=settings.seed)
    if design.not_tested or not design.resamplable:
        return None
    out = pd.DataFrame(np.nan, index=range(design.weights.shape[0]), columns=design.groups)
    with small_blas():
        if table == "config_ttest":
            compared = design.configs["kind"].isin(options.ttest_kinds).to_numpy()
            resampled_map = design.outcomes.mean_ap(design.weights)[:, compared]
            for g in design.varying:
                on = design.indicators[g].to_numpy()[compared] == 1
                if 2 <= on.sum() <= len(on) - 2:
                    out[g] = on_minus_off(resampled_map, on)
            return out
        binomial = table == "config_glm_binomial"
        result = _point_fit(design, binomial, settings.ci_level, options.binomial_scale)
        if result.fit is None:
            return None
        draws = _resampled_coefficients(design, result, binomial)
        terms = result.table.loc[result.table["status"] == OK, "term"].tolist()
    for k, term in enumerate(terms):
        if term != INTERCEPT:
            out[term.split(":", 1)[1]] = draws[:, k]
    return out


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
    design = configuration_design(trace, options, n_bootstrap=settings.n_bootstrap, seed=settings.seed)
    level = settings.ci_level
    with small_blas():
        return {
            "config_glm_binomial": config_glm_binomial(design, options, settings.alpha, level),
            "config_glm_gaussian": config_glm_gaussian(design, options, settings.alpha, level),
            "config_surrogate": config_surrogate(design, options, settings.seed, level, settings.alpha),
            "config_ttest": config_ttest(design, options, settings.alpha, level),
        }
