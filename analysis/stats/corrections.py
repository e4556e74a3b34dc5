"""Multiple-testing corrections that tolerate untestable entries.

``statsmodels.stats.multitest.multipletests`` propagates one NaN into every adjusted p-value
of the family (``fdr_bh`` returns all NaN). A degenerate comparison (no discordant pairs, every
difference zero) is *not tested*, not evidence, so here the adjustment runs over the finite
p-values only, and a NaN stays NaN in its own slot without touching the others.

Both functions return adjusted p-values in the input order, clipped to 1, and agree with
``multipletests(p, method="holm" | "fdr_bh")`` whenever every entry is finite.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pandas as pd

from analysis.stats.status import OK

__all__ = ["holm", "benjamini_hochberg", "adjust", "add_corrections", "CORRECTIONS"]


def _finite_only(adjust_finite: Callable[[np.ndarray], np.ndarray]):
    """Wrap an adjustment of a finite vector so that NaN entries are skipped and kept."""

    def adjusted(p) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if p.ndim != 1:
            raise ValueError(f"p-values must be one-dimensional, got shape {p.shape}")
        out = np.full(p.shape, np.nan)
        finite = np.isfinite(p)
        if finite.any():
            values = p[finite]
            if np.any((values < 0) | (values > 1)):
                raise ValueError("p-values must lie in [0, 1]")
            out[finite] = adjust_finite(values)
        return out

    adjusted.__name__ = adjust_finite.__name__
    adjusted.__doc__ = adjust_finite.__doc__
    return adjusted


def _stepwise(p: np.ndarray, step: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """The frame both adjustments share: ``step`` maps the ascending p-values (and the family size)
    to adjusted ones, which are capped at 1 and put back in the p-values' order."""
    order = np.argsort(p, kind="stable")
    out = np.empty(p.size)
    out[order] = np.minimum(step(p[order], p.size), 1.0)
    return out


@_finite_only
def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment (family-wise error rate under any dependence).

    NaN entries are left out of the family and stay NaN.
    """
    return _stepwise(p, lambda ordered, m: np.maximum.accumulate((m - np.arange(m)) * ordered))


@_finite_only
def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg step-up adjustment (false discovery rate, independent or PRDS tests).

    NaN entries are left out of the family and stay NaN.
    """
    return _stepwise(p, lambda ordered, m: np.minimum.accumulate((ordered * m / np.arange(1, m + 1))[::-1])[::-1])


# Name used in table columns (``p_holm``, ``p_bh``) -> adjustment.
CORRECTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "holm": holm,
    "bh": benjamini_hochberg,
}


def adjust(p, method: str) -> np.ndarray:
    """Adjust ``p`` with a correction from :data:`CORRECTIONS` (``"holm"`` or ``"bh"``)."""
    try:
        return CORRECTIONS[method](p)
    except KeyError:
        raise ValueError(f"unknown correction {method!r}: use one of {sorted(CORRECTIONS)}") from None


def add_corrections(frame: pd.DataFrame, alpha: float, *, by: str | Iterable[str] | None = "comparison",
                    p_column: str = "p") -> pd.DataFrame:
    """Add ``p_<correction>`` and ``reject_<correction>`` columns for every correction, within each family.

    A family is the rows sharing the ``by`` column(s) (``None``: the whole table). Rows whose
    ``status`` is not ``"ok"`` or whose p is not finite keep NaN, never join a family and are never
    rejected, so one untestable row cannot poison the others' adjusted p-values.
    """
    frame = frame.copy()
    p = frame[p_column].to_numpy(dtype=float)
    tested = np.isfinite(p)
    if "status" in frame:
        tested &= (frame["status"] == OK).to_numpy()
    p = np.where(tested, p, np.nan)
    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    families = frame.groupby(keys, sort=False).indices.values() if keys else [np.arange(len(frame))]
    for name, correction in CORRECTIONS.items():
        adjusted = np.full(len(frame), np.nan)
        for index in families:
            adjusted[index] = correction(p[index])
        frame[f"p_{name}"] = adjusted
        frame[f"reject_{name}"] = np.nan_to_num(adjusted, nan=1.0) <= alpha
    return frame
