"""The trace of exported features, from arrays: retrieval of each model plus sampled pairs (torch-free).

:func:`embedding_trace` turns query and gallery images (identity, camera, path, attribute states)
and one or more models' features into a :class:`~mosaic.tracefile.TraceData` with one
``embedding:<model>`` condition per model: retrieval scored by the project's protocol
(:func:`mosaic.core.metrics.evaluate`) on L2-normalised features, no experts (no layers, no gates,
router ``none``), and a seeded sample of different-identity (query, gallery) pairs with their
distance under every model (``/pairs``, read by the audit's ``distance_sharing``: the top-k lists
only hold each query's nearest images). ``mosaic trace --features`` (:mod:`mosaic.tracing.embeddings`)
and the planted-embedding simulation (``analysis.simulation.embeddings``) both build traces here.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np

from mosaic.conditions import EMBEDDING_KIND, embedding_condition_name
from mosaic.core.errors import MosaicError
from mosaic.core.schema import AttributeSchema
from mosaic.tracefile.data import TraceData

__all__ = ["DEFAULT_PAIRS_PER_QUERY", "QUERY_BLOCK", "embedding_trace", "pair_distance", "retrieval_distance",
           "sample_pairs"]

DEFAULT_PAIRS_PER_QUERY = 20
QUERY_BLOCK = 1024  # queries whose distances are held at once


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _from_cosine(cos: np.ndarray, kind: str) -> np.ndarray:
    if kind == "cosine":
        return 1.0 - cos
    return np.sqrt(np.clip(2.0 - 2.0 * cos, 0.0, None))  # |a - b| for unit vectors


def retrieval_distance(q: np.ndarray, g: np.ndarray, kind: str) -> np.ndarray:
    """Distance of every query row of ``q`` to every gallery row of ``g`` (unit vectors): (Q, G)."""
    return _from_cosine(q @ g.T, kind)


def pair_distance(q: np.ndarray, g: np.ndarray, kind: str) -> np.ndarray:
    """Distance of each row of ``q`` to the same row of ``g`` (unit vectors): (P,)."""
    return _from_cosine(np.einsum("ij,ij->i", q, g), kind)


def sample_pairs(query_pid: np.ndarray, gallery_pid: np.ndarray, gallery_states: np.ndarray, per_query: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of ``per_query`` gallery images of other identities for every query.

    Only gallery images with an attribute annotation (at least one group known; never a distractor)
    are drawn, without replacement within a query, so each pair's shared states are defined.
    """
    query_pid, gallery_pid = np.asarray(query_pid), np.asarray(gallery_pid)
    annotated = (np.asarray(gallery_states) >= 0).any(1) & (gallery_pid > 0)
    candidates = np.flatnonzero(annotated)
    if per_query <= 0 or candidates.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rng = np.random.default_rng([int(seed), 28])
    queries, gallery = [], []
    for q, pid in enumerate(query_pid.tolist()):
        pool = candidates[gallery_pid[candidates] != pid]
        take = min(per_query, pool.size)
        if take:
            gallery.append(rng.choice(pool, size=take, replace=False))
            queries.append(np.full(take, q, np.int64))
    if not gallery:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(queries), np.concatenate(gallery).astype(np.int64)


def _evaluate(qf, gf, query, gallery, kind: str, top_k: int, max_rank: int) -> dict[str, np.ndarray]:
    """Per-query metrics and top-k neighbours of one model, evaluated in query blocks."""
    from mosaic.core.metrics import evaluate

    Q = qf.shape[0]
    out = {"ap": np.full(Q, np.nan, np.float32), "inp": np.full(Q, np.nan, np.float32),
           "first_match_rank": np.full(Q, -1, np.int32), "valid": np.zeros(Q, bool),
           "topk_index": np.full((Q, top_k), -1, np.int32), "topk_distance": np.full((Q, top_k), np.nan, np.float32)}
    for start in range(0, Q, QUERY_BLOCK):
        stop = min(Q, start + QUERY_BLOCK)
        distmat = retrieval_distance(qf[start:stop], gf, kind)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a block without valid queries
            ev = evaluate(distmat, query["pid"][start:stop], gallery["pid"], query["camid"][start:stop],
                          gallery["camid"], max_rank=max_rank, topk=top_k)
        valid = np.asarray(ev.valid, bool)
        out["valid"][start:stop] = valid
        out["ap"][start:stop] = np.where(valid, ev.ap, np.nan)
        out["inp"][start:stop] = np.where(valid, ev.inp, np.nan)
        out["first_match_rank"][start:stop] = np.where(valid, ev.first_match_rank, -1)
        if top_k and ev.topk_index is not None:
            index = np.asarray(ev.topk_index)[:, :top_k]
            k = index.shape[1]
            out["topk_index"][start:stop, :k] = index
            out["topk_distance"][start:stop, :k] = np.where(index >= 0, np.asarray(ev.topk_distance)[:, :k], np.nan)
    return out


def embedding_trace(
    schema: AttributeSchema,
    query: Mapping[str, np.ndarray],
    gallery: Mapping[str, np.ndarray],
    features: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    top_k: int = 10,
    max_rank: int = 50,
    distance: str = "cosine",
    pairs_per_query: int = DEFAULT_PAIRS_PER_QUERY,
    seed: int = 0,
    provenance: Mapping[str, Any] | None = None,
    dataset: Mapping[str, Any] | None = None,
    progress=None,
) -> TraceData:
    """The trace of ``features`` (model name -> (query features (Q, D), gallery features (G, D)), rows
    in the order of ``query`` / ``gallery``, which hold ``pid``, ``camid``, ``path`` and ``states``)."""
    if distance not in ("cosine", "euclidean"):
        raise MosaicError(f"--distance must be cosine or euclidean, got {distance!r}")
    if top_k < 0 or max_rank < 1:
        raise MosaicError(f"--top-k must be >= 0 and --max-rank >= 1, got {top_k} and {max_rank}")
    if not features:
        raise MosaicError("no model's features to trace: pass at least one features file")
    images = {s: {"pid": np.asarray(t["pid"], np.int64), "camid": np.asarray(t["camid"], np.int64)}
              for s, t in (("query", query), ("gallery", gallery))}
    pair_query, pair_gallery = sample_pairs(images["query"]["pid"], images["gallery"]["pid"], gallery["states"],
                                            pairs_per_query, seed)
    models = list(features)
    C, Q, G = len(models), len(images["query"]["pid"]), len(schema.groups)
    arrays = {name: [] for name in ("ap", "inp", "first_match_rank", "topk_index", "topk_distance")}
    mAP, mINP, cmc, distances, valid = [], [], [], [], None
    for model in models:
        if progress is not None:
            progress(f"scoring {model}")
        qf, gf = (_normalised(x) for x in features[model])
        ev = _evaluate(qf, gf, images["query"], images["gallery"], distance, top_k, max_rank)
        valid = ev["valid"] if valid is None else valid
        for name in arrays:
            arrays[name].append(ev[name])
        ok = ev["valid"]
        ranks = ev["first_match_rank"][ok]
        mAP.append(float(np.mean(ev["ap"][ok], dtype=np.float64)) if ok.any() else np.nan)
        mINP.append(float(np.mean(ev["inp"][ok], dtype=np.float64)) if ok.any() else np.nan)
        cmc.append(np.array([(ranks <= r).mean() if ok.any() else np.nan for r in range(1, max_rank + 1)]))
        distances.append(pair_distance(qf[pair_query], gf[pair_gallery], distance).astype(np.float32))
    provenance = dict(provenance or {})
    provenance.setdefault("pairs", {"per_query": pairs_per_query, "seed": seed,
                                    "rule": "per query, gallery images of other identities with an attribute "
                                            "annotation, drawn without replacement"})
    provenance.setdefault("conditions", [{"name": embedding_condition_name(m), "kind": EMBEDDING_KIND, "group": "",
                                          "router": "none", "enabled": [], "states": "no experts: exported features"}
                                         for m in models])
    return TraceData(
        schema=schema,
        query_pid=images["query"]["pid"], query_camid=images["query"]["camid"],
        query_path=np.asarray(query["path"], dtype=str).reshape(-1), query_states=np.asarray(query["states"], np.int16),
        gallery_pid=images["gallery"]["pid"], gallery_camid=images["gallery"]["camid"],
        gallery_path=np.asarray(gallery["path"], dtype=str).reshape(-1),
        gallery_states=np.asarray(gallery["states"], np.int16),
        condition_name=np.array([embedding_condition_name(m) for m in models], dtype=str),
        condition_kind=np.array([EMBEDDING_KIND] * C, dtype=str),
        condition_group=np.array([""] * C, dtype=str),
        condition_router=np.array(["none"] * C, dtype=str),
        enabled_groups=np.zeros((C, G), bool),
        ap=np.stack(arrays["ap"]), inp=np.stack(arrays["inp"]), rank1=np.stack(arrays["first_match_rank"]) == 1,
        first_match_rank=np.stack(arrays["first_match_rank"]), valid=valid,
        topk_index=np.stack(arrays["topk_index"]), topk_distance=np.stack(arrays["topk_distance"]),
        mAP=np.array(mAP, np.float64), mINP=np.array(mINP, np.float64), cmc=np.stack(cmc).astype(np.float64),
        gates=np.zeros((C, Q, 0, schema.n_experts), np.float32), layers=np.zeros(0, np.int32),
        distance=distance, provenance=provenance, dataset=dict(dataset or {}),
        pair_query=pair_query, pair_gallery=pair_gallery, pair_distance=np.stack(distances),
    ).validate()
