"""Query-level explanatory models (this project's extension of the paper's analysis).

Two models explain retrieval per query from the query's annotated attribute states:

``query_glm``
    Binomial GLM of the baseline (``oracle``) rank-1 hit of each valid query on its attribute
    states (:mod:`analysis.methods.query.glm`), with **identity-clustered CR2** standard errors (Bell &
    McCaffrey 2002) and Satterthwaite degrees of freedom, because queries of one identity share
    everything the model learnt about that person (:mod:`analysis.stats.cluster_robust`). Coding: one treatment-coded indicator per
    state, the reference being the group's most frequent annotated state; an unannotated state is
    its own level ``<group>=missing`` (option ``missing="level"``, never the reference) or the
    queries with any missing annotation are left out (``missing="drop"``). Separation is detected
    before fitting (:func:`analysis.stats.glm.fit_glm`): a level whose queries all hit (or all miss) is
    reported ``not estimable`` and its queries leave the fit (which is what the infinite MLE does to
    the other terms), so the rest stay estimable.

    The reference passes over a state whose queries all hit (or all miss), so that separation
    never takes the whole group with it. Rows at two levels (column ``level``):

    - ``"term"``: one per non-reference state: ``term`` (``group=state``), ``group``, ``state``,
      ``family``, ``reference`` (the group's reference state), ``coef`` (log-odds of a rank-1 hit
      relative to the reference), ``se`` (CR2, identity-clustered), ``ci_low``, ``ci_high`` (at
      ``ci_level``, t on ``df``), ``odds_ratio``, ``t``, ``df`` (Bell–McCaffrey / Satterthwaite),
      ``p``, ``n`` (valid queries in that state).
    - ``"group"``: one per group, the joint test that all of the group's estimable terms are zero,
      with the CR2 covariance and the approximate Hotelling T² reference (HTZ, Pustejovsky &
      Tipton 2018): ``F`` on ``df_num`` and ``df`` degrees of freedom, ``p``, ``n`` (queries fitted).

    Every row also says ``resampled`` = ``"identities"`` (the independent unit of the errors) and
    ``n_clusters`` (identities in the fit).

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
    training part only; the held-out R² of the offsets alone, beside the model's, says what the
    trees add.

    Explanation (``query_surrogate``): SHAP values of the model fitted on every row. The trees' come
    from XGBoost's own TreeSHAP (``Booster.predict(..., pred_contribs=True)``; shap's reader of
    XGBoost models is not needed), the offset's are exact for a linear term,
    ``m[g] * (dropped_g - mean(dropped_g))``; per row, base value plus all SHAP values equals the
    prediction. A group's per-row SHAP is the sum over its features (offset, ``dropped:``
    indicator, state one-hots); rows at three levels (``level``: ``"group"``, ``"family"``,
    ``"coarse_family"``; a family sums its groups' SHAP per row).

The columns of the three tables are the specs in :mod:`analysis.tables.specs_query`.

Options (``AnalysisSettings.options["explanatory"]``) are the fields of
:class:`ExplanatoryOptions`; ``alpha``, ``seed`` and ``baseline`` come from the shared settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from analysis.methods.query.glm import MISSING_LEVEL, StateDesign, query_glm, state_design
from analysis.methods.query.surrogate import DropSurrogate, SurrogateData, query_surrogate, surrogate_data
from analysis.stats.glm import as_settings, small_blas
from mosaic.core.errors import MosaicError

__all__ = ["query_level_explanatory", "ExplanatoryOptions", "query_glm", "query_surrogate", "state_design",
           "StateDesign", "SurrogateData", "DropSurrogate", "surrogate_data", "MISSING_LEVEL"]

METHOD = "explanatory"
MISSING_POLICIES = ("level", "drop")


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

    bounds: ClassVar[dict[str, tuple]] = {
        "min_clusters": (2, None), "n_folds": (2, None), "n_estimators": (1, None), "max_depth": (1, None),
        "learning_rate": (0, None), "min_child_weight": (0, None), "n_jobs": (-1, None),
    }

    def __post_init__(self) -> None:
        if self.missing not in MISSING_POLICIES:
            raise MosaicError(f"explanatory option missing={self.missing!r}: use one of {list(MISSING_POLICIES)}")
        if int(self.n_folds) < 2:
            raise MosaicError(f"explanatory option n_folds={self.n_folds}: use at least 2")

    @classmethod
    def from_settings(cls, settings) -> "ExplanatoryOptions":
        given = settings.options_for(METHOD, cls)
        return cls(**given)


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
