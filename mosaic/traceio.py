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

On disk every axis is an HDF5 *dimension scale* (a netCDF-4 coordinate variable) at the file
root, and every array names its axes by attaching those scales, so h5py, netCDF tools and
``xarray.open_datatree(path, engine="h5netcdf")`` all see the same named dimensions.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mosaic.conditions import CONDITION_KINDS  # the registry: a kind registered there is a valid trace kind
from mosaic.errors import MosaicError
from mosaic.router_names import ROUTER_NAMES as ROUTERS  # the registry: a router registered there is valid
from mosaic.schema import AttributeSchema

FILL_METHODS = ("learned", "fixed", "none")  # how a condition routed missing states; "none": it filled none

ENCODING_TYPE = "mosaic-trace"
# semantic version of the on-disk layout; readers accept the same MAJOR. 1.1.0 added
# conditions/filled_routes, conditions/fill_method and routing/fixed_gates (and the kinds fixed,
# relabel, code); a 1.0.0 file reads with their "not recorded" values.
SCHEMA_VERSION = "1.1.0"


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


# ---------------------------------------------------------------------------------------------
# On-disk layout, as data: one entry per array. Writer, reader and docs/trace-format.md follow it.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArraySpec:
    field: str            # TraceData attribute
    path: str             # HDF5 path
    dims: tuple[str, ...]
    dtype: str            # numpy dtype on disk; "str" = variable-length UTF-8
    long_name: str
    units: str
    description: str
    compress: bool = False
    since: str = "1.0.0"  # schema version that added the array; older files read its "not recorded" value


ARRAYS: tuple[ArraySpec, ...] = (
    # ------------------------------------------------------------------- query images
    ArraySpec("query_pid", "query_images/pid", ("query",), "int64", "query identity", "1",
              "Person identity label of each query image."),
    ArraySpec("query_camid", "query_images/camid", ("query",), "int64", "query camera", "1",
              "Camera id of each query image, 1-based as in the file names."),
    ArraySpec("query_path", "query_images/path", ("query",), "str", "query image path", "",
              "Image path relative to the dataset root (absolute if the image lies outside it)."),
    ArraySpec("query_states", "query_images/states", ("query", "group"), "int16", "query attribute states", "1",
              "State code per attribute group: index into the group's states (see /schema), -1 = not annotated."),
    ArraySpec("valid", "query_images/valid", ("query",), "bool", "query is valid", "1",
              "A true match (same identity, other camera) exists in the gallery; invalid queries are "
              "excluded from every mean and carry NaN / -1 in /retrieval."),
    # ----------------------------------------------------------------- gallery images
    ArraySpec("gallery_pid", "gallery_images/pid", ("gallery",), "int64", "gallery identity", "1",
              "Person identity label of each gallery image; 0 = distractor."),
    ArraySpec("gallery_camid", "gallery_images/camid", ("gallery",), "int64", "gallery camera", "1",
              "Camera id of each gallery image, 1-based."),
    ArraySpec("gallery_path", "gallery_images/path", ("gallery",), "str", "gallery image path", "",
              "Image path relative to the dataset root (absolute if the image lies outside it)."),
    ArraySpec("gallery_states", "gallery_images/states", ("gallery", "group"), "int16",
              "gallery attribute states", "1",
              "State code per attribute group, -1 = not annotated (distractors: every group)."),
    # --------------------------------------------------------------------- conditions
    ArraySpec("condition_kind", "conditions/kind", ("condition",), "str", "condition kind", "",
              "A registered condition kind (mosaic.conditions): " + ", ".join(CONDITION_KINDS) + "."),
    ArraySpec("condition_group", "conditions/target_group", ("condition",), "str", "target attribute group", "",
              "The group a drop/only/counterfactual/fixed/relabel condition acts on; empty for other kinds."),
    ArraySpec("condition_router", "conditions/router", ("condition",), "str", "router", "",
              "How gates are chosen: oracle (ground-truth states), learned (predicted states) or none."),
    ArraySpec("enabled_groups", "conditions/enabled", ("condition", "group"), "bool", "enabled groups", "1",
              "True where the group's experts may be switched on under the condition."),
    ArraySpec("mAP", "conditions/mAP", ("condition",), "float64", "mean average precision", "1",
              "Mean of /retrieval/ap over valid queries, in [0, 1]."),
    ArraySpec("mINP", "conditions/mINP", ("condition",), "float64", "mean inverse negative penalty", "1",
              "Mean of /retrieval/inp over valid queries, in [0, 1]."),
    ArraySpec("cmc", "conditions/cmc", ("condition", "rank"), "float64", "cumulative matching characteristic", "1",
              "Fraction of valid queries whose first true match is at or above each rank."),
    ArraySpec("filled_routes", "conditions/filled_routes", ("condition",), "int64", "filled routes", "1",
              "Number of (image, enabled group) routes, over query and gallery images, whose state was missing "
              "and was filled (see fill_method) instead of being left off; 0 in files older than 1.1.",
              since="1.1.0"),
    ArraySpec("fill_method", "conditions/fill_method", ("condition",), "str", "how missing states were routed", "",
              "learned (the learned router's predicted state), fixed (the group's fixed gates) or none "
              "(nothing filled; in files older than 1.1 missing states were left off).", since="1.1.0"),
    # ---------------------------------------------------------- per condition x query
    ArraySpec("ap", "retrieval/ap", ("condition", "query"), "float32", "average precision", "1",
              "Non-interpolated average precision of the query's ranking; NaN where the query is invalid."),
    ArraySpec("inp", "retrieval/inp", ("condition", "query"), "float32", "inverse negative penalty", "1",
              "Number of true matches / rank of the hardest true match; NaN where the query is invalid."),
    ArraySpec("rank1", "retrieval/rank1", ("condition", "query"), "bool", "rank-1 hit", "1",
              "The nearest gallery image (after same-identity same-camera removal) is a true match."),
    ArraySpec("first_match_rank", "retrieval/first_match_rank", ("condition", "query"), "int32",
              "rank of the first true match", "1",
              "1-based rank of the first true match after same-identity same-camera removal; -1 where invalid."),
    ArraySpec("topk_index", "retrieval/topk_index", ("condition", "query", "topk"), "int32",
              "nearest gallery images", "1",
              "Indices into the gallery axis of the k nearest gallery images, nearest first, after "
              "same-identity same-camera removal; -1 pads when fewer remain.", compress=True),
    ArraySpec("topk_distance", "retrieval/topk_distance", ("condition", "query", "topk"), "float32",
              "distance to the nearest gallery images", "1",
              "Distance (see the root attribute 'distance') to each of topk_index; NaN pads.", compress=True),
    # -------------------------------------------------------------------------- gates
    ArraySpec("gates", "routing/gates", ("condition", "query", "layer", "expert"), "float32", "gate weight", "1",
              "Weight of each expert's low-rank update at each expert-carrying block for the query image.",
              compress=True),
    ArraySpec("fixed_gates", "routing/fixed_gates", ("expert",), "float32", "fixed gate", "1",
              "Gate of each expert under its group's fixed gates: its state's share among the training "
              "identities (sums to 1 per group); NaN when the model had none or the file is older than 1.1.",
              since="1.1.0"),
)
_ARRAY_BY_FIELD = {spec.field: spec for spec in ARRAYS}

# Per-group encoding labels (AnnData style: every group says what it holds and in which version).
GROUPS = {
    "query_images": "Per query image: identity, camera, path, attribute states, validity.",
    "gallery_images": "Per gallery image: identity, camera, path, attribute states.",
    "conditions": "Per routing condition: kind, target group, router, enabled groups, summary metrics.",
    "retrieval": "Per condition x query: AP, INP, rank-1 hit, first-match rank, top-k neighbours.",
    "routing": "Per condition x query x layer x expert: gate weights; per expert: the fixed gates.",
    "schema": "The attribute schema: groups, their families, the state of every expert.",
    "provenance": "How the trace was made: command, config, versions, commit, checkpoint, data, seed, device.",
}

COORDINATES = {
    "condition": ("str", "routing condition", "Condition name, e.g. oracle, none, drop:hat, subset:3."),
    "query": ("int64", "query image index", "Position of the query image; identical order in every condition."),
    "gallery": ("int64", "gallery image index", "Position of the gallery image; /retrieval/topk_index points here."),
    "group": ("str", "attribute group", "Attribute group name, in schema order."),
    "expert": ("str", "expert", "Expert label 'group=state', in schema order (groups in order, states in order)."),
    "layer": ("int32", "expert-carrying block", "0-based index of the transformer block in the backbone."),
    "rank": ("int32", "rank", "CMC rank, 1-based."),
    "topk": ("int32", "neighbour position", "Position in the top-k list, 1 = nearest."),
}


def _str_dtype():
    import h5py

    return h5py.string_dtype("utf-8")


def _utf8_safe(text: str) -> str:
    if "\x00" in text:
        raise MosaicError(f"cannot store {text!r} in a trace: HDF5 strings cannot hold NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # a file name that is not valid UTF-8 (decoded by Python with surrogate escapes): keep it
        # readable and unambiguous as backslash escapes rather than refuse the whole trace
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _as_str_array(values) -> np.ndarray:
    """Object array of Python str, the form h5py writes as variable-length UTF-8."""
    flat = np.asarray(values, dtype=object).reshape(-1)
    return np.array([_utf8_safe(str(v)) for v in flat.tolist()], dtype=object).reshape(np.shape(values))


def _coordinate_values(data: TraceData) -> dict[str, np.ndarray]:
    return {
        "condition": _as_str_array(data.condition_name),
        "query": np.arange(data.n_queries, dtype=np.int64),
        "gallery": np.arange(data.n_gallery, dtype=np.int64),
        "group": _as_str_array(list(data.schema.group_names)),
        "expert": _as_str_array(list(data.schema.expert_labels)),
        "layer": np.asarray(data.layers, dtype=np.int32),
        "rank": np.arange(1, data.max_rank + 1, dtype=np.int32),
        "topk": np.arange(1, data.top_k + 1, dtype=np.int32),
    }


def _write_array(h5, path: str, values, dtype: str, *, compress: bool = False):
    if dtype == "str":
        return h5.create_dataset(path, data=_as_str_array(values), dtype=_str_dtype())
    arr = np.ascontiguousarray(np.asarray(values).astype(dtype, copy=False))
    kwargs: dict[str, Any] = {}
    if compress and arr.size > 0:
        # One chunk per condition keeps "all queries of one condition" a single read.
        chunks = (1,) + tuple(max(1, n) for n in arr.shape[1:])
        kwargs = dict(chunks=chunks, compression="gzip", compression_opts=4, shuffle=True)
    return h5.create_dataset(path, data=arr, **kwargs)


def _describe(dataset, long_name: str, units: str, description: str) -> None:
    dataset.attrs["long_name"] = long_name
    dataset.attrs["units"] = units
    dataset.attrs["description"] = description


def _jsonable(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, paths to str, unknown objects to their repr."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _to_json(value: Any) -> str:
    return json.dumps(_jsonable(value), sort_keys=True, ensure_ascii=False)


def _flat_attribute(value: Any):
    """An HDF5 attribute for a provenance entry: scalars as they are, anything nested as JSON."""
    value = _jsonable(value)
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def write_trace(data: TraceData, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` as a self-describing HDF5 trace (atomically) and return the path.

    The file is written under a temporary name beside ``path`` and renamed only when complete,
    so an interrupted write leaves ``path`` untouched.
    """
    import h5py

    from mosaic import __version__
    from mosaic.fileio import atomic_path

    data.validate()
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as h5:
            h5.attrs["encoding_type"] = ENCODING_TYPE
            h5.attrs["encoding_version"] = SCHEMA_VERSION
            h5.attrs["schema_version"] = SCHEMA_VERSION
            h5.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            h5.attrs["mosaic_version"] = __version__
            h5.attrs["title"] = "mosaic retrieval trace"
            h5.attrs["distance"] = data.distance
            h5.attrs["attribute_schema"] = data.schema.to_json()
            h5.attrs["schema_fingerprint"] = data.schema.fingerprint()
            h5.attrs["provenance"] = _to_json(data.provenance)
            h5.attrs["dataset"] = _to_json(data.dataset)

            scales = {}
            for dim, values in _coordinate_values(data).items():
                dtype, long_name, description = COORDINATES[dim]
                ds = _write_array(h5, dim, values, dtype)
                ds.make_scale(dim)
                _describe(ds, long_name, "1" if dtype != "str" else "", description)
                scales[dim] = ds

            for name, description in GROUPS.items():
                grp = h5.create_group(name, track_order=True)
                grp.attrs["encoding_type"] = f"{ENCODING_TYPE}/{name}"
                grp.attrs["encoding_version"] = SCHEMA_VERSION
                grp.attrs["description"] = description

            for spec in ARRAYS:
                ds = _write_array(h5, spec.path, getattr(data, spec.field), spec.dtype, compress=spec.compress)
                for axis, dim in enumerate(spec.dims):
                    ds.dims[axis].attach_scale(scales[dim])
                _describe(ds, spec.long_name, spec.units, spec.description)

            _write_schema_group(h5["schema"], data.schema, scales)
            for key, value in data.provenance.items():
                h5["provenance"].attrs[str(key)] = _flat_attribute(value)
    return path


def _write_schema_group(grp, schema: AttributeSchema, scales) -> None:
    """The schema as arrays (for readers without mosaic) and as JSON (for mosaic itself)."""
    grp.attrs["name"] = schema.name
    grp.attrs["json"] = schema.to_json()
    per_group = {
        "group_family": ([g.family for g in schema.groups], "group", "family of the group"),
        "group_coarse_family": ([g.coarse_family for g in schema.groups], "group", "intrinsic or extrinsic"),
        "group_states": (["|".join(g.states) for g in schema.groups], "group",
                         "the group's state labels joined by '|', in code order (code 0 first)"),
        "expert_group": ([g for g, _ in schema.experts], "expert", "group of the expert"),
        "expert_state": ([s for _, s in schema.experts], "expert", "state label of the expert"),
        "expert_family": ([schema.group(g).family for g, _ in schema.experts], "expert", "family of the expert"),
    }
    for name, (values, dim, description) in per_group.items():
        ds = _write_array(grp, name, values, "str")
        ds.dims[0].attach_scale(scales[dim])
        _describe(ds, name.replace("_", " "), "", description.capitalize() + ".")
    counts = _write_array(grp, "group_n_states", [len(g.states) for g in schema.groups], "int32")
    counts.dims[0].attach_scale(scales["group"])
    _describe(counts, "number of states", "1", "Number of states (and experts) of the group.")
    codes = _write_array(grp, "expert_state_code", [schema.group(g).code(s) for g, s in schema.experts], "int16")
    codes.dims[0].attach_scale(scales["expert"])
    _describe(codes, "state code of the expert", "1",
              "The state code (as in query_images/states) that switches this expert on under the oracle.")


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

def parse_version(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in str(text).split(".")]
        major, minor, patch = (parts + [0, 0, 0])[:3]
    except ValueError:
        raise MosaicError(f"trace schema version {text!r} is not a semantic version (MAJOR.MINOR.PATCH)") from None
    return major, minor, patch


def check_schema_version(text: str, *, source: str = "trace") -> str:
    """Accept ``text`` if its MAJOR equals this mosaic's; otherwise raise a one-line MosaicError."""
    major = parse_version(text)[0]
    ours = parse_version(SCHEMA_VERSION)[0]
    if major > ours:
        raise MosaicError(
            f"{source} schema {major}.x is newer than this mosaic (reads {ours}.x): upgrade mosaic"
        )
    if major < ours:
        raise MosaicError(
            f"{source} schema {major}.x is older than this mosaic (reads {ours}.x): re-run `mosaic trace` "
            f"with this version, or read it with the mosaic that wrote it"
        )
    return str(text)


def _attr_str(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def open_trace_file(path: str | os.PathLike):
    """Open ``path`` read-only as an h5py File after checking that it is a readable mosaic trace.

    Raises a one-line :class:`MosaicError` for a missing file, a file that is not HDF5 (or is
    truncated), an HDF5 file that is not a mosaic trace, or a trace with another MAJOR schema.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise MosaicError(f"trace file {path} does not exist: check the path or run `mosaic trace` first")
    if path.is_dir():
        raise MosaicError(f"{path} is a folder, not a trace file: pass the .h5 file written by `mosaic trace`")
    try:
        h5 = h5py.File(path, "r")
    except OSError:
        raise MosaicError(
            f"{path} is not a readable HDF5 file (truncated or another format): re-run `mosaic trace` to rewrite it"
        ) from None
    try:
        kind = h5.attrs.get("encoding_type")
        if kind is None or _attr_str(kind) != ENCODING_TYPE:
            raise MosaicError(
                f"{path} is an HDF5 file but not a mosaic trace (no encoding_type='{ENCODING_TYPE}' attribute): "
                f"pass a file written by `mosaic trace`"
            )
        version = h5.attrs.get("schema_version", h5.attrs.get("encoding_version"))
        if version is None:
            raise MosaicError(f"{path} has no schema_version attribute: it is not a complete mosaic trace")
        check_schema_version(_attr_str(version))
    except BaseException:
        h5.close()
        raise
    return h5


def _read_array(h5, path: str, dtype: str, file_path) -> np.ndarray:
    try:
        ds = h5[path]
    except KeyError:
        raise MosaicError(f"trace {file_path} lacks the dataset /{path}: the file is incomplete or damaged") from None
    if dtype == "str":
        raw = ds.asstr()[()]
        return np.asarray(raw, dtype=object).astype(str) if np.size(raw) else np.zeros(ds.shape, dtype="<U1")
    return np.asarray(ds[()]).astype(dtype, copy=False)


def read_trace_data(path: str | os.PathLike) -> TraceData:
    """Read a trace written by :func:`write_trace` back into a :class:`TraceData`."""
    return read_trace_file(path)[0]


def read_trace_file(path: str | os.PathLike) -> tuple[TraceData, dict[str, Any]]:
    """The :class:`TraceData` and the root attributes (as :func:`read_trace_attrs`), in one open."""
    with open_trace_file(path) as h5:
        try:
            return _read(h5, path), _root_attrs(h5)
        except MosaicError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            # h5py reports damaged chunks / truncated data as OSError on access.
            raise MosaicError(
                f"trace {path} could not be read ({type(exc).__name__}: {exc}): the file is damaged; re-run `mosaic trace`"
            ) from None


def _read(h5, path, *, checked: bool = True) -> TraceData:
    """The arrays of an open trace; ``checked``: shapes and value rules too (mosaic.tracecheck)."""
    schema = AttributeSchema.from_json(_attr_str(h5.attrs["attribute_schema"]))
    version = parse_version(_attr_str(h5.attrs.get("schema_version", h5.attrs.get("encoding_version"))))
    arrays = {
        spec.field: _read_array(h5, spec.path, spec.dtype, path)
        for spec in ARRAYS
        if spec.path in h5 or parse_version(spec.since) <= version  # older files lack newer arrays
    }
    arrays["condition_name"] = _read_array(h5, "condition", "str", path)
    arrays["layers"] = _read_array(h5, "layer", "int32", path)

    def load_json(key: str) -> dict:
        text = h5.attrs.get(key)
        return json.loads(_attr_str(text)) if text is not None else {}

    data = TraceData(
        schema=schema,
        distance=_attr_str(h5.attrs.get("distance", "cosine")),
        provenance=load_json("provenance"),
        dataset=load_json("dataset"),
        **arrays,
    )
    if not checked:
        return data
    from mosaic.tracecheck import check_trace_values

    return check_trace_values(data.validate(), h5, source=path)


def read_trace_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The root attributes of a trace (versions, created, provenance, ...) without loading arrays."""
    with open_trace_file(path) as h5:
        return _root_attrs(h5)


def _root_attrs(h5) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in h5.attrs.items():
        value = _attr_str(value) if isinstance(value, (bytes, str)) else value
        if key in ("provenance", "dataset", "attribute_schema"):
            value = json.loads(value)
        out[key] = value
    out["sizes"] = {dim: int(h5[dim].shape[0]) for dim in COORDINATES if dim in h5}
    return out


def array_specs() -> tuple[ArraySpec, ...]:
    """The on-disk arrays (path, dims, dtype, meaning), e.g. for generated documentation."""
    return ARRAYS


__all__ = [
    "ArraySpec",
    "CONDITION_KINDS",
    "FILL_METHODS",
    "ROUTERS",
    "SCHEMA_VERSION",
    "TraceData",
    "array_specs",
    "check_schema_version",
    "default_router",
    "open_trace_file",
    "read_trace_attrs",
    "read_trace_data",
    "read_trace_file",
    "write_trace",
]
