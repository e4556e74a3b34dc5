"""Planted embeddings: a trace whose reliance on each attribute group is known, to check the audit.

Every identity gets attribute states (drawn per group from seeded state frequencies, a few missing)
and a random identity vector; every image's embedding is

    identity vector + sum over groups of weight[g, identity] * state vector(g, state) + noise,

so two people who share a state of a weighted group are closer than chance and a group of weight 0
plays no part. ``identity_spread`` lets each identity's weight vary around the group's weight
(``weight[g, i] = weight[g] + spread * z``, z standard normal): with every weight 0 and a spread,
the world is a **population null** (no reliance on average, though each identity has some), the
world on which pseudo-replication shows. The trace is built by the same function as
``mosaic trace --features`` (:func:`mosaic.tracefile.embedding.embedding_trace`). Torch-free.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from analysis.simulation.design import resolve_effects, resolve_missing, resolve_schema
from mosaic.core.errors import MosaicError
from mosaic.core.schema import AttributeSchema
from mosaic.tracefile import TraceData
from mosaic.tracefile.embedding import embedding_trace

__all__ = ["PLANTED_WEIGHTS", "planted_embeddings"]

# colour heavy, then build and accessories lighter, bags zero (the check of docs/validation.md)
PLANTED_WEIGHTS = {"upcolour": 1.0, "downcolour": 0.7, "gender": 0.5, "bag": 0.0, "backpack": 0.0, "handbag": 0.0}


def planted_embeddings(
    weights: Mapping[str, float] = PLANTED_WEIGHTS,
    *,
    n_ids: int = 200,
    queries_per_id: int = 2,
    gallery_per_id: int = 4,
    dim: int = 64,
    noise: float = 2.5,
    identity_spread: float = 0.0,
    missing: float = 0.05,
    pairs_per_query: int = 20,
    top_k: int = 10,
    schema: str | AttributeSchema = "market1501",
    seed: int = 0,
) -> TraceData:
    """A trace of one model (``embedding:planted``) whose embeddings rely on the groups by ``weights``
    (groups not named weigh 0)."""
    schema = resolve_schema(schema)
    weight = resolve_effects(schema, weights)         # an unknown group or a non-finite weight: MosaicError
    missing_rate = resolve_missing(schema, missing)   # outside [0, 1]: MosaicError
    if n_ids < 2 or queries_per_id < 1 or gallery_per_id < 1 or dim < 1:
        raise MosaicError("planted embeddings need n_ids >= 2 and at least one query, gallery image and dimension")
    rng = np.random.default_rng([int(seed), 2028])
    G = len(schema.groups)
    states = np.empty((n_ids, G), np.int16)
    for gi, group in enumerate(schema.groups):
        shares = rng.dirichlet(np.full(len(group.states), 2.0))
        states[:, gi] = rng.choice(len(group.states), size=n_ids, p=shares)
    states[rng.random((n_ids, G)) < missing_rate[None, :]] = -1
    identity = rng.normal(size=(n_ids, dim)) / np.sqrt(dim)
    state_vectors = [rng.normal(size=(len(g.states), dim)) / np.sqrt(dim) for g in schema.groups]
    per_identity = weight[None, :] + identity_spread * rng.normal(size=(n_ids, G))
    clean = identity.copy()
    for gi in range(G):
        known = states[:, gi] >= 0
        clean[known] += per_identity[known, gi, None] * state_vectors[gi][states[known, gi]]

    def images(per_id: int, cameras: np.ndarray, split: str) -> dict[str, np.ndarray]:
        pid = np.repeat(np.arange(1, n_ids + 1), per_id)
        camid = np.tile(cameras, n_ids)
        return {"pid": pid, "camid": camid, "states": states[pid - 1],
                "path": np.array([f"{split}/{p:04d}_c{c}_{i:02d}.jpg" for i, (p, c) in enumerate(zip(pid, camid))]),
                "features": clean[pid - 1] + noise * rng.normal(size=(pid.size, dim)) / np.sqrt(dim)}

    query = images(queries_per_id, np.ones(queries_per_id, np.int64), "query")
    gallery = images(gallery_per_id, 2 + np.arange(gallery_per_id) % 5, "bounding_box_test")
    return embedding_trace(
        schema, query, gallery, {"planted": (query["features"], gallery["features"])}, top_k=top_k,
        pairs_per_query=pairs_per_query, seed=seed,
        provenance={"simulation": {"weights": dict(weights), "n_ids": n_ids, "dim": dim, "noise": noise,
                                   "identity_spread": identity_spread, "seed": seed}},
        dataset={"name": "planted embeddings", "format": "simulated"},
    )
