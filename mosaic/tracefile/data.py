"""The in-memory trace: :class:`TraceData`, plain numpy arrays with named axes, checked for consistency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mosaic.conditions import CONDITION_KINDS  # the registry: a kind registered there is a valid trace kind
from mosaic.core.errors import MosaicError
from mosaic.core.router_names import ROUTER_NAMES as ROUTERS  # the registry: a router registered there is valid
from mosaic.core.schema import AttributeSchema
from mosaic.tracefile.layout import ARRAYS

FILL_METHODS = ("learned", "fixed", "none")  # how a condition routed missing states; "none": it filled none



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
    condition_kind: np.ndarray     # (C,) str, a key of the CONDITION_KINDS registry
    condition_group: np.ndarray    # (C,) str, the group a per-group kind acts on, "" otherwise
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
    # (C,) str router of each condition: "oracle", "learned" or "none". None means "derive from
    # the kind" (learned -> learned, none -> none, everything else -> oracle).
    condition_router: np.ndarray | None = None
    # --- symmetric routing of unannotated images (schema 1.1; None means "not recorded") ---
    filled_routes: np.ndarray | None = None  # (C,) int64 (image, enabled group) routes whose missing state was filled
    fill_method: np.ndarray | None = None    # (C,) str "learned", "fixed" or "none" (nothing filled)
    fixed_gates: np.ndarray | None = None    # (E,) float32 fixed gate of each expert; NaN = not recorded
    # --- sampled different-identity pairs (schema 1.2; None means "not recorded": no pairs) ---
    pair_query: np.ndarray | None = None     # (P,) int64 query index of each pair
    pair_gallery: np.ndarray | None = None   # (P,) int64 gallery index of each pair
    pair_distance: np.ndarray | None = None  # (C, P) float32 distance of each pair under each condition

    def __post_init__(self) -> None:
        if self.condition_router is None:
            self.condition_router = np.array(
                [default_router(str(k)) for k in np.asarray(self.condition_kind).tolist()], dtype=str
            ).reshape(-1)
        C = len(np.asarray(self.condition_name).reshape(-1))
        if self.filled_routes is None:
            self.filled_routes = np.zeros(C, np.int64)
        if self.fill_method is None:
            self.fill_method = np.full(C, "none", dtype=object)
        self.fill_method = np.asarray(self.fill_method, dtype=str).reshape(-1) if C else np.zeros(0, dtype="<U4")
        if self.fixed_gates is None:
            self.fixed_gates = np.full(self.schema.n_experts, np.nan, np.float32)
        if self.pair_query is None or self.pair_gallery is None:
            self.pair_query, self.pair_gallery = np.zeros(0, np.int64), np.zeros(0, np.int64)
        if self.pair_distance is None:
            self.pair_distance = np.full((C, len(self.pair_query)), np.nan, np.float32)

    @property
    def n_conditions(self) -> int:
        return len(self.condition_name)

    @property
    def n_queries(self) -> int:
        return len(self.query_pid)

    @property
    def n_gallery(self) -> int:
        return len(self.gallery_pid)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def max_rank(self) -> int:
        return int(self.cmc.shape[1])

    @property
    def top_k(self) -> int:
        return int(self.topk_index.shape[2])

    @property
    def n_pairs(self) -> int:
        return int(len(self.pair_query))

    @property
    def sizes(self) -> dict[str, int]:
        """Length of every named axis, e.g. ``{"condition": 30, "query": 96, ...}``."""
        return {
            "condition": self.n_conditions,
            "query": self.n_queries,
            "gallery": self.n_gallery,
            "group": len(self.schema.groups),
            "expert": self.schema.n_experts,
            "layer": self.n_layers,
            "rank": self.max_rank,
            "topk": self.top_k,
            "pair": self.n_pairs,
        }

    def select_conditions(self, keep) -> "TraceData":
        """A copy with only the conditions ``keep`` selects (a ``(C,)`` bool mask or indices), every
        per-condition array sliced alike (those whose first axis is ``condition``)."""
        import dataclasses

        index = np.arange(self.n_conditions)[np.asarray(keep)]
        per_condition = ["condition_name"] + [spec.field for spec in ARRAYS if spec.dims[0] == "condition"]
        return dataclasses.replace(self, **{f: np.asarray(getattr(self, f))[index] for f in per_condition}).validate()

    def validate(self) -> "TraceData":
        """Check that every array has the shape its axes demand; raise :class:`MosaicError` if not."""
        sizes = self.sizes
        problems = []
        for spec in ARRAYS:
            value = getattr(self, spec.field)
            if value is None:
                problems.append(f"{spec.field} is missing")
                continue
            expected = tuple(sizes[d] for d in spec.dims)
            if np.shape(value) != expected:
                problems.append(f"{spec.field} has shape {np.shape(value)}, expected {expected} {spec.dims}")
        names = np.asarray(self.condition_name).tolist()
        if len(set(names)) != len(names):
            problems.append(f"condition names are not unique: {names}")
        unknown_kinds = sorted(set(np.asarray(self.condition_kind).tolist()) - set(CONDITION_KINDS))
        if unknown_kinds:
            problems.append(f"unknown condition kinds {unknown_kinds} (expected {list(CONDITION_KINDS)})")
        unknown_routers = sorted(set(np.asarray(self.condition_router).tolist()) - set(ROUTERS))
        if unknown_routers:
            problems.append(f"unknown routers {unknown_routers} (expected {list(ROUTERS)})")
        unknown_fills = sorted(set(np.asarray(self.fill_method).tolist()) - set(FILL_METHODS))
        if unknown_fills:
            problems.append(f"unknown fill methods {unknown_fills} (expected {list(FILL_METHODS)})")
        if self.distance not in ("cosine", "euclidean"):
            problems.append(f"distance must be 'cosine' or 'euclidean', got {self.distance!r}")
        if problems:
            raise MosaicError("inconsistent trace data: " + "; ".join(problems))
        return self


def default_router(kind: str) -> str:
    """The router a condition kind uses unless stated otherwise."""
    return {"learned": "learned", "none": "none"}.get(kind, "oracle")


__all__ = ["FILL_METHODS", "ROUTERS", "TraceData", "default_router"]
