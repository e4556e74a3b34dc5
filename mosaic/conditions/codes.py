"""Retrieval by attribute code alone: the ``code`` condition.

Annotations are per identity, so a query and its true matches carry the same attribute code;
ranking the gallery by code agreement, without looking at the images, is a baseline that shows
how much of the oracle's gain an identity code alone reaches.

Distance. Between a query and a gallery image, over the groups annotated on *both*: the
fraction of those groups whose states disagree (0 = same code, 1 = every shared group differs).
A pair with no group annotated on both (a Market-1501 distractor has none) gets distance 1:
nothing supports a match. The distances take few distinct values, so ties are the rule.

Ties. Equal distances are ranked in one seeded random order of the gallery (the seed is the
condition's, derived from ``mosaic trace --seed``), through the stable ranking of
:func:`mosaic.core.metrics.evaluate` applied to the permuted gallery. File order would not do: the
gallery files are sorted by identity, so file order would rank an identity's images next to
each other within a tie and inflate AP. A random order gives every tied image the same chance;
one permutation for all queries keeps the result a pure function of the seed.

Evaluation uses the same protocol as every other condition (same-identity same-camera gallery
images removed, distractors kept as negatives). Torch-free.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mosaic.core.errors import MosaicError
from mosaic.core.schema import MISSING

__all__ = ["NO_SHARED_GROUP_DISTANCE", "check_annotated", "code_distance", "code_evaluation", "tie_order"]

NO_SHARED_GROUP_DISTANCE = 1.0


def check_annotated(query_states: np.ndarray, gallery_states: np.ndarray) -> None:
    """Refuse code retrieval when the query or the gallery images carry no attribute state at all."""
    for name, states in (("query", query_states), ("gallery", gallery_states)):
        states = np.asarray(states)
        if states.size == 0 or not (states != MISSING).any():
            raise MosaicError(
                f"the code condition needs attribute annotations but the {name} images carry none: "
                "pass the dataset's attribute file (--attributes) or leave code out of --conditions"
            )


def code_distance(query_states: np.ndarray, gallery_states: np.ndarray, *, chunk_cells: int = 2**25) -> np.ndarray:
    """``(Q, N)`` float32: share of disagreeing groups among those annotated on both images."""
    q = np.asarray(query_states, dtype=np.int16)
    g = np.asarray(gallery_states, dtype=np.int16)
    Q, N = len(q), len(g)
    out = np.empty((Q, N), np.float32)
    g_known = g != MISSING
    rows = max(1, chunk_cells // max(1, N * max(1, q.shape[1])))
    for start in range(0, Q, rows):
        qq = q[start:start + rows]
        shared = (qq[:, None, :] != MISSING) & g_known[None, :, :]
        n_shared = shared.sum(axis=2)
        n_differ = (shared & (qq[:, None, :] != g[None, :, :])).sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = n_differ / n_shared
        out[start:start + rows] = np.where(n_shared > 0, d, NO_SHARED_GROUP_DISTANCE)
    return out


def tie_order(n_gallery: int, seed: int) -> np.ndarray:
    """The seeded gallery order that breaks ties: ``order[i]`` is the gallery image ranked i-th among equals."""
    return np.random.default_rng(seed).permutation(n_gallery)


def code_evaluation(
    query_states: np.ndarray,
    gallery_states: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    *,
    seed: int,
    max_rank: int = 50,
    topk: int = 0,
):
    """:func:`mosaic.core.metrics.evaluate` of code distances, ties in :func:`tie_order`.

    Returns the :class:`~mosaic.core.metrics.Evaluation`, its top-k indices pointing into the
    original gallery order.
    """
    from mosaic.core.metrics import evaluate

    check_annotated(query_states, gallery_states)
    order = tie_order(len(g_pids), seed)
    distmat = code_distance(query_states, np.asarray(gallery_states)[order])
    ev = evaluate(
        distmat, q_pids, np.asarray(g_pids)[order], q_camids, np.asarray(g_camids)[order], max_rank=max_rank, topk=topk
    )
    if ev.topk_index is None:
        return ev
    index = np.asarray(ev.topk_index)
    return dataclasses.replace(ev, topk_index=np.where(index >= 0, order[np.clip(index, 0, None)], -1).astype(index.dtype))
