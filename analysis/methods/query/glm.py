"""The query GLM: which attribute states make a query hard for the baseline model.

Binomial GLM of the baseline (``oracle``) rank-1 hit of each valid query on its attribute states
(the table's columns are listed in :mod:`analysis.methods.query.explanatory`). Queries of one identity share
its states and everything the model learnt about the person, so they are not independent trials:
standard errors are **identity-clustered CR2** (Bell & McCaffrey 2002) with Satterthwaite degrees
of freedom per coefficient and the approximate Hotelling T² test (Pustejovsky & Tipton 2018) for a
group's joint test (:mod:`analysis.stats.cluster_robust`, clubSandwich's form for ``glm`` objects). The
plain cluster sandwich with a normal reference rejects too often with few or unequal identities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats.cluster_robust import cr2, glm_working_parts
from analysis.stats.corrections import add_corrections
from analysis.stats.glm import fit_glm
from analysis.stats.status import NOT_ESTIMABLE, NOT_TESTED, OK

__all__ = ["query_glm", "state_design", "StateDesign", "GLM_COLUMNS", "MISSING_LEVEL", "cr2_inference"]

MISSING_LEVEL = "missing"
# the unit the table's errors are clustered on (CR2 treats identities as the independent units)
RESAMPLED_UNIT = "identities"

GLM_COLUMNS = [
    "level", "term", "group", "state", "family", "reference", "coef", "se", "ci_low", "ci_high",
    "odds_ratio", "t", "F", "df_num", "df", "p", "p_holm", "p_bh", "reject_holm", "reject_bh", "resampled", "n_clusters", "n",
    "status", "reason",
]


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
def query_glm(trace, settings, options) -> pd.DataFrame:
    """Binomial GLM of the baseline rank-1 hit on the query's attribute states (identity-clustered CR2)."""
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
        if result.fit is not None:
            robust = cr2_inference(result, used["pid"].to_numpy(), settings.ci_level)
            for column in ("se", "ci_low", "ci_high", "stat", "df", "p"):
                fitted.loc[estimated, column] = robust[column]

    nan_numbers = dict.fromkeys(("coef", "se", "ci_low", "ci_high", "t", "F", "df_num", "df", "p"), np.nan)
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
                           t=fit["stat"], df=fit.get("df", np.nan), p=fit["p"], status=fit["status"],
                           reason=fit["reason"])
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
            contrasts = np.eye(len(position))[:, [position[t] for t in estimable]]
            test = robust["cr2"].hotelling(np.asarray(result.fit.params), contrasts)
            group_row.update(F=test["F"], df_num=test["df1"], df=test["df2"], p=test["p"], n=result.n_obs)
        rows += [group_row] + term_rows
    table = pd.DataFrame(rows)
    table["odds_ratio"] = np.exp(table["coef"])
    table["resampled"] = RESAMPLED_UNIT
    table["n_clusters"] = result.n_clusters if result is not None and result.n_clusters else 0
    return _finish_glm(table, settings.alpha)


def cr2_inference(result, pid: np.ndarray, ci_level: float) -> dict:
    """CR2 standard errors, Satterthwaite t tests and ``ci_level`` intervals of a binomial ``fit_glm``
    result, clustered by ``pid`` over the rows the fit used; ``"cr2"`` carries the covariance.

    The adjustment is clubSandwich's for ``glm`` objects (response scale), the degrees of freedom
    Bell–McCaffrey's (clubSandwich's ``coef_test(test = "Satterthwaite")``): see
    :mod:`analysis.stats.cluster_robust`.
    """
    fit = result.fit
    X = np.asarray(fit.model.exog, dtype=float)
    # statsmodels keeps a binomial outcome with trials as proportions, its trials in n_trials
    trials = np.asarray(fit.model.n_trials, dtype=float)
    successes = np.asarray(fit.model.endog, dtype=float) * trials
    Xw, residuals, response_variance = glm_working_parts(X, successes, np.asarray(fit.mu, dtype=float), trials)
    robust = cr2(Xw, residuals, pid[result.rows_used], response_variance=response_variance)
    beta, se = np.asarray(fit.params), robust.se
    df = np.array([robust.satterthwaite_df(c) for c in np.eye(len(beta))])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, beta / se, np.nan)
    half = stats.t.ppf(0.5 + ci_level / 2.0, df) * se
    return {"se": se, "stat": t, "df": df, "p": 2.0 * stats.t.sf(np.abs(t), df),
            "ci_low": beta - half, "ci_high": beta + half, "cr2": robust}


def _finish_glm(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    # the group tests are one family, the term tests another
    table = add_corrections(table, alpha, by="level")
    table["n"] = table["n"].astype(np.int64)
    return table[GLM_COLUMNS].reset_index(drop=True)


