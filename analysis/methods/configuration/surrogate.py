"""Random-forest and XGBoost surrogates of configuration mAP, with identity-resampled intervals.

The paper explains the configurations' mAP by a surrogate model of the enabled-group indicators
and reads the groups' importance off it (permutation importance, SHAP). Those numbers are
conditional on the test set's identities; here the surrogate is also refitted on the mAP of every
configuration recomputed on ``surrogate_resamples`` identity-cluster resamples (the first rows of
the configuration design's identity-weight matrix, shared with the GLMs), which gives each
importance an interval (estimate ± t · standard error over the refits, t on identities − 1
degrees of freedom) and ``shap_direction`` (a signed effect) a test.

Permutation importance is computed for all indicators and repeats in one prediction call (the
permuted designs stacked), because the surrogate is refitted once per resample; it is the drop
in R² when one indicator is shuffled, as scikit-learn's ``permutation_importance`` defines it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from analysis.methods.configuration.inference import RESAMPLED_UNIT, resampled_wald
from analysis.stats.corrections import add_corrections
from analysis.stats.status import NOT_ESTIMABLE, NOT_TESTED, OK

__all__ = ["SURROGATES", "config_surrogate", "permutation_importance"]

STREAM_PERMUTATION_IMPORTANCE = 3   # random stream of the indicator shuffles (see analysis.stats.resampling)


def _random_forest(options, seed: int):
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


def _xgboost(options, seed: int):
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


def _r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """R² of each row of ``pred`` (``(..., n)``) against ``y``."""
    ss = np.sum((y - y.mean()) ** 2)
    return 1.0 - np.sum((pred - y) ** 2, axis=-1) / ss if ss > 0 else np.full(pred.shape[:-1], np.nan)


def permutation_importance(model, X: np.ndarray, y: np.ndarray, n_repeats: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over ``n_repeats`` shuffles of the drop in R² per column of ``X``."""
    n, p = X.shape
    rng = np.random.default_rng([int(seed), STREAM_PERMUTATION_IMPORTANCE])
    shuffles = np.stack([np.stack([rng.permutation(n) for _ in range(n_repeats)]) for _ in range(p)])  # (p, R, n)
    permuted = np.broadcast_to(X, (p, n_repeats, n, p)).copy()
    for j in range(p):
        permuted[j, :, :, j] = X[shuffles[j], j]
    predicted = model.predict(permuted.reshape(-1, p)).reshape(p, n_repeats, n)
    drop = _r2(y, model.predict(X)) - _r2(y, predicted)                                                  # (p, R)
    return drop.mean(1), drop.std(1)


def _explain(fit, explain, X: np.ndarray, y: np.ndarray, options, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(3, p)`` permutation importance, mean |SHAP| and SHAP direction of every indicator; the
    permutation importance's standard deviation over shuffles ``(p,)``."""
    model = fit(X, y)
    perm, perm_sd = permutation_importance(model, X, y, options.permutation_repeats, seed)
    shap_values = explain(model, X)
    on = X == 1
    direction = [shap_values[on[:, j], j].mean() - shap_values[~on[:, j], j].mean() for j in range(X.shape[1])]
    return np.stack([perm, np.abs(shap_values).mean(0), np.asarray(direction)]), perm_sd


_NUMBERS = (
    "perm_importance_mean", "perm_importance_ci_low", "perm_importance_ci_high", "perm_importance_sd_conditional",
    "mean_abs_shap", "mean_abs_shap_ci_low", "mean_abs_shap_ci_high",
    "shap_direction", "shap_direction_ci_low", "shap_direction_ci_high", "se", "t", "df", "p",
    "rank_permutation", "rank_shap", "r2_cv", "n_resamples",
)
COLUMNS = ["model", "group", "family", *_NUMBERS[:14], "p_holm", "p_bh", "reject_holm", "reject_bh", *_NUMBERS[14:17], "resampled", "n_ids",
           "n_resamples", "n_configs", "status", "reason"]


def config_surrogate(design, options, seed: int, ci_level: float = 0.95, alpha: float = 0.05) -> pd.DataFrame:
    """Random-forest and XGBoost surrogates of mAP, explained by permutation importance and SHAP."""
    y = design.configs["mAP"].to_numpy()
    reason_all = design.not_tested
    status_all = NOT_TESTED if reason_all else OK
    if not reason_all and np.ptp(y) == 0:
        status_all, reason_all = NOT_ESTIMABLE, f"mAP is identical in all {design.n_configs} configurations"
    if status_all == OK and not design.resamplable:
        status_all, reason_all = NOT_TESTED, design.not_resamplable
    frames = []
    for model_name, factory in SURROGATES.items():
        numbers = {g: dict.fromkeys(_NUMBERS, np.nan) for g in design.groups}
        if status_all == OK:
            numbers.update(_surrogate_numbers(design, factory(options, seed), y, options, seed, ci_level))
        rows = []
        for g in design.groups:
            status, reason = status_all, reason_all
            if status == OK and g not in design.varying:
                status, reason = NOT_ESTIMABLE, design.never_varies(g)
            rows.append({"model": model_name, "group": g, "family": design.families[g], **numbers[g],
                         "n_configs": design.n_configs, "status": status, "reason": reason})
        frames.append(pd.DataFrame(rows))
    table = add_corrections(pd.concat(frames, ignore_index=True), alpha, by="model")
    table["resampled"] = RESAMPLED_UNIT
    table["n_ids"] = design.outcomes.n_ids if design.outcomes is not None else 0
    return table[COLUMNS]


def _surrogate_numbers(design, model_fns, y, options, seed, ci_level) -> dict[str, dict[str, float]]:
    from sklearn.model_selection import KFold

    fit, explain = model_fns
    X = design.indicators[design.varying].to_numpy()
    point, perm_sd = _explain(fit, explain, X, y, options, seed)
    weights = design.weights[: options.surrogate_resamples]
    draws = np.stack([_explain(fit, explain, X, y_b, options, seed)[0] for y_b in design.outcomes.mean_ap(weights)])
    # a few dozen refits: intervals from their standard error (t on identities - 1), steadier
    # than the extreme order statistics a percentile interval would need
    walds = [resampled_wald(point[k], draws[:, k], design.outcomes.n_ids, ci_level) for k in range(3)]
    low, high = np.stack([w["ci_low"] for w in walds]), np.stack([w["ci_high"] for w in walds])
    wald = walds[2]
    folds = min(options.cv_folds, design.n_configs)
    held_out = np.empty_like(y)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(X):
        held_out[test] = fit(X[train], y[train]).predict(X[test])
    r2_cv = float(_r2(y, held_out))
    rank_perm = pd.Series(-point[0]).rank(method="min").to_numpy()
    rank_shap = pd.Series(-point[1]).rank(method="min").to_numpy()
    out = {}
    for j, g in enumerate(design.varying):
        out[g] = {
            "perm_importance_mean": point[0, j], "perm_importance_ci_low": low[0, j],
            "perm_importance_ci_high": high[0, j], "perm_importance_sd_conditional": perm_sd[j],
            "mean_abs_shap": point[1, j], "mean_abs_shap_ci_low": low[1, j], "mean_abs_shap_ci_high": high[1, j],
            "shap_direction": point[2, j], "shap_direction_ci_low": wald["ci_low"][j],
            "shap_direction_ci_high": wald["ci_high"][j], "se": wald["se"][j], "t": wald["stat"][j],
            "df": wald["df"][j], "p": wald["p"][j], "rank_permutation": rank_perm[j], "rank_shap": rank_shap[j],
            "r2_cv": r2_cv, "n_resamples": len(weights),
        }
    return {g: {k: float(v) for k, v in row.items()} for g, row in out.items()}
