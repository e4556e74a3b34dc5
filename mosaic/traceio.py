"""The trace: the one contract between ``mosaic`` (which writes it) and ``analysis`` (which reads it).

This module is torch-free. :class:`TraceData` is the in-memory form, plain numpy arrays with
named axes; :func:`write_trace` / :func:`read_trace_data` move it to and from the
self-describing HDF5 layout documented in ``docs/trace-format.md``.

Axes (the dimension names used on disk):

- ``condition`` (C): routing conditions, e.g. ``oracle``, ``none``, ``drop:hat``.
- ``query`` (Q): query images, in the same order for every condition.
- ``gallery`` (N): gallery images.
- ``group`` (G): attribute groups of the schema.
- ``expert`` (E): one per (group, state), in ``schema.experts`` order.
- ``layer`` (L): transformer blocks that carry experts.
- ``rank`` (R): CMC ranks 1..max_rank.
- ``topk`` (K): the k nearest gallery images kept per query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mosaic.schema import AttributeSchema

CONDITION_KINDS = ("oracle", "none", "drop", "only", "counterfactual", "subset", "learned")


@dataclass
class TraceData:
    schema: AttributeSchema

    # --- images ------------------------------------------------------------------------
    query_pid: np.ndarray          # (Q,) int64 identity label
    query_camid: np.ndarray        # (Q,) int64 camera id
    query_path: np.ndarray         # (Q,) str, image path relative to the dataset root
    query_states: np.ndarray       # (Q, G) int16 state code per group, -1 = missing
    gallery_pid: np.ndarray        # (N,) int64; 0 = distractor
    gallery_camid: np.ndarray      # (N,) int64
    gallery_path: np.ndarray       # (N,) str
    gallery_states: np.ndarray     # (N, G) int16, -1 = missing

    # --- conditions --------------------------------------------------------------------
    condition_name: np.ndarray     # (C,) str, unique, e.g. "drop:hat"
    condition_kind: np.ndarray     # (C,) str, one of CONDITION_KINDS
    condition_group: np.ndarray    # (C,) str, the group a drop/only/counterfactual acts on, "" otherwise
    enabled_groups: np.ndarray     # (C, G) bool, groups whose experts may be switched on

    # --- per condition x query ---------------------------------------------------------
    ap: np.ndarray                 # (C, Q) float32 average precision, NaN where the query is not valid
    inp: np.ndarray                # (C, Q) float32 inverse negative penalty, NaN where not valid
    rank1: np.ndarray              # (C, Q) bool, first true match at rank 1
    first_match_rank: np.ndarray   # (C, Q) int32 1-based rank of the first true match, -1 where not valid
    valid: np.ndarray              # (Q,) bool, a true match exists in the gallery (same for every condition)
    topk_index: np.ndarray         # (C, Q, K) int32 gallery indices, nearest first
    topk_distance: np.ndarray      # (C, Q, K) float32

    # --- per condition -----------------------------------------------------------------
    mAP: np.ndarray                # (C,) float64 over valid queries
    mINP: np.ndarray               # (C,) float64
    cmc: np.ndarray                # (C, R) float64, CMC at ranks 1..R over valid queries

    # --- gates -------------------------------------------------------------------------
    gates: np.ndarray              # (C, Q, L, E) float32 gate weight of each expert at each layer
    layers: np.ndarray             # (L,) int32 index of each expert-carrying block in the backbone

    # --- description -------------------------------------------------------------------
    distance: str = "cosine"       # "cosine" or "euclidean" on L2-normalised features
    provenance: dict[str, Any] = field(default_factory=dict)  # command, config, versions, commit, ...
    dataset: dict[str, Any] = field(default_factory=dict)     # name, root, format, ...

    @property
    def n_conditions(self) -> int:
        return len(self.condition_name)

    @property
    def n_queries(self) -> int:
        return len(self.query_pid)

    @property
    def n_gallery(self) -> int:
        return len(self.gallery_pid)
