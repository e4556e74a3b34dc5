"""GLM fitting that refuses to report what the data cannot estimate.

Two traps make a plain ``statsmodels`` fit unsafe for the analysis tables:

- **Quasi-complete separation.** When a term predicts the outcome perfectly on some rows (say,
  every query with ``hat=yes`` is a rank-1 hit), the binomial maximum-likelihood estimate lies at
  infinity. statsmodels stops after a few iterations without a warning and reports a large
  coefficient whose cluster-robust p-value can look convincing. :func:`find_separation` detects it
  with the linear program of Konis (2007): a direction ``b`` with ``x_i b >= 0`` on every success,
  ``x_i b <= 0`` on every failure and ``x_i b != 0`` somewhere exists exactly when the data are
  (quasi-)separated. In the limit the MLE fits the separated rows perfectly, so they carry no
  information about the other terms: :func:`fit_glm` removes them (which gives the limiting MLE of
  the remaining terms) and reports the terms left without support as ``not estimable``.
- **Aliasing.** A column that never varies, or that repeats a combination of earlier columns (two
  groups always enabled together), has no estimate of its own; it is reported, not dropped silently.

Everything here works on a plain design matrix; the callers (:mod:`analysis.methods.configuration.level`,
:mod:`analysis.methods.query.explanatory`) decide what the terms mean.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize

from analysis.stats.status import NOT_ESTIMABLE, NOT_TESTED, OK
from mosaic.core.errors import MosaicError

INTERCEPT = "Intercept"

# Beyond these a fitted log-odds is numerically degenerate rather than an effect: |coef| = 10 is an
# odds ratio of 22,000, and a standard error of 50 leaves the sign unknown at any level.
MAX_ABS_LOGODDS = 10.0
MAX_LOGODDS_SE = 50.0


@dataclass
class GLMResult:
    """Outcome of :func:`fit_glm`.

    ``table`` has one row per requested term (intercept first when fitted): ``term, coef, se,
    stat, p, ci_low, ci_high, status, reason``. ``stat`` is a z statistic, or t when the fit used
    the t distribution (``df_resid`` then gives its degrees of freedom).
    """

    table: pd.DataFrame
    n_obs: int = 0                      # rows that entered the final fit
    n_clusters: int | None = None       # clusters that entered the final fit
    df_resid: float = np.nan
    scale: float = np.nan
    rows_used: np.ndarray | None = None  # bool mask over the input rows
    fit: object | None = field(default=None, repr=False)  # the statsmodels results object


def empty_table(terms: list[str], status: str, reason: str) -> pd.DataFrame:
    """A term table whose every row carries the same status and reason and no numbers."""
    n = len(terms)
    nan = np.full(n, np.nan)
    return pd.DataFrame(
        {
            "term": list(terms),
            "coef": nan, "se": nan, "stat": nan, "p": nan, "ci_low": nan, "ci_high": nan,
            "status": [status] * n,
            "reason": [reason] * n,
        }
    )


def _aggregate(X: np.ndarray, successes: np.ndarray, trials: np.ndarray):
    """Collapse identical design rows: the separation LP only needs each pattern once."""
    patterns, inverse = np.unique(X, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    s = np.bincount(inverse, weights=successes, minlength=len(patterns))
    n = np.bincount(inverse, weights=trials, minlength=len(patterns))
    return patterns, s, n, inverse


def find_separation(X: np.ndarray, successes: np.ndarray, trials: np.ndarray | None = None, *, tol: float = 1e-7):
    """Detect (quasi-)complete separation in a binomial design.

    Parameters
    ----------
    X : (n, p) design matrix, including the intercept column if the model has one.
    successes : (n,) number of successes per row (0/1 for binary outcomes).
    trials : (n,) number of trials per row; ones when omitted.

    Returns
    -------
    separated_rows : (n,) bool, rows whose outcome a separating direction predicts perfectly.
    direction : (p,) the separating direction (zeros when the data are not separated).

    The linear program (Konis 2007) maximises ``sum |x_i b|`` over ``b`` in ``[-1, 1]^p`` subject to
    ``x_i b >= 0`` for rows with only successes, ``<= 0`` for rows with only failures and ``= 0``
    for rows with both; a positive optimum means separation.
    """
    X = np.asarray(X, dtype=float)
    successes = np.asarray(successes, dtype=float)
    trials = np.ones_like(successes) if trials is None else np.asarray(trials, dtype=float)
    n_rows, p = X.shape
    if n_rows == 0 or p == 0:
        return np.zeros(n_rows, bool), np.zeros(p)
    patterns, s, n, inverse = _aggregate(X, successes, trials)
    keep = n > 0
    all_hit = keep & (s >= n)
    all_miss = keep & (s <= 0)
    mixed = keep & ~all_hit & ~all_miss
    # Scale columns so the tolerance means the same for every term.
    col_scale = np.maximum(np.abs(patterns).max(axis=0), 1e-12)
    P = patterns / col_scale
    sign = np.where(all_hit, 1.0, np.where(all_miss, -1.0, 0.0))
    c = -(sign[:, None] * P).sum(axis=0)
    one_sided = all_hit | all_miss
    A_ub = -(sign[one_sided, None] * P[one_sided])
    res = optimize.linprog(
        c,
        A_ub=A_ub if len(A_ub) else None,
        b_ub=np.zeros(len(A_ub)) if len(A_ub) else None,
        A_eq=P[mixed] if mixed.any() else None,
        b_eq=np.zeros(int(mixed.sum())) if mixed.any() else None,
        bounds=[(-1.0, 1.0)] * p,
        method="highs",
    )
    if res.status != 0 or -res.fun <= tol * max(1, len(P)):
        return np.zeros(n_rows, bool), np.zeros(p)
    direction = np.where(np.abs(res.x) > tol, res.x, 0.0)
    separated_patterns = np.abs(P @ direction) > tol
    return separated_patterns[inverse], direction / col_scale


def independent_columns(X: np.ndarray, *, tol: float = 1e-9) -> np.ndarray:
    """Greedy left-to-right choice of linearly independent columns (bool mask over columns).

    A column is kept when it raises the rank of the columns kept before it, so the earlier term
    (the intercept, then terms in the caller's order) keeps its estimate and the later alias is
    the one reported.
    """
    X = np.asarray(X, dtype=float)
    keep = np.zeros(X.shape[1], bool)
    basis = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        col = X[:, j]
        norm = np.linalg.norm(col)
        if norm <= tol:
            continue
        if basis.shape[1]:
            col = col - basis @ (basis.T @ col)
        if np.linalg.norm(col) > 1e-8 * norm:
            basis = np.column_stack([basis, col / np.linalg.norm(col)])
            keep[j] = True
    return keep


def _describe_alias(X: np.ndarray, j: int, kept: np.ndarray, names: list[str]) -> str:
    col = X[:, j]
    if np.ptp(col) == 0:
        value = col[0] if len(col) else 0
        return f"never varies (always {value:g} on the rows fitted)"
    basis = np.flatnonzero(kept)
    coef = np.linalg.lstsq(X[:, basis], col, rcond=None)[0]
    parts = [f"{c:+.3g}*{names[k]}" for k, c in zip(basis, coef) if abs(c) > 1e-8]
    return "aliased: equals " + " ".join(parts).lstrip("+") + " on the rows fitted"


def _separation_reason(term: str, successes: np.ndarray, trials: np.ndarray, involved: str) -> str:
    n = int(trials.sum())
    if successes.sum() >= trials.sum():
        what = f"all {n} observations with {term} are successes"
    elif successes.sum() <= 0:
        what = f"all {n} observations with {term} are failures"
    else:
        what = f"{n} observations with {term} are predicted perfectly by {involved}"
    return f"quasi-complete separation: {what}; they are left out of the fit (infinite MLE)"


def small_blas():
    """Single-threaded BLAS for the small dense problems here.

    Design matrices of a few thousand rows and tens of columns gain nothing from BLAS threads,
    and on a busy machine the threads' spin-waiting makes a 3 ms least-squares solve take 200 ms.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def fit_glm(
    y: np.ndarray,
    X: pd.DataFrame,
    *,
    family: str,
    trials: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    ci_level: float = 0.95,
    intercept: bool = True,
    scale: str | float | None = None,
    use_t: bool = False,
    min_clusters: int = 2,
) -> GLMResult:
    """Fit a binomial or Gaussian GLM and report every term, estimable or not.

    Parameters
    ----------
    y : outcome; for ``family="binomial"`` the successes (0/1 per row, or counts with ``trials``).
    X : design, one column per term (no intercept column; ``intercept=True`` adds ``Intercept``).
    family : ``"binomial"`` or ``"gaussian"``.
    trials : binomial trials per row (ones when omitted).
    clusters : labels for cluster-robust (sandwich) standard errors, e.g. the query's identity;
        statsmodels' finite-sample correction ``G/(G-1) * (N-1)/(N-K)`` is applied.
    ci_level : coverage of the intervals (decisions, made elsewhere, use ``alpha``).
    scale : dispersion, as statsmodels' ``scale`` argument (``"X2"`` = Pearson chi² / df).
    use_t : t instead of normal reference distribution (the Gaussian GLM then equals OLS).

    Binomial fits first remove rows and terms that separation makes inestimable
    (:func:`find_separation`), then aliased terms (:func:`independent_columns`), then fit; a fitted
    log-odds beyond ``MAX_ABS_LOGODDS`` or with a standard error beyond ``MAX_LOGODDS_SE`` is also
    reported as not estimable and the model refitted without it.
    """
    import statsmodels.api as sm

    if family not in ("binomial", "gaussian"):
        raise ValueError(f"family must be 'binomial' or 'gaussian', got {family!r}")
    names = ([INTERCEPT] if intercept else []) + [str(c) for c in X.columns]
    Xa = X.to_numpy(dtype=float)
    if intercept:
        Xa = np.column_stack([np.ones(len(Xa)), Xa])
    y = np.asarray(y, dtype=float)
    binomial = family == "binomial"
    trials_a = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
    status = {name: OK for name in names}
    reason = {name: "" for name in names}
    rows = np.isfinite(y) & np.isfinite(Xa).all(axis=1) & (trials_a > 0)
    if clusters is not None:
        clusters = np.asarray(clusters)
    active = np.ones(len(names), bool)

    def _mark(j: int, why: str) -> None:
        status[names[j]] = NOT_ESTIMABLE
        reason[names[j]] = why
        active[j] = False

    def _table(fit=None, cols=None):
        table = empty_table(names, OK, "")
        table["status"] = [status[n] for n in names]
        table["reason"] = [reason[n] for n in names]
        if fit is not None:
            ci = np.asarray(fit.conf_int(alpha=1.0 - ci_level))
            values = {
                "coef": fit.params, "se": fit.bse, "stat": fit.tvalues, "p": fit.pvalues,
                "ci_low": ci[:, 0], "ci_high": ci[:, 1],
            }
            for column, estimates in values.items():
                filled = table[column].to_numpy(copy=True)
                filled[cols] = np.asarray(estimates)
                table[column] = filled
        return table

    for _ in range(len(names) + 2):  # every pass removes at least one term or ends
        # -- separation (binomial only): the separated rows leave the fit --------------------
        if binomial:
            while rows.any():
                sep_rows, direction = find_separation(Xa[rows][:, active], y[rows], trials_a[rows])
                if not sep_rows.any():
                    break
                removed = np.flatnonzero(rows)[sep_rows]
                rows[removed] = False
                involved = " + ".join(names[j] for j, b in zip(np.flatnonzero(active), direction) if b != 0)
                for j in np.flatnonzero(active):
                    if names[j] == INTERCEPT or not rows.any() or np.ptp(Xa[rows, j]) != 0:
                        continue
                    lost = removed[Xa[removed, j] != Xa[rows, j][0]]
                    if len(lost):
                        _mark(j, _separation_reason(names[j], y[lost], trials_a[lost], involved))
        if not rows.any():
            if binomial and y.sum() >= trials_a.sum():
                why = "every outcome is a success: nothing to explain"
            elif binomial and y.sum() <= 0:
                why = "every outcome is a failure: nothing to explain"
            elif binomial:
                why = "separation leaves no observation to fit"
            else:
                why = "no usable rows"
            for j in np.flatnonzero(active):
                _mark(j, why)
            return GLMResult(_table(), n_obs=0, rows_used=rows)
        # -- aliasing --------------------------------------------------------------------------
        sub = Xa[rows]
        candidate = np.flatnonzero(active)
        kept = independent_columns(sub[:, candidate])
        kept_mask = np.zeros(len(names), bool)
        kept_mask[candidate[kept]] = True
        for k, j in enumerate(candidate):
            if not kept[k]:
                _mark(j, _describe_alias(sub, j, kept_mask[: j], names[: j]))
        cols = np.flatnonzero(active)
        n_obs = int(rows.sum())
        n_clusters = int(len(np.unique(clusters[rows]))) if clusters is not None else None
        df_resid = n_obs - len(cols)
        if len(cols) == 0:
            return GLMResult(_table(), n_obs=n_obs, n_clusters=n_clusters, rows_used=rows)
        if clusters is not None and n_clusters < min_clusters:
            why = f"{n_clusters} cluster(s) (identities): cluster-robust errors need at least {min_clusters}"
            for j in cols:
                status[names[j]], reason[names[j]] = NOT_TESTED, why
            return GLMResult(_table(), n_obs=n_obs, n_clusters=n_clusters, rows_used=rows)
        if df_resid <= 0 and (not binomial or scale is not None):
            for j in cols:
                status[names[j]], reason[names[j]] = NOT_TESTED, f"{n_obs} observations for {len(cols)} parameters"
            return GLMResult(_table(), n_obs=n_obs, n_clusters=n_clusters, rows_used=rows)
        # -- fit ---------------------------------------------------------------------------------
        if binomial:
            endog = np.column_stack([y[rows], trials_a[rows] - y[rows]]) if trials is not None else y[rows]
            fam = sm.families.Binomial()
        else:
            endog = y[rows]
            fam = sm.families.Gaussian()
        fit_kwargs = {"use_t": use_t}
        if scale is not None:
            fit_kwargs["scale"] = scale
        if clusters is not None:
            fit_kwargs.update(cov_type="cluster", cov_kwds={"groups": pd.factorize(clusters[rows])[0]})
        if not binomial and np.ptp(y[rows]) == 0:
            for j in cols:
                status[names[j]], reason[names[j]] = NOT_ESTIMABLE, f"the outcome is {y[rows][0]:g} in all {n_obs} observations"
            return GLMResult(_table(), n_obs=n_obs, n_clusters=n_clusters, rows_used=rows)
        try:
            with warnings.catch_warnings():
                # Convergence and perfect-prediction warnings are handled by the checks around the fit.
                warnings.simplefilter("ignore")
                fit = sm.GLM(endog, sub[:, cols], family=fam).fit(**fit_kwargs)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
            # a degenerate design the checks above did not anticipate: say so instead of crashing
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            for j in cols:
                status[names[j]], reason[names[j]] = NOT_ESTIMABLE, f"the GLM could not be fitted: {message}"
            return GLMResult(_table(), n_obs=n_obs, n_clusters=n_clusters, rows_used=rows)
        # -- numerical degeneracy that the LP tolerance let through ------------------------------
        params, bse = np.asarray(fit.params), np.asarray(fit.bse)
        bad = ~np.isfinite(params) | ~np.isfinite(bse)
        if binomial:
            bad |= (np.abs(params) > MAX_ABS_LOGODDS) | (bse > MAX_LOGODDS_SE)
        bad_terms = [j for k, j in enumerate(cols) if bad[k] and names[j] != INTERCEPT]
        if bad_terms:
            for j in bad_terms:
                k = list(cols).index(j)
                _mark(j, f"numerically degenerate fit (coef {params[k]:.3g}, se {bse[k]:.3g}): "
                         "near-separation; refitted without it")
            continue
        table = _table(fit, cols)
        return GLMResult(
            table, n_obs=n_obs, n_clusters=n_clusters, df_resid=float(fit.df_resid),
            scale=float(fit.scale), rows_used=rows, fit=fit,
        )
    raise RuntimeError("fit_glm did not settle")  # pragma: no cover - each pass removes a term


def as_settings(settings):
    """Accept an :class:`analysis.settings.AnalysisSettings`, a plain dict of its fields, or ``None``."""
    from analysis.settings import AnalysisSettings

    if isinstance(settings, AnalysisSettings):
        return settings
    given = dict(settings or {})
    known = set(AnalysisSettings.__dataclass_fields__)
    unknown = sorted(set(given) - known)
    if unknown:
        raise MosaicError(f"unknown analysis setting(s) {unknown}: use any of {sorted(known)}")
    return AnalysisSettings(**given)
