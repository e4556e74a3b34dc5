"""Kendall's coefficient of concordance W: how alike several raters rank the same items.

One implementation for the analysis (the methods' agreement on the groups' order,
:mod:`analysis.methods.ranking`) and the study (the seeds' agreement, :mod:`analysis.studies.study`).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["kendalls_w"]


def kendalls_w(ranks: np.ndarray) -> dict[str, float]:
    """Kendall's W of ``ranks`` (``(m raters, n items)``, each row a ranking, ties averaged), tie-corrected,
    with the Friedman chi-square test.

    ``W = 12 S / (m^2 (n^3 - n) - m sum T)``, ``S`` the squared deviations of the items' rank sums from
    their mean ``m (n + 1) / 2``, ``T = sum(t^3 - t)`` over each rater's tie groups;
    ``chi2 = m (n - 1) W`` on ``n - 1`` degrees of freedom. Undefined (NaN, and NaN degrees of
    freedom) with fewer than two raters or two items; NaN when every rater ties every item.
    """
    ranks = np.asarray(ranks, dtype=float)
    m, n = ranks.shape
    if m < 2 or n < 2:
        return {"w": np.nan, "chi2": np.nan, "df": np.nan, "p": np.nan}
    column_sums = ranks.sum(0)
    s = float(np.sum((column_sums - m * (n + 1) / 2.0) ** 2))
    ties = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts**3 - counts))
    denominator = m**2 * (n**3 - n) - m * ties
    if denominator <= 0:
        return {"w": np.nan, "chi2": np.nan, "df": float(n - 1), "p": np.nan}
    w = 12.0 * s / denominator
    chi2 = m * (n - 1) * w
    return {"w": w, "chi2": chi2, "df": float(n - 1), "p": float(stats.chi2.sf(chi2, n - 1))}
