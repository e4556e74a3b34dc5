"""Query-level explanatory models (this project's extension of the paper's analysis).

Two models explain retrieval per query from the query's annotated attribute states:

``query_glm``
    Binomial GLM of the baseline (``oracle``) rank-1 hit of each valid query on its attribute
    states, with **identity-clustered** (sandwich) standard errors, because queries of one identity
    share everything the model learnt about that person. Coding: one treatment-coded indicator per
    state, the reference being the group's most frequent annotated state; an unannotated state is
    its own level ``<group>=missing`` (option ``missing="level"``, never the reference) or the
    queries with any missing annotation are left out (``missing="drop"``). Separation is detected
    before fitting (:func:`analysis.glm.fit_glm`): a level whose queries all hit (or all miss) is
    reported ``not estimable`` and its queries leave the fit (which is what the infinite MLE does to
    the other terms), so the rest stay estimable.

    The reference passes over a state whose queries all hit (or all miss), so that separation
    never takes the whole group with it. Rows at two levels (column ``level``):

    - ``"term"``: one per non-reference state: ``term`` (``group=state``), ``group``, ``state``,
      ``family``, ``reference`` (the group's reference state), ``coef`` (log-odds of a rank-1 hit
      relative to the reference), ``se`` (identity-clustered), ``ci_low``, ``ci_high``,
      ``odds_ratio``, ``z``, ``p``, ``n`` (valid queries in that state).
    - ``"group"``: one per group, the joint Wald test that all of the group's estimable terms are
      zero, with the clustered covariance: ``chi2``, ``df``, ``p``, ``n`` (queries fitted).

    ``p_holm`` / ``p_bh`` adjust the group rows as one family and the term rows as another.
    The intercept is not reported (it is the log-odds of the all-reference query).

``query_surrogate`` and ``query_surrogate_fit``
    An XGBoost regression surrogate of the per-query AP change ``ap[drop:<g>] - ap[oracle]``
    (condition minus baseline, the sign convention of :mod:`analysis.results`: negative = the
    query loses AP without the group). One pooled model, not one per group, so that every group
    is explained on the same scale: rows are valid queries x ``drop:<g>`` conditions; features are
    ``dropped:<g>`` indicators and the query's state one-hots (``<group>=<state>``,
    ``<group>=missing``).

    The model is ``f(x) = m[g] + trees(x)``: ``m[g]``, the mean change when ``g`` is dropped, enters
    as XGBoost's ``base_margin`` (an offset fitted on the training rows), and the boosted trees
    learn how the query's states modulate it. Relative to "nothing dropped" (a change of exactly
    0) the main effects are then identified; without the offset the dropped-group indicators sum
    to one and boosting spreads a group's main effect over the others' indicators, so that SHAP
    would rank each group against the average group. Interaction constraints keep every tree within
    one group's features (see :func:`_group_constraints`), so that a group's summed SHAP is its own
    part of the model.

    Validation (``query_surrogate_fit``): identity-grouped folds (``GroupKFold`` by pid), so no
    identity is in both the training and the held-out part; offsets and trees are fitted on the
    training part only. Columns ``model``, ``fold`` (``"1"`` ... and ``"mean"``), ``r2`` (held-out
    R²), ``r2_offset`` (held-out R² of the offsets alone: what the trees add is the difference),
    ``n_train``, ``n_test`` (rows), ``status``, ``reason``.

    Explanation (``query_surrogate``): SHAP values of the model fitted on every row. The trees' come
    from XGBoost's own TreeSHAP (``Booster.predict(..., pred_contribs=True)``; shap's reader of
    XGBoost models is not needed), the offset's are exact for a linear term,
    ``m[g] * (dropped_g - mean(dropped_g))``; per row, base value plus all SHAP values equals the
    prediction. A group's per-row SHAP is the sum over its features (offset, ``dropped:``
    indicator, state one-hots); rows at three levels (``level``: ``"group"``, ``"family"``,
    ``"coarse_family"``; a family sums its groups' SHAP per row): ``group`` (empty on family
    rows), ``family``, ``mean_abs_shap`` (mean over all rows of |SHAP|, in AP units),
    ``mean_abs_shap_drop`` / ``mean_abs_shap_state`` (offset plus ``dropped:`` indicator alone,
    and the state one-hots alone; group rows only), ``mean_shap`` (mean signed SHAP over the rows
    where the group, or a group of the family, is dropped: negative = dropping it costs AP),
    ``share`` (of the level's total ``mean_abs_shap``), ``rank`` (1 = largest ``mean_abs_shap``
    within the level), ``n_rows``, ``status``, ``reason``.

Options (``AnalysisSettings.options["explanatory"]``) are the fields of
:class:`ExplanatoryOptions`; ``alpha``, ``seed`` and ``baseline`` come from the shared settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.glm import NOT_ESTIMABLE, NOT_TESTED, OK, adjusted, as_settings, fit_glm, small_blas, wald_test
from mosaic.errors import MosaicError

__all__ = ["query_level_explanatory", "ExplanatoryOptions", "query_glm", "query_surrogate", "state_design"]

METHOD = "explanatory"
MISSING_LEVEL = "missing"
MISSING_POLICIES = ("level", "drop")

GLM_COLUMNS = [
    "level", "term", "group", "state", "family", "reference", "coef", "se", "ci_low", "ci_high",
    "odds_ratio", "z", "chi2", "df", "p", "p_holm", "p_bh", "n", "status", "reason",
]
SURROGATE_COLUMNS = [
    "level", "group", "family", "mean_abs_shap", "mean_abs_shap_drop", "mean_abs_shap_state",
    "mean_shap", "share", "rank", "n_rows", "status", "reason",
]
FIT_COLUMNS = ["model", "fold", "r2", "r2_offset", "n_train", "n_test", "status", "reason"]


@dataclass(frozen=True)
class ExplanatoryOptions:
    """Knobs of the query-level explanatory models.

    missing : ``"level"`` (an unannotated state is its own level) or ``"drop"`` (queries with any
        missing annotation leave the GLM).
    min_clusters : fewest identities for which identity-clustered errors are reported; the
        sandwich estimator is unreliable with very few clusters.
    n_folds : identity-grouped folds of the surrogate's validation (fewer when there are fewer
        identities).
    n_estimators, max_depth, learning_rate : XGBoost surrogate size; depth 3 lets the trees
        combine a dropped group with the query's states.
    min_child_weight : fewest rows in a leaf (squared error: hessian = row count); per-query AP
        changes are noisy, and small leaves would fit that noise to the query's states.
    n_jobs : XGBoost threads (1 keeps results bit-identical across machines).
    """

    missing: str = "level"
    min_clusters: int = 10
    n_folds: int = 5
    n_estimators: int = 200
    max_depth: int = 3
    learning_rate: float = 0.05
    min_child_weight: float = 20.0
    n_jobs: int = 1

    def __post_init__(self) -> None:
        if self.missing not in MISSING_POLICIES:
            raise MosaicError(f"explanatory option missing={self.missing!r}: use one of {list(MISSING_POLICIES)}")
        if int(self.n_folds) < 2:
            raise MosaicError(f"explanatory option n_folds={self.n_folds}: use at least 2")

    @classmethod
    def from_settings(cls, settings) -> "ExplanatoryOptions":
        given = settings.options_for(METHOD, cls)
        return cls(**given)


# --------------------------------------------------------------------------- the design
@dataclass
class StateDesign:
    """Treatment-coded attribute states of a set of queries.

    ``X`` has one 0/1 column per non-reference level (``group=state``); ``levels`` one row per
    level of every group (``group, state, term, n, reference, in_design``) in schema order, the
    missing level last.
    """

    X: pd.DataFrame
    levels: pd.DataFrame
    reference: dict[str, str | None]


def state_design(
    states: pd.DataFrame, groups: list[str], *, missing: str = "level", outcome: np.ndarray | None = None
) -> StateDesign:
    """Treatment coding of the query state columns (Categoricals, NA = missing annotation).

    The reference of a group is its most frequent annotated state (ties: the first in schema
    order); given the binary ``outcome``, a state whose queries all share one outcome is passed
    over, because a separated reference would make every other level of the group inestimable.
    With ``missing="level"`` NA becomes the level ``missing``; with ``"drop"`` the caller is
    expected to have removed rows with NA already.
    """
    columns, level_rows, reference = {}, [], {}
    for g in groups:
        col = states[g]
        codes = col.cat.codes.to_numpy()
        categories = list(col.cat.categories)
        counts = np.bincount(codes[codes >= 0], minlength=len(categories))
        n_missing = int((codes < 0).sum())
        eligible = counts.astype(float)
        if outcome is not None:
            hits = np.bincount(codes[codes >= 0], weights=np.asarray(outcome, float)[codes >= 0], minlength=len(categories))
            pure = (hits == 0) | (hits == counts)
            if (~pure & (counts > 0)).any():
                eligible[pure] = -1
        ref = categories[int(np.argmax(eligible))] if counts.sum() else None
        reference[g] = ref
        level_list = [(s, int(counts[i]), codes == i) for i, s in enumerate(categories)]
        if missing == "level" and n_missing:
            level_list.append((MISSING_LEVEL, n_missing, codes < 0))
        for state, n, mask in level_list:
            term = f"{g}={state}"
            in_design = state != ref and n > 0
            if in_design:
                columns[term] = mask.astype(float)
            level_rows.append({"group": g, "state": state, "term": term, "n": n, "reference": ref, "in_design": in_design})
    levels = pd.DataFrame(level_rows, columns=["group", "state", "term", "n", "reference", "in_design"])
    return StateDesign(pd.DataFrame(columns, index=states.index), levels, reference)


def _baseline_index(trace, baseline: str) -> int | None:
    names = trace.condition_names()
    return names.index(baseline) if baseline in names else None


# --------------------------------------------------------------------------- query GLM
def query_glm(trace, settings, options: ExplanatoryOptions) -> pd.DataFrame:
    """Binomial GLM of the baseline rank-1 hit on the query's attribute states (identity-clustered)."""
    schema = trace.schema
    groups = list(schema.group_names)
    family = {g: schema.group(g).family for g in groups}
    queries = trace.query_table
    base = _baseline_index(trace, settings.baseline)
    keep = queries["valid"].to_numpy().copy()
    why_not = ""
    if base is None:
        why_not = f"no {settings.baseline!r} condition in the trace: the query GLM models its rank-1 hits"
    elif not keep.any():
        why_not = "no valid query (none has a true match in the gallery)"
    elif options.missing == "drop":
        keep &= queries[groups].notna().all(axis=1).to_numpy()
        if not keep.any():
            why_not = "every valid query misses some annotation and missing='drop' leaves none"
    used = queries[keep]
    y = trace.data.rank1[base][keep].astype(float) if base is not None else None
    design = state_design(used[groups], groups, missing=options.missing, outcome=y)
    levels = design.levels

    result, fitted, position = None, None, {}
    if not why_not:
        result = fit_glm(y, design.X, family="binomial", clusters=used["pid"].to_numpy(),
                         ci_level=settings.ci_level, min_clusters=options.min_clusters)
        fitted = result.table.set_index("term")
        # the fit's parameters are the estimable terms, intercept first, in table order
        estimated = [t for t in fitted.index if fitted.at[t, "status"] == OK]
        position = {t: k for k, t in enumerate(estimated)}

    nan_numbers = dict.fromkeys(("coef", "se", "ci_low", "ci_high", "z", "chi2", "df", "p"), np.nan)
    rows = []
    for g in groups:
        own = levels[levels["group"] == g]
        present = own[own["n"] > 0]
        group_row = {"level": "group", "term": g, "group": g, "state": "", "family": family[g],
                     "reference": design.reference[g] or "", "n": int(len(used)), **nan_numbers,
                     "status": OK, "reason": ""}
        term_rows = []
        for lv in own[own["state"] != own["reference"]].itertuples():
            row = {"level": "term", "term": lv.term, "group": g, "state": lv.state, "family": family[g],
                   "reference": lv.reference or "", "n": int(lv.n), **nan_numbers, "status": OK, "reason": ""}
            if why_not:
                row.update(status=NOT_TESTED, reason=why_not)
            elif lv.n == 0:
                row.update(status=NOT_ESTIMABLE, reason=f"no valid query has {lv.term}")
            else:
                fit = fitted.loc[lv.term]
                row.update(coef=fit["coef"], se=fit["se"], ci_low=fit["ci_low"], ci_high=fit["ci_high"],
                           z=fit["stat"], p=fit["p"], status=fit["status"], reason=fit["reason"])
            term_rows.append(row)
        estimable = [r["term"] for r in term_rows if r["term"] in position]
        if why_not:
            group_row.update(status=NOT_TESTED, reason=why_not)
        elif len(present) < 2:
            only = present["state"].iloc[0] if len(present) else "nothing"
            group_row.update(status=NOT_ESTIMABLE, reason=f"never varies: every fitted query has {g}={only}")
        elif result.fit is None:
            failed = fitted[fitted["status"] != OK]
            status = NOT_TESTED if (failed["status"] == NOT_TESTED).any() else NOT_ESTIMABLE
            group_row.update(status=status, reason=failed["reason"].iloc[0] if len(failed) else "the GLM could not be fitted")
        elif not estimable:
            group_row.update(status=NOT_ESTIMABLE, reason=f"none of {g}'s levels is estimable (see its term rows)")
        else:
            chi2, df, p = wald_test(result.fit, [position[t] for t in estimable])
            group_row.update(chi2=chi2, df=df, p=p, n=result.n_obs)
        rows += [group_row] + term_rows
    table = pd.DataFrame(rows)
    table["odds_ratio"] = np.exp(table["coef"])
    return _finish_glm(table)


def _finish_glm(table: pd.DataFrame) -> pd.DataFrame:
    table["p_holm"], table["p_bh"] = np.nan, np.nan
    for level in ("group", "term"):
        rows = table["level"] == level
        p = table.loc[rows, "p"].where(table.loc[rows, "status"] == OK)
        for name, values in adjusted(p.to_numpy()).items():
            table.loc[rows, name] = values
    table["n"] = table["n"].astype(np.int64)
    return table[GLM_COLUMNS].reset_index(drop=True)


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

    def __init__(self, options: ExplanatoryOptions, seed: int, constraints: list[list[int]]):
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


def query_surrogate(trace, settings, options: ExplanatoryOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
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


# ----------------------------------------------------------------------- entry point
def query_level_explanatory(trace, settings=None) -> dict[str, pd.DataFrame]:
    """The query-level explanatory models of ``trace``.

    Parameters
    ----------
    trace : :class:`analysis.trace.Trace`.
    settings : :class:`analysis.settings.AnalysisSettings` or a dict of its fields; ``alpha``,
        ``seed``, ``baseline`` and ``options["explanatory"]`` (fields of
        :class:`ExplanatoryOptions`) are used.

    Returns
    -------
    ``{"query_glm", "query_surrogate", "query_surrogate_fit"}`` -> tidy DataFrame (columns in
    this module's docstring). Degenerate inputs give ``not tested`` / ``not estimable`` rows with
    the reason, never an exception.
    """
    settings = as_settings(settings)
    options = ExplanatoryOptions.from_settings(settings)
    with small_blas():
        glm = query_glm(trace, settings, options)
        surrogate, fit = query_surrogate(trace, settings, options)
    return {"query_glm": glm, "query_surrogate": surrogate, "query_surrogate_fit": fit}
