"""``model_comparison``: paired tests of two models traced from their exported features, query by query.

A trace made from several features files (``mosaic trace --features A --features B``) holds one
``embedding`` condition per model on the same queries. Each later model is compared with the first
(``delta = model - baseline``), with the identity as the independent unit, exactly as the paired
tests of routing conditions (:mod:`analysis.methods.paired`): a clustered McNemar test on rank-1 hits
(Durkalski et al. 2003) with its Δrank-1 interval and a clustered signed-rank test on AP
(Datta & Satten 2008) from :mod:`analysis.stats.clustered`; ΔmAP with an identity-cluster bootstrap
interval and an identity sign-flip test from :mod:`analysis.stats.resampling`. Holm and
Benjamini–Hochberg adjust each p-value column across the comparisons.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.settings import MethodNotApplicable
from analysis.stats.clustered import clustered_mcnemar, clustered_signed_rank
from analysis.stats.corrections import add_corrections
from analysis.stats.resampling import cluster_bootstrap, sign_flip
from analysis.stats.status import OK

__all__ = ["model_comparison"]


def model_comparison(trace, settings) -> pd.DataFrame:
    """One row per model after the first: its paired tests against the first model."""
    data = trace.data
    models = trace.condition_names("embedding")
    if len(models) < 2:
        raise MethodNotApplicable("the trace holds fewer than two models' features (embedding conditions) to compare: "
                                  "trace several, mosaic trace --features A --features B")
    valid = np.asarray(data.valid, bool)
    pid = np.asarray(data.query_pid)[valid]
    base = trace.condition_index(models[0])
    rows = []
    for model in models[1:]:
        c = trace.condition_index(model)
        hits_b, hits_c = np.asarray(data.rank1[base])[valid], np.asarray(data.rank1[c])[valid]
        ap_b, ap_c = np.asarray(data.ap[base], float)[valid], np.asarray(data.ap[c], float)[valid]
        mcnemar = clustered_mcnemar(hits_b, hits_c, pid, ci_level=settings.ci_level)
        signed = clustered_signed_rank(ap_b, ap_c, pid)
        delta = ap_c - ap_b
        boot = cluster_bootstrap(delta, pid, n_resamples=settings.n_bootstrap, seed=settings.seed)
        low, high = boot.interval(settings.ci_level)
        flip = sign_flip(delta, pid, n_resamples=settings.n_permutations, seed=settings.seed)
        rows.append({
            "condition": model, "baseline": models[0], "unit": "identity",
            "n": int(valid.sum()), "n_ids": int(np.unique(pid).size),
            "map_baseline": float(np.mean(ap_b)), "map_condition": float(np.mean(ap_c)),
            "delta_map": float(boot.estimate[0]), "ci_low": float(low[0]), "ci_high": float(high[0]),
            "rank1_baseline": mcnemar["rank1_baseline"], "rank1_condition": mcnemar["rank1_condition"],
            "delta_rank1": mcnemar["delta_rank1"], "rank1_ci_low": mcnemar["ci_low"],
            "rank1_ci_high": mcnemar["ci_high"], "p_mcnemar": mcnemar["p"], "p_signed_rank": signed["p"],
            "status": OK if mcnemar["status"] == OK and signed["status"] == OK else str(
                mcnemar["status"] if mcnemar["status"] != OK else signed["status"]),
            "p": float(flip.p[0]),
            "reason": "; ".join(r for r in (mcnemar["reason"], signed["reason"]) if r),
        })
    return add_corrections(pd.DataFrame(rows), alpha=settings.alpha, by=None)
