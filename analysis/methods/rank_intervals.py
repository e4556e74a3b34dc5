"""Each identity-valid method's group scores recomputed on identity resamples, for rank intervals.

A rank is a statistic of the whole set of scores, so its uncertainty comes from resampling the
data behind *all* scores at once. Every function here returns one method's scores on the same
identity-cluster bootstrap resamples (:func:`analysis.stats.resampling.identity_weights` with the
analysis seed, over the identities of the valid queries), ``(n_resamples, groups)``, NaN where the
method does not score a group. Only methods whose estimate is a function of per-identity sums (or
a model refitted on them) appear: ΔmAP and Δrank-1 of the paired comparisons and the
configuration-level coefficients and differences. A method is in the consensus ranking only if it
has a replicate function here (:data:`analysis.methods.ranking.SCORE_SOURCES`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.methods.paired import comparisons
from analysis.stats.resampling import identity_sums, identity_weights

__all__ = ["paired_replicates", "configuration_replicates"]


def paired_replicates(trace, settings, *, comparison: str, outcome: str) -> pd.DataFrame | None:
    """ΔmAP (``outcome="ap"``) or Δrank-1 (``"rank1"``) of every ``comparison`` condition, per resample."""
    data = getattr(trace, "data", trace)
    present = [c for c in comparisons(trace, settings) if c.index >= 0 and c.comparison == comparison]
    valid = np.asarray(data.valid, dtype=bool)
    if not present or not valid.any():
        return None
    values = np.asarray(data.ap if outcome == "ap" else data.rank1, dtype=np.float64)
    delta = values[[c.index for c in present]][:, valid] - values[present[0].baseline_index][valid][None, :]
    sums = identity_sums(delta, np.asarray(data.query_pid)[valid])
    boot = sums.resample(identity_weights(sums.n_identities, settings.n_bootstrap, settings.seed))
    groups = list(data.schema.group_names)
    return pd.DataFrame(boot, columns=[c.group for c in present]).reindex(columns=groups)


def configuration_replicates(trace, settings, *, table: str) -> pd.DataFrame | None:
    """A configuration-level table's group estimates, refitted on every resample."""
    from analysis.methods.configuration.level import group_replicates

    return group_replicates(trace, settings, table)
