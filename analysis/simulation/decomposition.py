"""Simulated traces with a planted decomposition: the test oracle of :mod:`analysis.methods.decomposition`.

:func:`simulate_decomposition` draws a trace holding ``oracle``, ``none``, ``code`` and, per group,
``fixed``, ``drop``, ``counterfactual`` and ``relabel`` conditions whose differences are known.
Effects are planted on the AP scale and vary by identity, in sign as well as in size, around a
population mean, so a test can ask whether an identity-cluster interval covers the population
value (which no single test set shows exactly).

The generative model, per valid query ``q`` of identity ``i`` and group ``g``::

    AP[oracle, q]            = a[i] + u[q]
    AP[fixed:g, q]           = AP[oracle, q] + information[i, g]
    AP[drop:g, q]            = AP[fixed:g, q] + capacity[i, g]
    AP[counterfactual:g, q]  = AP[oracle, q] + misrouting[i, g]
    AP[relabel:g, q]         = AP[oracle, q] + semantics[i, g]
    AP[none, q]              = AP[oracle, q] - gain[i]
    AP[code, q]              = AP[none, q] + share[i] * gain[i]

with ``a[i] ~ U(quality)``, ``u[q] ~ U(-query_spread, query_spread)`` and every identity effect
``mean + effect_sd * sqrt(3) * V``, ``V ~ U(-1, 1)`` (standard deviation ``effect_sd``), all
independent. The support of every AP is checked to lie in [0, 1], so no value is ever clipped and
the population values are exactly the planted means: ``E[AP[fixed:g] - AP[oracle]] =
information[g]`` and so on, and ``E[code - none] / E[oracle - none] = code_share``.

The rank-1 hit shares one uniform draw per query across conditions (``hit = U[q] < AP``), so rank-1
changes are paired as a model's are and their population values equal the AP ones. The first-match
rank, INP, CMC and top-k lists follow the hit (rank 1 exactly when hit); they are there so that the
trace is complete and reports render, not to be analysed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from analysis.methods.decomposition import QUANTITIES
from analysis.simulation.design import resolve_schema
from mosaic.core.errors import MosaicError
from mosaic.core.schema import AttributeSchema
from mosaic.tracefile import TraceData

__all__ = ["simulate_decomposition", "simulate_decomposition_data", "DECOMPOSITION_KINDS"]

# condition kinds the simulation can emit, in trace order
DECOMPOSITION_KINDS = ("oracle", "none", "code", "fixed", "drop", "counterfactual", "relabel")
_SQRT3 = float(np.sqrt(3.0))


def _planted(schema: AttributeSchema, planted: Mapping[str, Mapping[str, float]] | None) -> np.ndarray:
    """``(G, 4)`` planted population means in :data:`QUANTITIES` order (unlisted: 0)."""
    out = np.zeros((len(schema.groups), len(QUANTITIES)))
    quantities = list(QUANTITIES)
    for group, values in dict(planted or {}).items():
        g = schema.group_index(group)
        for quantity, value in dict(values).items():
            if quantity not in QUANTITIES:
                raise MosaicError(f"planted quantity {quantity!r} of group {group!r} is unknown: use {quantities}")
            value = float(value)
            if not np.isfinite(value):
                raise MosaicError(f"planted {quantity} of group {group!r} is {value}: use a finite number")
            out[g, quantities.index(quantity)] = value
    return out


def _check_support(low: float, high: float, shifts: list[tuple[float, float]], what: str) -> None:
    lo, hi = low + sum(s[0] for s in shifts), high + sum(s[1] for s in shifts)
    if lo < 0 or hi > 1:
        raise MosaicError(
            f"{what} can reach AP {lo:.3f}..{hi:.3f}, outside [0, 1]: narrow quality, or plant smaller effects "
            "or a smaller effect_sd (values are never clipped, so that the planted means stay exact)"
        )


def simulate_decomposition_data(
    *,
    n_ids: int = 200,
    queries_per_id: int = 3,
    gallery_per_id: int = 4,
    n_distractors: int | None = None,
    n_cameras: int = 4,
    groups: AttributeSchema | str | int | None = 4,
    planted: Mapping[str, Mapping[str, float]] | None = None,
    effect_sd: float = 0.03,
    quality: tuple[float, float] = (0.45, 0.75),
    query_spread: float = 0.05,
    oracle_gain: float = 0.25,
    code_share: float = 0.5,
    share_sd: float = 0.1,
    kinds: tuple[str, ...] = DECOMPOSITION_KINDS,
    n_layers: int = 2,
    top_k: int = 10,
    max_rank: int = 20,
    seed: int = 0,
) -> TraceData:
    """Draw a trace with a planted decomposition (see the module docstring).

    Parameters
    ----------
    n_ids, queries_per_id, gallery_per_id, n_distractors, n_cameras : the retrieval set.
    groups : schema, schema name, or number of synthetic groups ``g00, g01, ...``.
    planted : ``{group: {quantity: population mean}}`` with quantities ``information``,
        ``capacity``, ``misrouting``, ``semantics`` on the AP scale (negative = a loss).
    effect_sd : standard deviation over identities of every planted group effect and of the gain.
    quality : range of the identities' oracle AP; ``query_spread`` the queries' spread around it.
    oracle_gain : population mean of ``AP[oracle] - AP[none]``.
    code_share, share_sd : population mean and identity spread of the share of that gain the
        ``code`` condition reaches.
    kinds : which condition kinds to emit (``oracle`` is required); omit some to test traces
        that lack them.
    seed : everything is drawn from ``numpy.random.default_rng(seed)``.
    """
    unknown = sorted(set(kinds) - set(DECOMPOSITION_KINDS))
    if unknown:
        raise MosaicError(f"cannot simulate condition kinds {unknown}: choose from {list(DECOMPOSITION_KINDS)}")
    if "oracle" not in kinds:
        raise MosaicError("a simulated trace needs the 'oracle' condition: every quantity is measured against it")
    if n_ids < 2 or queries_per_id < 1 or gallery_per_id < 1 or n_cameras < 2:
        raise MosaicError("n_ids must be at least 2, queries_per_id and gallery_per_id at least 1, n_cameras at least 2")
    if effect_sd < 0 or share_sd < 0 or query_spread < 0:
        raise MosaicError("effect_sd, share_sd and query_spread must be non-negative")
    schema = resolve_schema(groups)
    means = _planted(schema, planted)
    G = len(schema.groups)
    rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ support (no clipping)
    low, high = float(quality[0]) - query_spread, float(quality[1]) + query_spread
    spread = _SQRT3 * effect_sd
    for g, group in enumerate(schema.groups):
        info, cap, mis, sem = means[g]
        for what, shifts in ((f"fixed:{group.name}", [(info - spread, info + spread)]),
                             (f"drop:{group.name}", [(info - spread, info + spread), (cap - spread, cap + spread)]),
                             (f"counterfactual:{group.name}", [(mis - spread, mis + spread)]),
                             (f"relabel:{group.name}", [(sem - spread, sem + spread)])):
            _check_support(low, high, shifts, what)
    gain_range = (oracle_gain - spread, oracle_gain + spread)
    share_range = (code_share - _SQRT3 * share_sd, code_share + _SQRT3 * share_sd)
    if gain_range[0] < 0 or share_range[0] < 0 or share_range[1] > 1:
        raise MosaicError("oracle_gain must exceed sqrt(3)*effect_sd and code_share ± sqrt(3)*share_sd lie in [0, 1]")
    _check_support(low, high, [(-gain_range[1], -gain_range[0])], "none")

    # ------------------------------------------------------------------ identities and images
    def uniform_effect(mean, sd, size):
        return mean + sd * _SQRT3 * rng.uniform(-1.0, 1.0, size=size)

    n_states = np.array([len(g.states) for g in schema.groups])
    pids = np.arange(1, n_ids + 1, dtype=np.int64)
    id_states = np.stack([rng.integers(0, k, size=n_ids) for k in n_states], axis=1).astype(np.int16)
    quality_i = rng.uniform(quality[0], quality[1], size=n_ids)
    effect = uniform_effect(means[None], effect_sd, (n_ids, G, len(QUANTITIES)))        # (I, G, 4)
    gain = uniform_effect(oracle_gain, effect_sd, n_ids)
    share = uniform_effect(code_share, share_sd, n_ids)

    q_id = np.repeat(np.arange(n_ids), queries_per_id)
    Q = q_id.size
    q_cam = rng.integers(1, n_cameras + 1, size=Q).astype(np.int64)
    n_distractors = 2 * n_ids if n_distractors is None else int(n_distractors)
    g_id = np.concatenate([np.repeat(np.arange(n_ids), gallery_per_id), np.full(n_distractors, -1)])
    g_pid = np.where(g_id >= 0, pids[np.maximum(g_id, 0)], 0).astype(np.int64)
    g_cam = rng.integers(1, n_cameras + 1, size=g_id.size).astype(np.int64)
    g_states = np.where((g_id >= 0)[:, None], id_states[np.maximum(g_id, 0)], -1).astype(np.int16)
    candidates = q_id[:, None] * gallery_per_id + np.arange(gallery_per_id)[None, :]
    is_match = g_cam[candidates] != q_cam[:, None]
    n_match = is_match.sum(1)
    valid = n_match > 0

    # ------------------------------------------------------------------ conditions and AP
    names, kind_of, target, shift = [], [], [], []
    oracle_ap = quality_i[q_id] + rng.uniform(-query_spread, query_spread, size=Q)

    def add(name, kind, group, delta):
        names.append(name), kind_of.append(kind), target.append(group), shift.append(delta)

    per_group = {"fixed": lambda g: effect[q_id, g, 0],
                 "drop": lambda g: effect[q_id, g, 0] + effect[q_id, g, 1],
                 "counterfactual": lambda g: effect[q_id, g, 2],
                 "relabel": lambda g: effect[q_id, g, 3]}
    for kind in DECOMPOSITION_KINDS:
        if kind not in kinds:
            continue
        if kind == "oracle":
            add("oracle", "oracle", "", np.zeros(Q))
        elif kind == "none":
            add("none", "none", "", -gain[q_id])
        elif kind == "code":
            add("code", "code", "", -gain[q_id] + share[q_id] * gain[q_id])
        else:
            for g, group in enumerate(schema.groups):
                add(f"{kind}:{group.name}", kind, group.name, per_group[kind](g))
    C = len(names)
    ap = oracle_ap[None, :] + np.asarray(shift)
    hit = rng.uniform(size=Q)[None, :] < ap
    # a miss puts the first true match behind a few negatives, more of them the lower the AP
    first = np.where(hit, 1, 2 + np.floor(rng.exponential(1.0, size=(C, Q)) * 20 * (1 - ap))).astype(np.int32)
    last = first + n_match[None, :] - 1 + np.floor(rng.exponential(1.0, size=(C, Q)) * 10 * (1 - ap))
    with np.errstate(divide="ignore", invalid="ignore"):
        inp = n_match[None, :] / last
    ap = np.where(valid[None, :], ap, np.nan).astype(np.float32)
    inp = np.where(valid[None, :], inp, np.nan).astype(np.float32)
    first = np.where(valid[None, :], first, -1).astype(np.int32)
    rank1 = hit & valid[None, :]
    n_valid = max(int(valid.sum()), 1)
    r = np.arange(1, max_rank + 1)
    cmc = ((first[..., None] >= 1) & (first[..., None] <= r)).sum(1) / n_valid

    topk_index, topk_distance = _topk(rng, first, candidates, is_match, g_id, q_id, top_k)
    enabled = np.array([[k not in ("none", "code") and not (k == "drop" and grp == name) for name in
                         schema.group_names] for k, grp in zip(kind_of, target)], dtype=bool).reshape(C, G)
    gates = _gates(schema, id_states[q_id], kind_of, target, enabled, n_layers, rng)
    settings = dict(
        n_ids=n_ids, queries_per_id=queries_per_id, gallery_per_id=gallery_per_id, n_distractors=n_distractors,
        n_cameras=n_cameras, effect_sd=effect_sd, quality=list(quality), query_spread=query_spread,
        oracle_gain=oracle_gain, code_share=code_share, share_sd=share_sd, kinds=list(kinds), seed=seed,
        planted={grp.name: dict(zip(QUANTITIES, map(float, means[g]))) for g, grp in enumerate(schema.groups)},
    )
    return TraceData(
        schema=schema,
        query_pid=pids[q_id],
        query_camid=q_cam,
        query_path=np.array([f"query/{p:04d}_c{c}s1_{i:06d}_00.jpg" for i, (p, c) in enumerate(zip(pids[q_id], q_cam))]),
        query_states=id_states[q_id],
        gallery_pid=g_pid,
        gallery_camid=g_cam,
        gallery_path=np.array([f"bounding_box_test/{p:04d}_c{c}s1_{i:06d}_00.jpg" for i, (p, c) in
                               enumerate(zip(g_pid, g_cam))]),
        gallery_states=g_states,
        condition_name=np.array(names),
        condition_kind=np.array(kind_of),
        condition_group=np.array(target),
        condition_router=np.array(["none" if k in ("none", "code") else "oracle" for k in kind_of]),
        enabled_groups=enabled,
        ap=ap, inp=inp, rank1=rank1, first_match_rank=first, valid=valid,
        topk_index=topk_index, topk_distance=topk_distance,
        mAP=np.nansum(ap.astype(np.float64), axis=1) / n_valid,
        mINP=np.nansum(inp.astype(np.float64), axis=1) / n_valid,
        cmc=cmc,
        gates=gates,
        layers=np.arange(12 - n_layers, 12, dtype=np.int32),
        provenance={"command": "analysis.simulation.decomposition", "seed": int(seed), "simulation": settings},
        dataset={"name": "simulated", "format": "simulation", "schema": schema.name},
    ).validate()


def _topk(rng, first, candidates, is_match, g_id, q_id, top_k):
    """Top-k lists with the query's first true match at its first-match rank, negatives elsewhere."""
    C, Q = first.shape
    N = g_id.size
    negatives = rng.integers(0, N, size=(C, Q, top_k))
    own = g_id[negatives] == q_id[None, :, None]
    negatives = np.where(own, np.flatnonzero(g_id < 0)[0] if (g_id < 0).any() else negatives, negatives)
    match = candidates[np.arange(Q), np.argmax(is_match, axis=1)]              # (Q,) one true match
    slot = np.arange(1, top_k + 1)[None, None, :]
    index = np.where(slot == first[..., None], match[None, :, None], negatives).astype(np.int32)
    distance = np.sort(rng.uniform(0.05, 1.2, size=(C, Q, top_k)), axis=-1).astype(np.float32)
    return index, distance


def _gates(schema, states, kind_of, target, enabled, n_layers, rng) -> np.ndarray:
    """Gates as each kind routes: one-hot by state, the state shares for ``fixed``, a derangement of
    the states for ``relabel``, another state on the queries for ``counterfactual``, none for ``code``."""
    C, G = enabled.shape
    Q = states.shape[0]
    gates = np.zeros((C, Q, n_layers, schema.n_experts), dtype=np.float32)
    offsets = np.asarray(schema.expert_offsets)
    n_states = np.array([len(g.states) for g in schema.groups])
    rows = np.arange(Q)
    for c in range(C):
        routed = states.astype(np.int64).copy()
        g_target = schema.group_index(target[c]) if target[c] else -1
        if kind_of[c] in ("counterfactual", "relabel") and n_states[g_target] > 1:
            k = n_states[g_target]
            step = rng.integers(1, k) if kind_of[c] == "relabel" else rng.integers(1, k, size=Q)
            routed[:, g_target] = (routed[:, g_target] + step) % k
        for g in np.flatnonzero(enabled[c]):
            if kind_of[c] == "fixed" and g == g_target:
                share = np.bincount(states[:, g], minlength=n_states[g]) / max(Q, 1)
                gates[c, :, :, offsets[g]:offsets[g] + n_states[g]] = share
            else:
                gates[c, rows, :, offsets[g] + routed[:, g]] = 1.0
    return gates


def simulate_decomposition(path: str | os.PathLike | None = None, **params: Any):
    """:func:`simulate_decomposition_data` as an :class:`analysis.Trace`, written to ``path`` if given.

    The planted means are in ``trace.provenance["simulation"]["planted"]`` and
    ``["code_share"]``.
    """
    data = simulate_decomposition_data(**params)
    from analysis.trace import Trace

    if path is not None:
        from mosaic.tracefile import write_trace

        path = write_trace(data, Path(path))
    return Trace(data, path=path)
