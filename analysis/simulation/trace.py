"""Simulated traces with planted effects: the test oracle of the whole analysis.

:func:`simulate` draws a retrieval experiment whose answer is known. Each attribute group ``g``
gets a planted effect ``effects[g]``: whenever a condition removes the group's information for a
query (``drop:g``, ``counterfactual:g``, ``none``, ``only:h`` for ``h != g``, a ``subset`` without
``g``), the query's match quality falls by ``effects[g]`` on the logit scale. Effects of several
removed groups add up on that scale.

The generative model, per condition ``c`` and valid query ``q`` of identity ``i``::

    z[c, q] = baseline_logit + b[i] + u[q] - sum_g effects[g] * removed[c, q, g]
              - sum_g d[i, g] * (removed[c, q, g] - 1/2)
              - drop_cost * (c is a drop) + e[c, q]

with ``b[i] ~ N(0, identity_sd)``, ``u[q] ~ N(0, query_sd)``, ``d[i, g] ~ N(0, effect_sd[g])`` and
``e[c, q] ~ Logistic(0, 1)``, so that, given ``b``, ``u`` and ``d``, the rank-1 log-odds are exactly
``z - e`` and identity ``i``'s effect of group ``g`` on them is exactly ``-(effects[g] + d[i, g])``:
the planted effect is the population mean over identities, and ``effects[g] = 0`` with
``effect_sd[g] > 0`` is a population-null world (see :func:`_identity_effect_terms`). A query whose routing under ``c`` equals its oracle routing (it
lacks every removed group's annotation) keeps its oracle outcome, as a real model would.

The retrieval outcome follows ``z`` coherently: the number of negatives ranked before the first
true match is ``floor(exp(-z))`` (zero, hence a rank-1 hit, exactly when ``z > 0``), each further
true match comes ``floor(exp(gap_logit - z + eta))`` negatives later, capped by the number of
negatives. AP, INP, rank-1, the first-match rank, the top-k list, mAP, mINP and CMC are all computed
from those positions, so they agree with each other exactly as an evaluation would make them.
Gates are oracle-like: one-hot per routed group at every layer, zero where the state is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from analysis.simulation.design import (
    DEFAULT_KINDS,
    condition_plan,
    resolve_effect_sd,
    resolve_effects,
    resolve_missing,
    resolve_schema,
    synthetic_schema,
)
from mosaic.core.errors import MosaicError
from mosaic.core.schema import AttributeSchema
from mosaic.tracefile import TraceData

__all__ = ["simulate", "simulate_data", "synthetic_schema", "DEFAULT_KINDS"]

def simulate_data(
    *,
    n_ids: int = 150,
    queries_per_id: int = 4,
    n_queries: int | None = None,
    gallery_per_id: int = 6,
    n_distractors: int | None = None,
    n_cameras: int = 6,
    groups: AttributeSchema | str | int | None = None,
    effects: Mapping[str, float] | None = None,
    effect_sd: float | Mapping[str, float] = 0.0,
    identity_sd: float = 0.5,
    query_sd: float = 0.5,
    baseline_logit: float = 2.0,
    gap_logit: float = 1.0,
    drop_cost: float = 0.0,
    missing_rate: float | Mapping[str, float] = 0.05,
    n_subsets: int = 16,
    kinds: Sequence[str] = DEFAULT_KINDS,
    n_layers: int = 2,
    top_k: int = 10,
    max_rank: int = 50,
    seed: int = 0,
) -> TraceData:
    """Draw a simulated experiment and return it as :class:`mosaic.tracefile.TraceData`.

    :func:`simulate` takes the same keywords, wraps the result in a ``Trace`` and can write it.

    Parameters
    ----------
    n_ids, queries_per_id, gallery_per_id : identities, and query / gallery images of each.
    n_queries : a total number of queries spread over the identities instead of ``queries_per_id``.
    n_distractors : gallery images of no identity (pid 0, no annotation); default ``2 * n_ids``.
    n_cameras : cameras; a query's true matches are its identity's images from other cameras.
    groups : the attribute schema: ``None`` for ``market1501``, a shipped schema name or YAML path,
        an :class:`~mosaic.core.schema.AttributeSchema`, or a number of synthetic groups (``g00``...).
    effects : ``{group: effect}``, the planted loss of match quality (logit scale) when the group's
        information is removed; unlisted groups get 0, so ``None`` gives a null trace. With
        ``effect_sd`` this is the *population mean* of the identities' effects.
    effect_sd : standard deviation of the effect across identities, one number for every group or
        ``{group: sd}`` (others 0). Identity ``i``'s effect of group ``g`` is
        ``effects[g] + effect_sd[g] * w[i, g]`` with ``w ~ N(0, 1)``, so ``effects[g] = 0`` with
        ``effect_sd > 0`` is a *population-null* world: the group matters to every identity, in
        either direction, but not to identities on average. 0 (the default) gives every identity the
        planted effect and reproduces the draws of earlier versions exactly.
    identity_sd, query_sd : standard deviations of the identity- and query-level random effects
        on match quality (shared by every condition, hence paired).
    baseline_logit : oracle match quality; rank-1 accuracy is about ``expit(baseline_logit)``.
    gap_logit : how far apart further true matches fall (larger = lower AP at the same rank-1).
    drop_cost : extra loss of every ``drop`` condition (capacity removed with the expert), so that
        ``drop`` and ``counterfactual`` can be told apart.
    missing_rate : share of identities whose state of a group is not annotated, or
        ``{group: share}`` (other groups 0.05); 1.0 gives a group that is never active.
    n_subsets : number of ``subset:<i>`` conditions (random halves of the groups).
    kinds : condition kinds to include (``oracle`` is required).
    n_layers, top_k, max_rank : gate layers, length of the top-k lists, CMC ranks.
    seed : everything is drawn from ``numpy.random.default_rng(seed)``.
    """
    if n_ids < 1 or queries_per_id < 1 or gallery_per_id < 1:
        raise MosaicError("n_ids, queries_per_id and gallery_per_id must be at least 1")
    if n_cameras < 2:
        raise MosaicError(f"n_cameras={n_cameras}: a true match needs another camera, use at least 2")
    schema = resolve_schema(groups)
    effect = resolve_effects(schema, effects)
    spread = resolve_effect_sd(schema, effect_sd)
    missing = resolve_missing(schema, missing_rate)
    rng = np.random.default_rng(seed)
    G = len(schema.groups)
    n_states = np.array([len(g.states) for g in schema.groups])

    # ---------------------------------------------------------------- identities and images
    pids = np.arange(1, n_ids + 1, dtype=np.int64)
    id_states = np.stack([rng.integers(0, k, size=n_ids) for k in n_states], axis=1).astype(np.int16)
    id_states[rng.random((n_ids, G)) < missing[None, :]] = -1
    id_effect = rng.normal(0.0, identity_sd, size=n_ids)

    if n_queries is None:
        q_id = np.repeat(np.arange(n_ids), queries_per_id)
    else:  # spread a fixed total as evenly as possible (Market: 3,368 queries of 750 ids)
        if n_queries < n_ids:
            raise MosaicError(f"n_queries={n_queries} leaves identities without a query: use at least n_ids={n_ids}")
        q_id = np.sort(np.arange(n_queries) % n_ids)
    q_pid = pids[q_id]
    q_cam = rng.integers(1, n_cameras + 1, size=q_id.size).astype(np.int64)
    q_states = id_states[q_id]

    n_distractors = 2 * n_ids if n_distractors is None else int(n_distractors)
    g_id = np.concatenate([np.repeat(np.arange(n_ids), gallery_per_id), np.full(n_distractors, -1)])
    g_pid = np.where(g_id >= 0, pids[np.maximum(g_id, 0)], 0).astype(np.int64)
    g_cam = rng.integers(1, n_cameras + 1, size=g_id.size).astype(np.int64)
    g_states = np.where((g_id >= 0)[:, None], id_states[np.maximum(g_id, 0)], -1).astype(np.int16)
    Q, N = q_id.size, g_id.size

    # True matches of each query (same identity, other camera); same-camera images of the
    # identity are removed from its ranking, everything of another identity is a negative.
    # Identity i's gallery images are the contiguous block i * gallery_per_id + (0..), so a
    # query's candidates are one small block, not a (Q, N) mask.
    candidates = q_id[:, None] * gallery_per_id + np.arange(gallery_per_id)[None, :]      # (Q, per_id)
    match = g_cam[candidates] != q_cam[:, None]
    n_match = match.sum(1)
    n_negative = np.full(q_id.size, N - gallery_per_id)
    valid = n_match > 0
    M = max(int(n_match.max()), 1)
    # gallery index of each query's k-th match in a fixed per-query order (padded with -1)
    match_order = np.take_along_axis(candidates, np.argsort(~match, axis=1, kind="stable"), 1)[:, :M]
    match_index = np.where(np.arange(M)[None, :] < n_match[:, None], match_order, -1)

    # ---------------------------------------------------------------- conditions and routing
    names, kind_of, target, enabled = condition_plan(schema, kinds, n_subsets, rng)
    C = len(names)
    kind_arr = np.array(kind_of)
    annotated = q_states >= 0                                           # (Q, G)
    removed = (~enabled[:, None, :]) & annotated[None, :, :]             # (C, Q, G)
    for c, (kind, group) in enumerate(zip(kind_of, target)):
        if kind == "counterfactual":
            g = schema.group_index(group)
            removed[c, :, g] = annotated[:, g]
    as_oracle = ~removed.any(-1)
    if drop_cost:
        as_oracle &= (kind_arr != "drop")[:, None]

    # ---------------------------------------------------------------- latent match quality
    query_effect = rng.normal(0.0, query_sd, size=Q)
    z = (
        baseline_logit
        + id_effect[q_id][None, :]
        + query_effect[None, :]
        - removed.astype(float) @ effect
        - _identity_effect_terms(removed, spread, q_id, n_ids, seed)
        - drop_cost * (kind_arr == "drop")[:, None]
        + rng.logistic(0.0, 1.0, size=(C, Q))
    )
    eta = rng.normal(0.0, 1.0, size=(C, Q, M))
    oracle = names.index("oracle")
    # identical routing -> identical outcome: copy the oracle's draws
    z = np.where(as_oracle, z[oracle][None, :], z)
    eta = np.where(as_oracle[..., None], eta[oracle][None], eta)

    # ---------------------------------------------------------------- ranks of the true matches
    cap = n_negative[None, :, None].astype(float)
    first = np.floor(np.exp(np.clip(-z, None, 40.0)))[..., None]
    gaps = np.floor(np.exp(np.clip(gap_logit - z[..., None] + eta[..., 1:], None, 40.0)))
    ahead = np.minimum(np.concatenate([first, first + np.cumsum(gaps, axis=-1)], axis=-1), cap)
    ranks = ahead + np.arange(1, M + 1)                                   # (C, Q, M) 1-based
    present = np.arange(M)[None, None, :] < n_match[None, :, None]
    k = np.arange(1, M + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(present, k / ranks, 0.0).sum(-1) / n_match[None, :]
        last_rank = np.take_along_axis(ranks, np.maximum(n_match - 1, 0)[None, :, None].repeat(C, 0), -1)[..., 0]
        inp = n_match[None, :] / last_rank
    first_rank = ranks[..., 0].astype(np.int32)
    ap = np.where(valid[None, :], ap, np.nan).astype(np.float32)
    inp = np.where(valid[None, :], inp, np.nan).astype(np.float32)
    first_rank = np.where(valid[None, :], first_rank, -1).astype(np.int32)
    rank1 = (first_rank == 1) & valid[None, :]

    # ---------------------------------------------------------------- top-k lists
    topk_index, topk_distance = _topk_lists(rng, ranks, present, match_index, g_id, q_id, n_negative, top_k)

    # ---------------------------------------------------------------- per-condition summaries
    n_valid = max(int(valid.sum()), 1)
    mAP = np.nansum(ap.astype(np.float64), axis=1) / n_valid
    mINP = np.nansum(inp.astype(np.float64), axis=1) / n_valid
    r = np.arange(1, max_rank + 1)
    cmc = ((first_rank[..., None] >= 1) & (first_rank[..., None] <= r)).sum(1) / n_valid

    gates = _oracle_gates(schema, q_states, enabled, kind_of, target, n_layers, rng)

    settings = dict(
        n_ids=n_ids, queries_per_id=queries_per_id, n_queries=n_queries, gallery_per_id=gallery_per_id,
        n_distractors=n_distractors, n_cameras=n_cameras, identity_sd=identity_sd, query_sd=query_sd,
        effect_sd={g.name: float(s) for g, s in zip(schema.groups, spread)},
        baseline_logit=baseline_logit, gap_logit=gap_logit, drop_cost=drop_cost,
        missing_rate={g.name: float(m) for g, m in zip(schema.groups, missing)}, n_subsets=n_subsets, kinds=list(kinds), n_layers=n_layers,
        top_k=top_k, max_rank=max_rank, seed=seed,
        effects={g.name: float(e) for g, e in zip(schema.groups, effect)},
    )
    return TraceData(
        schema=schema,
        query_pid=q_pid,
        query_camid=q_cam,
        query_path=np.array([f"query/{p:04d}_c{c}s1_{i:06d}_00.jpg" for i, (p, c) in enumerate(zip(q_pid, q_cam))]),
        query_states=q_states,
        gallery_pid=g_pid,
        gallery_camid=g_cam,
        gallery_path=np.array(
            [f"bounding_box_test/{p:04d}_c{c}s1_{i:06d}_00.jpg" for i, (p, c) in enumerate(zip(g_pid, g_cam))]
        ),
        gallery_states=g_states,
        condition_name=np.array(names),
        condition_kind=kind_arr,
        condition_group=np.array(target),
        enabled_groups=enabled,
        ap=ap,
        inp=inp,
        rank1=rank1,
        first_match_rank=first_rank,
        valid=valid,
        topk_index=topk_index,
        topk_distance=topk_distance,
        mAP=mAP,
        mINP=mINP,
        cmc=cmc,
        gates=gates,
        layers=np.arange(12 - n_layers, 12, dtype=np.int32),
        distance="cosine",
        provenance={"command": "analysis.simulate", "seed": int(seed), "simulation": settings},
        dataset={"name": "simulated", "format": "simulation", "schema": schema.name},
    ).validate()


def _identity_effect_terms(removed: np.ndarray, spread: np.ndarray, q_id: np.ndarray, n_ids: int, seed: int):
    """``(C, Q)`` identity-specific part of the loss of match quality, ``0`` when ``spread`` is all 0.

    Identity ``i``'s deviation ``d = spread[g] * w[i, g]`` is split evenly between the group's
    presence (``-d/2``) and absence (``+d/2``), so the loss from removing ``g`` is ``effects[g] + d``
    while, for ``effects[g] = 0``, an identity's outcomes with and without ``g`` are exchangeable:
    the population-null world is null for every outcome (rank-1, AP), not only on the logit scale
    where a symmetric spread would still move the mean AP through the curvature of the link.
    ``w`` comes from its own stream, so the other draws do not depend on ``effect_sd``.
    """
    if not np.any(spread):
        return 0.0
    w = np.random.default_rng([int(seed), 0x1D]).standard_normal((n_ids, spread.size)) * spread[None, :]
    half = 0.5 * w[q_id]                                                   # (Q, G)
    return np.einsum("cqg,qg->cq", 2.0 * removed.astype(float) - 1.0, half)


def _topk_lists(rng, ranks, present, match_index, g_id, q_id, n_negative, top_k):
    """Nearest-first gallery indices and distances agreeing with the simulated match ranks."""
    C, Q, M = ranks.shape
    N = g_id.size
    K = int(top_k)
    index = np.full((C, Q, K), -1, dtype=np.int32)
    # Negatives fill the slots that no true match occupies: a window of a random permutation of
    # the gallery, skipping the query's own identity, so they are distinct within a list.
    order = rng.permutation(N)
    own_max = int(np.bincount(g_id[g_id >= 0]).max()) if (g_id >= 0).any() else 0
    width = min(N, K + own_max)
    start = rng.integers(0, N, size=(C, Q))
    window = order[(start[..., None] + np.arange(width)) % N]          # (C, Q, width)
    foreign = g_id[window] != q_id[None, :, None]
    pick = np.argsort(~foreign, axis=-1, kind="stable")[..., :K]
    negatives = np.take_along_axis(window, pick, -1)
    n_ranked = (n_negative + present[0].sum(-1))[None, :, None]        # negatives + matches
    slot = np.arange(1, K + 1)[None, None, :]
    is_match_slot = np.zeros((C, Q, K), dtype=bool)
    match_at = np.full((C, Q, K), -1, dtype=np.int64)
    for m in range(M):  # M is small (matches per query); the rest is vectorised
        hit = present[..., m] & (ranks[..., m] <= K)
        c_idx, q_idx = np.nonzero(hit)
        s = ranks[c_idx, q_idx, m].astype(int) - 1
        is_match_slot[c_idx, q_idx, s] = True
        match_at[c_idx, q_idx, s] = match_index[q_idx, m]
    # the j-th negative slot takes the j-th negative of the window
    neg_rank = np.cumsum(~is_match_slot, axis=-1) - 1
    filled = np.where(is_match_slot, match_at, np.take_along_axis(negatives, np.minimum(neg_rank, K - 1), -1))
    index[:] = np.where(slot <= n_ranked, filled, -1)
    distance = np.sort(rng.uniform(0.05, 1.2, size=(C, Q, K)), axis=-1).astype(np.float32)
    distance = np.where(index >= 0, distance, np.nan).astype(np.float32)
    return index, distance


def _oracle_gates(schema, q_states, enabled, kind_of, target, n_layers, rng) -> np.ndarray:
    """One-hot gates per routed group (the other identity's state under a counterfactual)."""
    C, G = enabled.shape
    Q = q_states.shape[0]
    gates = np.zeros((C, Q, n_layers, schema.n_experts), dtype=np.float32)
    offsets = np.asarray(schema.expert_offsets)
    n_states = np.array([len(g.states) for g in schema.groups])
    q_idx = np.arange(Q)
    for c in range(C):
        states = q_states.astype(np.int64).copy()
        if kind_of[c] == "counterfactual":
            g = schema.group_index(target[c])
            shift = rng.integers(1, n_states[g], size=Q)  # another identity's, hence a different, state
            states[:, g] = np.where(states[:, g] >= 0, (states[:, g] + shift) % n_states[g], -1)
        for g in np.flatnonzero(enabled[c]):
            on = states[:, g] >= 0
            gates[c, q_idx[on], :, offsets[g] + states[on, g]] = 1.0
    return gates


def simulate(path: str | os.PathLike | None = None, **params: Any) -> Any:
    """Simulate a trace with planted per-group effects; write it to ``path`` if given.

    Parameters
    ----------
    path : where to write the HDF5 trace (atomically); ``None`` keeps it in memory.
    **params : the settings of the simulation, every keyword of :func:`simulate_data` (identities,
        queries, groups, planted ``effects``, random effects, conditions, ``seed``).

    Returns
    -------
    analysis.trace.Trace
        The trace; the planted effects are in ``provenance["simulation"]["effects"]``.
    """
    data = simulate_data(**params)
    from analysis.trace import Trace

    if path is not None:
        from mosaic.tracefile import write_trace

        path = write_trace(data, Path(path))
    return Trace(data, path=path)
