"""The query surrogate: an XGBoost model of the per-query AP change under each ``drop:<g>``.

Its tables (``query_surrogate``, ``query_surrogate_fit``) and the model are described in
:mod:`analysis.methods.query.explanatory`; validation uses identity-grouped folds, so no identity is in both
the training and the held-out part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.methods.query.glm import MISSING_LEVEL, _baseline_index
from analysis.stats.status import NOT_ESTIMABLE, NOT_TESTED, OK

__all__ = ["query_surrogate", "surrogate_data", "SurrogateData", "DropSurrogate", "SURROGATE_COLUMNS", "FIT_COLUMNS"]

SURROGATE_COLUMNS = [
    "level", "group", "family", "mean_abs_shap", "mean_abs_shap_drop", "mean_abs_shap_state",
    "mean_shap", "share", "rank", "n_rows", "status", "reason",
]
FIT_COLUMNS = ["model", "fold", "r2", "r2_offset", "n_train", "n_test", "status", "reason"]


# ------------------------------------------------------------------------ surrogate
@dataclass
class SurrogateData:
    """Rows (valid query x drop condition) and features of the AP-change surrogate."""

    X: pd.DataFrame          # dropped:<g> indicators, then state one-hots
    y: np.ndarray            # AP change, condition - baseline
    pid: np.ndarray
    dropped: np.ndarray      # name of the dropped group per row
    feature_group: dict[str, str]
    feature_kind: dict[str, str]   # "drop" | "state"


def surrogate_data(trace, settings) -> tuple[SurrogateData | None, list[str], str]:
    """Rows and features of the AP-change surrogate; ``(None, groups_dropped, reason)`` when impossible."""
    schema = trace.schema
    groups = list(schema.group_names)
    base = _baseline_index(trace, settings.baseline)
    conditions = trace.conditions
    drops = conditions[conditions["kind"] == "drop"]
    drop_condition = dict(zip(drops["group"].astype(str), drops["condition"].astype(str)))
    dropped_groups = [g for g in groups if g in drop_condition]
    if base is None:
        return None, dropped_groups, f"no {settings.baseline!r} condition in the trace to compare the drops with"
    if not dropped_groups:
        return None, dropped_groups, "no drop:<group> condition in the trace"
    queries = trace.query_table
    valid = queries["valid"].to_numpy()
    if not valid.any():
        return None, dropped_groups, "no valid query (none has a true match in the gallery)"
    n_ids = queries.loc[valid, "pid"].nunique()
    if n_ids < 2:
        return None, dropped_groups, f"{n_ids} identity among the valid queries: identity-grouped validation needs at least 2"
    valid_q = queries[valid]
    n = int(valid.sum())
    feature_group, feature_kind, states = {}, {}, {}
    for g in dropped_groups:
        feature_group[f"dropped:{g}"], feature_kind[f"dropped:{g}"] = g, "drop"
    for g in groups:
        col = valid_q[g]
        for state in list(col.cat.categories) + [MISSING_LEVEL]:
            mask = (col.isna() if state == MISSING_LEVEL else col == state).to_numpy(dtype=bool)
            if mask.any():
                name = f"{g}={state}"
                states[name] = np.tile(mask.astype(np.float32), len(dropped_groups))
                feature_group[name], feature_kind[name] = g, "state"
    dropped = np.repeat(np.array(dropped_groups, dtype=object), n)
    indicators = {f"dropped:{g}": (dropped == g).astype(np.float32) for g in dropped_groups}
    ap = trace.data.ap
    base_ap = ap[base][valid].astype(np.float64)
    y = np.concatenate(
        [ap[trace.condition_index(drop_condition[g])][valid].astype(np.float64) - base_ap for g in dropped_groups]
    )
    data = SurrogateData(
        X=pd.DataFrame({**indicators, **states}),
        y=y,
        pid=np.tile(valid_q["pid"].to_numpy(), len(dropped_groups)),
        dropped=dropped,
        feature_group=feature_group,
        feature_kind=feature_kind,
    )
    return data, dropped_groups, ""


def _group_constraints(data: SurrogateData, groups: list[str]) -> list[list[int]]:
    """Feature indices per group, for XGBoost's interaction constraints.

    Every tree stays within one group's features, so the trees are a sum of one function per
    group (of its dropped indicator and its states) and, by the efficiency of TreeSHAP within each
    tree, a group's summed SHAP is exactly its own function's deviation from its mean. Trees that
    mixed groups would share out the credit for one group's drop among other groups' features in
    an order-dependent way. Interactions between a dropped group and the same group's states (an
    unannotated query loses nothing when its group is dropped) stay possible; interactions across
    groups are excluded by design.
    """
    features = list(data.X.columns)
    sets = [[j for j, f in enumerate(features) if data.feature_group[f] == g] for g in groups]
    return [s for s in sets if s]


class DropSurrogate:
    """``f(x) = m[dropped group] + trees(x)``: per-group mean change as offset, XGBoost for the rest."""

    def __init__(self, options, seed: int, constraints: list[list[int]]):
        self.options, self.seed, self.constraints = options, seed, constraints

    def fit(self, X: np.ndarray, y: np.ndarray, dropped: np.ndarray) -> "DropSurrogate":
        import xgboost as xgb

        self.offsets_ = {g: float(y[dropped == g].mean()) for g in np.unique(dropped)}
        self.model_ = xgb.XGBRegressor(
            n_estimators=self.options.n_estimators, max_depth=self.options.max_depth,
            learning_rate=self.options.learning_rate, min_child_weight=self.options.min_child_weight,
            random_state=self.seed, n_jobs=self.options.n_jobs,
            tree_method="hist",
            # as text: xgboost reads lists of names only when the data carry feature names
            interaction_constraints=str(self.constraints),
        ).fit(X, y, base_margin=self.offset(dropped))
        return self

    def offset(self, dropped: np.ndarray) -> np.ndarray:
        # a group never dropped in the training part has no mean change of its own: 0 (no change)
        return np.array([self.offsets_.get(g, 0.0) for g in dropped], dtype=np.float64)

    def predict(self, X: np.ndarray, dropped: np.ndarray) -> np.ndarray:
        return self.model_.predict(X, base_margin=self.offset(dropped)).astype(np.float64)

    def shap_values(self, X: np.ndarray, dropped: np.ndarray, drop_columns: dict[str, int]) -> tuple[np.ndarray, float]:
        """Per-row SHAP values ``(n, n_features)`` and the base value; rows sum to :meth:`predict`.

        The offset is a linear function of the dropped-group indicators, so its exact SHAP value
        ``m[g] * (dropped_g - mean(dropped_g))`` is added to the indicator's column (tree SHAP from
        ``pred_contribs``, whose bias column carries the offset of each row and the trees' mean).
        """
        import xgboost as xgb

        offset = self.offset(dropped)
        contribs = self.model_.get_booster().predict(xgb.DMatrix(X, base_margin=offset), pred_contribs=True)
        contribs = contribs.astype(np.float64)
        shap = contribs[:, :-1]
        base = contribs[:, -1] - offset  # the trees' expected value, the same on every row
        offset_base = 0.0
        for g, j in drop_columns.items():
            indicator = (dropped == g).astype(np.float64)
            m = self.offsets_.get(g, 0.0)
            shap[:, j] += m * (indicator - indicator.mean())
            offset_base += m * indicator.mean()
        return shap, float(base.mean() + offset_base)


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((y - pred) ** 2) / ss) if ss > 0 else np.nan


def query_surrogate(trace, settings, options) -> tuple[pd.DataFrame, pd.DataFrame]:
    """XGBoost surrogate of the per-query AP change under each drop: SHAP roll-up and grouped-CV fit."""
    from sklearn.model_selection import GroupKFold

    schema = trace.schema
    groups = list(schema.group_names)
    family = {g: schema.group(g).family for g in groups}
    coarse = {g: schema.group(g).coarse_family for g in groups}
    data, dropped_groups, why_not = surrogate_data(trace, settings)
    status_all = NOT_TESTED
    if data is not None and np.ptp(data.y) == 0:
        why_not, status_all = "the AP change is zero for every query and drop: nothing to explain", NOT_ESTIMABLE
    if why_not:
        fit_table = pd.DataFrame([{"model": "xgboost", "fold": "mean", "r2": np.nan, "r2_offset": np.nan,
                                   "n_train": 0, "n_test": 0, "status": status_all, "reason": why_not}],
                                 columns=FIT_COLUMNS)
        return _surrogate_rows(groups, family, coarse, None, status_all, why_not), fit_table

    # ---- identity-grouped validation -----------------------------------------------------
    X = data.X.to_numpy(dtype=np.float32)
    constraints = _group_constraints(data, groups)
    n_splits = min(options.n_folds, len(np.unique(data.pid)))
    fold_rows = []
    for k, (train, test) in enumerate(GroupKFold(n_splits=n_splits).split(X, data.y, groups=data.pid), start=1):
        model = DropSurrogate(options, settings.seed, constraints).fit(X[train], data.y[train], data.dropped[train])
        r2 = _r2(data.y[test], model.predict(X[test], data.dropped[test]))
        r2_offset = _r2(data.y[test], model.offset(data.dropped[test]))
        fold_rows.append({"model": "xgboost", "fold": str(k), "r2": r2, "r2_offset": r2_offset,
                          "n_train": int(len(train)), "n_test": int(len(test)),
                          "status": OK if np.isfinite(r2) else NOT_ESTIMABLE,
                          "reason": "" if np.isfinite(r2) else "the held-out AP change does not vary"})
    folds = pd.DataFrame(fold_rows, columns=FIT_COLUMNS)
    ok = folds["status"] == OK
    mean_row = {"model": "xgboost", "fold": "mean",
                "r2": folds.loc[ok, "r2"].mean() if ok.any() else np.nan,
                "r2_offset": folds.loc[ok, "r2_offset"].mean() if ok.any() else np.nan,
                "n_train": int(round(folds["n_train"].mean())), "n_test": int(folds["n_test"].sum()),
                "status": OK if ok.any() else NOT_ESTIMABLE, "reason": "" if ok.any() else "no fold could be scored"}
    fit_table = pd.concat([folds, pd.DataFrame([mean_row], columns=FIT_COLUMNS)], ignore_index=True)

    # ---- explanation of the model fitted on every row ------------------------------------
    features = list(data.X.columns)
    model = DropSurrogate(options, settings.seed, constraints).fit(X, data.y, data.dropped)
    drop_columns = {g: features.index(f"dropped:{g}") for g in dropped_groups}
    shap, _ = model.shap_values(X, data.dropped, drop_columns)
    per_group = {}
    for g in dropped_groups:
        drop_idx = [j for j, f in enumerate(features) if data.feature_group[f] == g and data.feature_kind[f] == "drop"]
        state_idx = [j for j, f in enumerate(features) if data.feature_group[f] == g and data.feature_kind[f] == "state"]
        per_group[g] = (shap[:, drop_idx].sum(1), shap[:, state_idx].sum(1))
    return _surrogate_rows(groups, family, coarse, (per_group, data.dropped), OK, ""), fit_table


def _surrogate_rows(groups, family, coarse, explained, status_all, why_not) -> pd.DataFrame:
    rows = []
    per_group, dropped = explained if explained else ({}, None)
    for g in groups:
        row = {"level": "group", "group": g, "family": family[g], "status": status_all, "reason": why_not}
        if explained is not None:
            if g in per_group:
                drop_part, state_part = per_group[g]
                total = drop_part + state_part
                row.update(mean_abs_shap=np.abs(total).mean(), mean_abs_shap_drop=np.abs(drop_part).mean(),
                           mean_abs_shap_state=np.abs(state_part).mean(), mean_shap=total[dropped == g].mean(),
                           n_rows=len(total), status=OK, reason="")
            else:
                row.update(status=NOT_TESTED, reason=f"no drop:{g} condition in the trace")
        rows.append(row)
    for level, of in (("family", family), ("coarse_family", coarse)):
        names = list(dict.fromkeys(of[g] for g in groups))
        for name in names:
            members = [g for g in groups if of[g] == name and g in per_group]
            row = {"level": level, "group": "", "family": name, "status": status_all, "reason": why_not}
            if explained is not None:
                if members:
                    total = sum(per_group[g][0] + per_group[g][1] for g in members)
                    row.update(mean_abs_shap=np.abs(total).mean(), mean_shap=total[np.isin(dropped, members)].mean(),
                               n_rows=len(total), status=OK, reason="")
                else:
                    row.update(status=NOT_TESTED, reason=f"no drop condition for any group of {name}")
            rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=SURROGATE_COLUMNS)
    table["n_rows"] = table["n_rows"].fillna(0).astype(np.int64)
    for level in ("group", "family", "coarse_family"):
        sel = (table["level"] == level) & (table["status"] == OK)
        total = table.loc[sel, "mean_abs_shap"].sum()
        table.loc[sel, "share"] = table.loc[sel, "mean_abs_shap"] / total if total > 0 else np.nan
        table.loc[sel, "rank"] = (-table.loc[sel, "mean_abs_shap"]).rank(method="min")
    return table


