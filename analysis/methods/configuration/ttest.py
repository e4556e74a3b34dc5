"""The paper's per-group t-test of configuration mAP, with identity-resampled inference.

Per group, the mean mAP of the ``subset`` configurations with the group enabled minus those
without (columns in :mod:`analysis.methods.configuration.level`). The paper's Welch test treats the
configurations as independent samples; they share one test set, so the decision columns come from
the same difference recomputed on identity resamples (:mod:`analysis.methods.configuration.inference`), the
Welch numbers staying beside them as ``*_conditional``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.methods.configuration.inference import RESAMPLED_UNIT, WALD_COLUMNS, resampled_wald
from analysis.stats.corrections import add_corrections
from analysis.stats.status import NOT_ESTIMABLE, NOT_TESTED, OK

__all__ = ["config_ttest", "on_minus_off"]


def config_ttest(design, options, alpha: float,
                 ci_level: float = 0.95) -> pd.DataFrame:
    """Per group, mAP with the group on minus off: identity-resampled test, Welch's beside it."""
    from scipy import stats

    compared = design.configs["kind"].isin(options.ttest_kinds).to_numpy()
    y = design.configs["mAP"].to_numpy()[compared]
    resampled_map = design.outcomes.mean_ap(design.weights)[:, compared] if design.resamplable else None
    rows = []
    for g in design.groups:
        on_mask = design.indicators[g].to_numpy()[compared] == 1
        on, off = y[on_mask], y[~on_mask]
        row = {"group": g, "family": design.families[g], "n_on": int(len(on)), "n_off": int(len(off))}
        row.update(mean_on=on.mean() if len(on) else np.nan, mean_off=off.mean() if len(off) else np.nan)
        row["diff"] = row["mean_on"] - row["mean_off"]
        row.update(dict.fromkeys(_TTEST_NUMBERS, np.nan))
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
            ci = res.confidence_interval(confidence_level=ci_level)
            pooled = np.sqrt(((len(on) - 1) * on.var(ddof=1) + (len(off) - 1) * off.var(ddof=1)) / (len(on) + len(off) - 2))
            row.update(
                t_conditional=float(res.statistic), df_conditional=float(res.df), p_conditional=float(res.pvalue),
                ci_low_conditional=float(ci.low), ci_high_conditional=float(ci.high),
                cohens_d=float(row["diff"] / pooled) if pooled > 0 else np.nan,
            )
            if resampled_map is None:
                status, reason = NOT_TESTED, design.not_resamplable
            else:
                draws = on_minus_off(resampled_map, on_mask)
                wald = resampled_wald(np.array([row["diff"]]), draws[:, None], design.outcomes.n_ids, ci_level)
                row.update({k: float(wald[v][0]) for k, v in WALD_COLUMNS.items()})
        row.update(status=status, reason=reason)
        rows.append(row)
    frame = add_corrections(pd.DataFrame(rows), alpha, by=None)
    frame["resampled"] = RESAMPLED_UNIT
    frame["n_ids"] = design.outcomes.n_ids if design.outcomes is not None else 0
    order = ["group", "family", "n_on", "n_off", "mean_on", "mean_off", "diff", "se", "ci_low", "ci_high",
             "t", "df", "p", "p_holm", "p_bh", "reject_holm", "reject_bh", "cohens_d", "resampled", "n_ids", "n_resamples",
             "ci_low_conditional", "ci_high_conditional", "t_conditional", "df_conditional", "p_conditional",
             "status", "reason"]
    return frame[order]


def on_minus_off(resampled_map: np.ndarray, on_mask: np.ndarray) -> np.ndarray:
    """Mean mAP with the group on minus off, on every resample ``(B,)``."""
    return resampled_map[:, on_mask].mean(1) - resampled_map[:, ~on_mask].mean(1)


_TTEST_NUMBERS = ("se", "ci_low", "ci_high", "t", "df", "p", "n_resamples", "cohens_d", "ci_low_conditional",
                  "ci_high_conditional", "t_conditional", "df_conditional", "p_conditional")
