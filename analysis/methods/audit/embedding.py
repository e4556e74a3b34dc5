"""Model-agnostic audit of a ReID model's retrieval: which attribute states its errors and its
distances share, from its embeddings alone (no experts needed).

``attribute_confusion``
    For each valid query, the negatives ranked above its first true match (option
    ``negatives="above_first_match"``; only those within the trace's top-k lists are seen, so a
    query whose first match lies below rank k contributes its k nearest negatives), or its top-k
    negatives (``negatives="top_k"``). Per group, the **observed share** of those negatives whose
    state agrees with the query's (both annotated; distractors and unannotated images do not
    count), against the **chance share**: the frequency of the query's state among the gallery's
    annotated images of *other* identities, weighted by how many comparable negatives each query
    has. Their ratio is 1 for a model whose errors ignore the group; above 1, the model confuses
    people who share the state. Interval: identity-cluster bootstrap over query identities (all
    queries of a drawn identity kept; the ratio of resampled sums).

``distance_sharing``
    On the trace's seeded sample of different-identity (query, gallery) pairs (``/pairs``, written
    by ``mosaic trace --features``): a least-squares regression of the pair's distance on, per
    group, whether both images are annotated and whether they share the state. The ``share``
    coefficient, with its sign turned, is how much the distance **falls** when two different people
    share the group's state, adjusted for every other group; ``relative_fall`` divides it by the
    mean distance of the sampled pairs. Interval: a bootstrap that resamples **identities**, not
    pairs: each identity drawn with multinomial multiplicity, each pair weighted by the product of
    its two identities' multiplicities (the pigeonhole bootstrap of crossed designs, Owen 2007),
    since a pair depends on both people.

``model_comparison``
    When a trace holds several models (``embedding`` conditions), each against the first, on the
    same queries: clustered McNemar on rank-1 hits and clustered signed-rank on AP
    (:mod:`analysis.stats.clustered`), ΔmAP with its identity-cluster bootstrap interval and an identity
    sign-flip test (:mod:`analysis.stats.resampling`), Holm and Benjamini–Hochberg across the comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from analysis.settings import MethodNotApplicable
from analysis.stats.resampling import identity_sums, identity_weights, percentile_interval
from analysis.stats.status import NOT_ESTIMABLE, OK

__all__ = ["AuditOptions", "ConfusionCounts", "attribute_confusion", "audit_conditions", "confusion_counts",
           "crossed_resamples", "distance_sharing", "pair_design"]

NEGATIVE_MODES = ("above_first_match", "top_k")
RESAMPLED = "identities"


@dataclass(frozen=True)
class AuditOptions:
    """Knobs of the audit methods (``options["attribute_confusion"]`` / ``options["distance_sharing"]``).

    negatives : which negatives of a query ``attribute_confusion`` counts: ``above_first_match`` (ranked
        above its first true match, within the top-k lists) or ``top_k`` (every negative of its top-k).
    min_pairs : fewest sampled pairs that share (and that do not share) a group's state for its
        distance effect to be estimated.
    """

    negatives: str = "above_first_match"
    min_pairs: int = 20

    bounds: ClassVar[dict[str, tuple]] = {"min_pairs": (1, None)}
    choices: ClassVar[dict[str, tuple]] = {"negatives": NEGATIVE_MODES}


def _options(settings, method: str) -> AuditOptions:
    return AuditOptions(**settings.options_for(method, AuditOptions))


def audit_conditions(trace, settings) -> list[str]:
    """The conditions an audit describes: every ``embedding`` condition (one model each), else the baseline."""
    embedded = trace.condition_names("embedding")
    if embedded:
        return embedded
    if settings.baseline not in trace.condition_names():
        raise MethodNotApplicable(f"the trace has no {settings.baseline!r} condition and no embedding condition to audit")
    return [settings.baseline]


# --------------------------------------------------------------------------- attribute confusion
def _other_identity_shares(gallery_codes: np.ndarray, gallery_pid: np.ndarray, query_codes: np.ndarray,
                           query_pid: np.ndarray) -> np.ndarray:
    """Per query, the share of the gallery's annotated images of other identities in the query's state
    (NaN where the query's state is missing or no such image exists)."""
    known = gallery_codes >= 0
    n_states = int(max(gallery_codes.max(initial=-1), query_codes.max(initial=-1))) + 1
    total = np.bincount(gallery_codes[known], minlength=n_states).astype(float)
    own = pd.crosstab(gallery_pid[known], gallery_codes[known]).reindex(columns=range(n_states), fill_value=0)
    own_rows = own.reindex(query_pid, fill_value=0).to_numpy(dtype=float)             # (Q, S)
    q_known = query_codes >= 0
    state = np.where(q_known, query_codes, 0)
    agree = total[state] - own_rows[np.arange(len(state)), state]
    comparable = total.sum() - own_rows.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = agree / comparable
    return np.where(q_known & (comparable > 0), share, np.nan)


def _negatives(data, c: int, mode: str) -> np.ndarray:
    """(Q, K) which top-k entries of condition ``c`` count as the query's negatives."""
    index = np.asarray(data.topk_index[c])
    seen = index >= 0
    gallery_pid = np.asarray(data.gallery_pid)
    other = seen & (gallery_pid[np.where(seen, index, 0)] != np.asarray(data.query_pid)[:, None])
    if mode == "top_k":
        return other & np.asarray(data.valid)[:, None]
    position = np.arange(index.shape[1])[None, :]
    above = position < (np.asarray(data.first_match_rank[c])[:, None] - 1)
    return other & above & np.asarray(data.valid)[:, None]


@dataclass(frozen=True)
class ConfusionCounts:
    """Every counted negative of one model and group: its query (index and identity), its own identity,
    whether it agrees with the query's state, and the chance of agreeing (the query's chance share)."""

    query: np.ndarray
    query_pid: np.ndarray
    negative_pid: np.ndarray
    agree: np.ndarray
    chance: np.ndarray
    n_with_negatives: int


def confusion_counts(data, c: int, group_index: int, mode: str = "above_first_match") -> ConfusionCounts:
    """The negatives behind one row of ``attribute_confusion`` (condition ``c``, one group)."""
    q_pid, g_pid = np.asarray(data.query_pid), np.asarray(data.gallery_pid)
    negatives = _negatives(data, c, mode)
    index = np.where(negatives, np.asarray(data.topk_index[c]), 0)
    qc = np.asarray(data.query_states)[:, group_index].astype(np.int64)
    gc = np.asarray(data.gallery_states)[:, group_index].astype(np.int64)
    neighbour = gc[index]                                                            # (Q, K)
    chance = _other_identity_shares(gc, g_pid, qc, q_pid)
    counted = negatives & (neighbour >= 0) & (qc[:, None] >= 0) & np.isfinite(chance)[:, None]
    query, slot = np.nonzero(counted)
    return ConfusionCounts(query=query, query_pid=q_pid[query], negative_pid=g_pid[index[query, slot]],
                           agree=(neighbour[query, slot] == qc[query]).astype(float), chance=chance[query],
                           n_with_negatives=int(negatives.any(1).sum()))


CELL_BLOCK = 16384  # (query identity, negative identity) cells whose resample weights are held at once


def crossed_resamples(values: np.ndarray, first: np.ndarray, second: np.ndarray, n_resamples: int,
                      seed: int) -> np.ndarray:
    """Sums of ``values`` ((K, n)) on identity resamples of a crossed design: (B, K).

    Each entry belongs to two identities (a query's and a gallery image's); every identity is drawn
    with a multinomial multiplicity and an entry weighs the product of its two identities'
    multiplicities (the pigeonhole bootstrap, Owen 2007), so that neither side's dependence is
    taken for independence.
    """
    labels, member = np.unique(np.concatenate([first, second]), return_inverse=True)
    a, b = member[: first.size], member[first.size:]
    cells, cell = np.unique(np.stack([a, b], 1), axis=0, return_inverse=True)
    cell = cell.reshape(-1)
    sums = np.stack([np.bincount(cell, weights=v, minlength=len(cells)) for v in np.atleast_2d(values)], 1)
    weights = identity_weights(labels.size, n_resamples, seed)                       # (B, n_ids)
    out = np.zeros((weights.shape[0], sums.shape[1]))
    for start in range(0, len(cells), CELL_BLOCK):
        block = cells[start:start + CELL_BLOCK]
        out += (weights[:, block[:, 0]] * weights[:, block[:, 1]]) @ sums[start:start + CELL_BLOCK]
    return out


def attribute_confusion(trace, settings) -> pd.DataFrame:
    """One row per model (condition) and group: observed and chance share of agreeing negatives, their ratio."""
    data = trace.data
    options = _options(settings, "attribute_confusion")
    if data.top_k == 0:
        raise MethodNotApplicable("the trace keeps no top-k neighbours (--top-k 0): the negatives are not recorded")
    names = [str(n) for n in data.condition_name.tolist()]
    rows = []
    for condition in audit_conditions(trace, settings):
        for gi, group in enumerate(data.schema.groups):
            counts = confusion_counts(data, names.index(condition), gi, options.negatives)
            rows.append(_confusion_row(condition, group, counts, options.negatives, settings))
    return pd.DataFrame(rows)


def _confusion_row(condition, group, counts: ConfusionCounts, mode, settings, *, resample: str = "identities") -> dict:
    """One row of the table. ``resample="queries"`` resamples queries as if they were independent (a
    baseline for the calibration, never the table's)."""
    n = counts.agree.size
    row = {"condition": condition, "group": group.name, "family": group.family, "negatives": mode,
           "observed_share": np.nan, "chance_share": np.nan, "ratio": np.nan, "ci_low": np.nan, "ci_high": np.nan,
           "n_negatives": int(n), "n_ids": int(np.unique(counts.query_pid).size),
           "n_queries": int(np.unique(counts.query).size), "resampled": RESAMPLED, "status": OK, "reason": ""}
    if n == 0 or counts.chance.sum() <= 0:
        why = ("no query has a negative annotated for the group above its first true match"
               if counts.n_with_negatives else "no query has a negative above its first true match")
        return {**row, "status": NOT_ESTIMABLE, "reason": why}
    agree, expected = counts.agree.sum(), counts.chance.sum()
    row.update(observed_share=agree / n, chance_share=expected / n, ratio=agree / expected)
    if np.unique(np.concatenate([counts.query_pid, counts.negative_pid])).size < 2:
        return {**row, "status": NOT_ESTIMABLE, "reason": "one identity: no identity-level interval"}
    values = np.vstack([counts.agree, counts.chance])
    if resample == "queries":
        resampled = identity_sums(values, counts.query).resample(
            identity_weights(np.unique(counts.query).size, settings.n_bootstrap, settings.seed))
    else:
        resampled = crossed_resamples(values, counts.query_pid, counts.negative_pid, settings.n_bootstrap,
                                      settings.seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = resampled[:, 0] / resampled[:, 1]
    low, high = percentile_interval(ratios, settings.ci_level)
    row.update(ci_low=float(low[0]), ci_high=float(high[0]))
    return row


# ----------------------------------------------------------------------------- distance sharing
def pair_design(data, groups) -> tuple[np.ndarray, list[str]]:
    """(P, 1 + 2G) design of the sampled pairs: intercept, then per group ``known`` (both annotated)
    and ``share`` (both annotated, same state)."""
    q = np.asarray(data.query_states)[np.asarray(data.pair_query)]
    g = np.asarray(data.gallery_states)[np.asarray(data.pair_gallery)]
    columns, names = [np.ones(len(q))], ["intercept"]
    for gi, group in enumerate(groups):
        known = (q[:, gi] >= 0) & (g[:, gi] >= 0)
        columns += [known.astype(float), (known & (q[:, gi] == g[:, gi])).astype(float)]
        names += [f"known:{group}", f"share:{group}"]
    return np.column_stack(columns), names


def _estimable(X: np.ndarray, names: list[str], min_pairs: int) -> tuple[np.ndarray, dict[str, str]]:
    """Columns kept in the fit, and why each group's share column was left out."""
    keep = np.ones(X.shape[1], bool)
    why: dict[str, str] = {}
    for j, name in enumerate(names):
        if name.startswith("known:") and X[:, j].min() == X[:, j].max():
            keep[j] = False  # every pair annotated (or none): the intercept already holds it
        if name.startswith("share:"):
            n_share, n_known = int(X[:, j].sum()), int(X[:, j - 1].sum())
            if min(n_share, n_known - n_share) < min_pairs:
                keep[j] = False
                why[name.split(":", 1)[1]] = (f"{n_share} sampled pairs share the state and {n_known - n_share} do not "
                                              f"(fewer than {min_pairs}): sample more pairs")
    return keep, why


PAIR_BLOCK = 8192  # pairs whose outer products are held at once


def _weighted_fits(X: np.ndarray, y: np.ndarray, weights: np.ndarray, second: np.ndarray | None = None,
                   first_of: np.ndarray | None = None, second_of: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares coefficients on each resample: (B, p).

    ``weights`` (B, P) weighs each pair directly; or, with ``second``, ``weights`` and ``second`` are
    (B, n_ids) identity multiplicities and a pair weighs ``weights[:, first_of] * second[:, second_of]``
    (built block by block, never as a (B, P) matrix). Every resample's normal equations come from
    one matrix product, ``w @ [x x^T, x y]`` over the pairs, instead of one pass per resample.
    """
    B, p = weights.shape[0], X.shape[1]
    gram, rhs = np.zeros((B, p * p)), np.zeros((B, p))
    for start in range(0, X.shape[0], PAIR_BLOCK):
        block = slice(start, start + PAIR_BLOCK)
        x = X[block]
        w = weights[:, block] if second is None else weights[:, first_of[block]] * second[:, second_of[block]]
        gram += w @ (x[:, :, None] * x[:, None, :]).reshape(x.shape[0], p * p)
        rhs += w @ (x * y[block, None])
    gram = gram.reshape(B, p, p)
    out = np.full((B, p), np.nan)
    # a resample that leaves a column without variation (too few identities) identifies nothing: NaN,
    # left out of the percentile interval, rather than an arbitrary solution of a singular system
    ok = np.linalg.cond(gram) < 1e10
    if ok.any():
        out[ok] = np.linalg.solve(gram[ok], rhs[ok][:, :, None])[:, :, 0]
    return out


def distance_sharing(trace, settings) -> pd.DataFrame:
    """One row per model (condition) and group: the fall in different-identity distance when the state is shared."""
    data = trace.data
    if data.n_pairs == 0:
        raise MethodNotApplicable("the trace records no sampled image pairs (/pairs): trace exported features with "
                                  "mosaic trace --features, which samples them")
    options = _options(settings, "distance_sharing")
    names = [str(n) for n in data.condition_name.tolist()]
    groups = list(data.schema.group_names)
    X, columns = pair_design(data, groups)
    keep, why = _estimable(X, columns, options.min_pairs)
    kept = [n for n, k in zip(columns, keep) if k]
    Xk = X[:, keep]
    q_pid = np.asarray(data.query_pid)[np.asarray(data.pair_query)]
    g_pid = np.asarray(data.gallery_pid)[np.asarray(data.pair_gallery)]
    labels, member = np.unique(np.concatenate([q_pid, g_pid]), return_inverse=True)
    q_member, g_member = member[: q_pid.size], member[q_pid.size:]
    counts = identity_weights(labels.size, settings.n_bootstrap, settings.seed)        # (B, n_ids)
    rows = []
    for condition in audit_conditions(trace, settings):
        y = np.asarray(data.pair_distance[names.index(condition)], dtype=float)
        finite = np.isfinite(y)
        if not finite.all():
            raise MethodNotApplicable(f"the sampled pairs' distances are not recorded for {condition!r}")
        coef = _weighted_fits(Xk, y, np.ones((1, y.size)))[0]
        boot = _weighted_fits(Xk, y, counts, counts, q_member, g_member)
        scale = float(y.mean())
        for gi, group in enumerate(data.schema.groups):
            name = f"share:{group.name}"
            share = X[:, 2 * gi + 2].astype(bool)
            row = {"condition": condition, "group": group.name, "family": group.family,
                   "distance_fall": np.nan, "ci_low": np.nan, "ci_high": np.nan, "relative_fall": np.nan,
                   "mean_distance": scale, "n_pairs": int(y.size), "n_pairs_sharing": int(share.sum()),
                   "n_ids": int(labels.size), "resampled": RESAMPLED, "status": OK, "reason": ""}
            if name not in kept:
                rows.append({**row, "status": NOT_ESTIMABLE, "reason": why.get(group.name, "collinear")})
                continue
            j = kept.index(name)
            low, high = percentile_interval(-boot[:, j], settings.ci_level)
            rows.append({**row, "distance_fall": float(-coef[j]), "ci_low": float(low[0]), "ci_high": float(high[0]),
                         "relative_fall": float(-coef[j] / scale) if scale > 0 else np.nan})
    return pd.DataFrame(rows)
