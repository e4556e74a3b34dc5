"""The trace format's value rules, checked whenever a trace is read.

Shapes alone do not make a trace usable: a file whose AP values are 7.0, whose query identities
are negative or whose stored mAP disagrees with its per-query AP would otherwise be analysed and
reported. Each rule is one :class:`ValueRule` in the registry :data:`VALUE_RULES`: a name, the
arrays it reads, what it demands, and a function returning the first offence (array, index,
detail, how many entries break it). Reading a trace stops at the first broken rule with a
one-line :class:`~mosaic.core.errors.MosaicError`; ``mosaic inspect --check`` runs every rule and
lists every violation.

The rules know nothing of particular condition kinds or routers: every condition is held to the
same constraints, and gates may be any weight in [0, 1] (fractional under soft routing).
Torch-free: numpy only (h5py for the dimension scales of a file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from mosaic.core.errors import MosaicError
from mosaic.tracefile.data import TraceData
from mosaic.tracefile.layout import ARRAYS, COORDINATES

# Stored means are float64 over float32 per-query values: they agree to float32 resolution.
MEAN_TOLERANCE = 1e-5
_PATH_OF_FIELD = {spec.field: spec.path for spec in ARRAYS} | {"condition_name": "condition", "layers": "layer"}


@dataclass(frozen=True)
class Offence:
    """Where a rule is first broken: the array (a TraceData field or an on-disk path), the index
    into it, what is wrong there, and how many entries of how many break the rule."""

    array: str
    index: tuple[int, ...]
    detail: str
    count: int = 1
    total: int = 1


@dataclass(frozen=True)
class TraceView:
    """What the rules read: the arrays, and the open HDF5 file when there is one (``h5``)."""

    data: TraceData
    h5: Any = None


@dataclass(frozen=True)
class ValueRule:
    name: str
    arrays: tuple[str, ...]  # TraceData fields (or on-disk paths) the rule reads
    description: str  # what the rule demands, in words
    find: Callable[[TraceView], Offence | None]  # the first offence, None when the rule holds


@dataclass(frozen=True)
class Violation:
    rule: ValueRule
    offence: Offence

    @property
    def array(self) -> str:
        return _PATH_OF_FIELD.get(self.offence.array, self.offence.array)

    def __str__(self) -> str:
        o = self.offence
        where = f"[{', '.join(map(str, o.index))}]" if o.index else ""
        share = f" ({o.count} of {o.total} entries)" if o.total > 1 else ""
        return f"{self.array}{where}: rule '{self.rule.name}' ({self.rule.description}) is broken: {o.detail}{share}"

    def to_dict(self) -> dict[str, Any]:
        o = self.offence
        return {"rule": self.rule.name, "array": self.array, "index": list(o.index), "detail": o.detail,
                "count": o.count, "total": o.total, "message": str(self)}


VALUE_RULES: dict[str, ValueRule] = {}


def register_rule(rule: ValueRule) -> ValueRule:
    """Add ``rule`` to :data:`VALUE_RULES` (its name must be new)."""
    if rule.name in VALUE_RULES:
        raise ValueError(f"a trace value rule named {rule.name!r} is already registered")
    VALUE_RULES[rule.name] = rule
    return rule


def rule(name: str, arrays: tuple[str, ...], description: str):
    """Decorator form of :func:`register_rule` for a finder function."""

    def wrap(find: Callable[[TraceView], Offence | None]) -> Callable[[TraceView], Offence | None]:
        register_rule(ValueRule(name, arrays, description, find))
        return find

    return wrap


# ------------------------------------------------------------------------------- helpers
def _first(array: str, bad: np.ndarray, values: np.ndarray | None = None, what: str = "") -> Offence | None:
    """The first True entry of ``bad`` as an offence, showing ``values`` there; None if none."""
    if not bad.any():
        return None
    flat = int(np.flatnonzero(bad)[0]) if bad.ndim <= 1 else int(np.argmax(bad.reshape(-1)))
    index = tuple(int(i) for i in np.unravel_index(flat, bad.shape))
    value = None if values is None else np.asarray(values)[index].item()
    shown = "" if values is None else f"value {value:.6g}" if isinstance(value, float) else f"value {value!r}"
    detail = ", ".join(p for p in (shown, what) if p) or "offending entry"
    return Offence(array, index, detail, int(np.count_nonzero(bad)), int(bad.size))


_FLOAT32_ONE_BITS = np.float32(1.0).view(np.uint32)


def _within_unit_interval(values: np.ndarray) -> bool:
    """Every entry in [0, 1] (NaN is not), in one pass for float32: read as unsigned integers, the
    floats 0 .. 1 are exactly the bit patterns 0 .. bits(1.0), negatives and NaN lie above."""
    if values.dtype == np.float32 and values.flags.c_contiguous:
        if values.reshape(-1).view(np.uint32).max() <= _FLOAT32_ONE_BITS:
            return True  # else fall through: -0.0 is in the interval too
    return bool(values.min() >= 0 and values.max() <= 1)  # min / max are NaN when any entry is


def _valid_columns(data: TraceData, shape: tuple[int, ...]) -> np.ndarray:
    """``valid`` broadcast over (condition, query)."""
    return np.broadcast_to(np.asarray(data.valid, dtype=bool)[None, :], shape)


def _count_in(keys: np.ndarray, table: np.ndarray) -> np.ndarray:
    """How often each of ``keys`` occurs in ``table``."""
    unique, counts = np.unique(table, return_counts=True)
    if unique.size == 0:
        return np.zeros(keys.shape, dtype=np.int64)
    pos = np.minimum(np.searchsorted(unique, keys), unique.size - 1)
    return np.where(unique[pos] == keys, counts[pos], 0)


def _valid_means(values: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
    n_valid = int(valid.sum())
    if n_valid == 0:
        return None  # no valid query: nothing to compare the stored mean with
    return np.asarray(values, dtype=np.float64)[:, valid].sum(axis=1) / n_valid


# --------------------------------------------------------------------------------- rules
@rule("query-identity", ("query_pid",),
      "query identities are positive: junk (-1) and distractors (0) are never queries")
def _query_identity(view: TraceView) -> Offence | None:
    pid = np.asarray(view.data.query_pid)
    return _first("query_pid", pid < 1, pid)


@rule("gallery-identity", ("gallery_pid",), "gallery identities are >= 0 (0 = distractor; junk is dropped)")
def _gallery_identity(view: TraceView) -> Offence | None:
    pid = np.asarray(view.data.gallery_pid)
    return _first("gallery_pid", pid < 0, pid)


@rule("camera-range", ("query_camid", "gallery_camid"), "camera ids are non-negative")
def _camera_range(view: TraceView) -> Offence | None:
    for name in ("query_camid", "gallery_camid"):
        camid = np.asarray(getattr(view.data, name))
        found = _first(name, camid < 0, camid)
        if found:
            return found
    return None


@rule("state-codes", ("query_states", "gallery_states"),
      "state codes are -1 (not annotated) or a state of the group: 0 .. n_states-1")
def _state_codes(view: TraceView) -> Offence | None:
    n_states = np.array([len(g.states) for g in view.data.schema.groups])
    for name in ("query_states", "gallery_states"):
        states = np.asarray(getattr(view.data, name))
        found = _first(name, (states < -1) | (states >= n_states[None, :]), states)
        if found:
            return found
    return None


@rule("valid-queries", ("valid", "query_pid", "query_camid", "gallery_pid", "gallery_camid"),
      "a query is valid exactly when the gallery holds its identity in another camera")
def _valid_queries(view: TraceView) -> Offence | None:
    d = view.data
    q_pid, q_cam = np.asarray(d.query_pid, np.int64), np.asarray(d.query_camid, np.int64)
    g_pid, g_cam = np.asarray(d.gallery_pid, np.int64), np.asarray(d.gallery_camid, np.int64)
    span = int(max(q_cam.max(initial=0), g_cam.max(initial=0))) + 1
    other_camera = _count_in(q_pid, g_pid) - _count_in(q_pid * span + q_cam, g_pid * span + g_cam)
    expected = other_camera > 0
    valid = np.asarray(d.valid, dtype=bool)
    found = _first("valid", valid != expected, valid)
    if found:
        says = "a match exists" if expected[found.index] else "no match exists"
        return Offence("valid", found.index, f"{found.detail}, the gallery says {says}", found.count, found.total)
    return None


@rule("unit-interval", ("ap", "inp"), "AP and INP of a valid query lie in [0, 1]")
def _unit_interval(view: TraceView) -> Offence | None:
    for name in ("ap", "inp"):
        values = np.asarray(getattr(view.data, name))
        valid = _valid_columns(view.data, values.shape)
        with np.errstate(invalid="ignore"):
            bad = valid & ~((values >= 0) & (values <= 1))  # NaN fails both comparisons
        found = _first(name, bad, values)
        if found:
            return found
    return None


@rule("nan-where-invalid", ("ap", "inp", "valid"), "AP and INP are NaN exactly where the query is not valid")
def _nan_where_invalid(view: TraceView) -> Offence | None:
    for name in ("ap", "inp"):
        values = np.asarray(getattr(view.data, name))
        invalid = ~_valid_columns(view.data, values.shape)
        found = _first(name, invalid & ~np.isnan(values), values, "the query is not valid")
        if found:
            return found
    return None


@rule("first-match-rank", ("first_match_rank", "valid"),
      "the first-match rank is 1 .. n_gallery for a valid query and -1 otherwise")
def _first_match_rank(view: TraceView) -> Offence | None:
    d = view.data
    fmr = np.asarray(d.first_match_rank)
    valid = _valid_columns(d, fmr.shape)
    bad = np.where(valid, (fmr < 1) | (fmr > d.n_gallery), fmr != -1)
    return _first("first_match_rank", bad, fmr)


@rule("rank1-agrees", ("rank1", "first_match_rank"), "a rank-1 hit is exactly a first-match rank of 1")
def _rank1_agrees(view: TraceView) -> Offence | None:
    d = view.data
    rank1 = np.asarray(d.rank1, dtype=bool)
    fmr = np.asarray(d.first_match_rank)
    found = _first("rank1", rank1 != (fmr == 1), rank1)
    if found:
        return Offence("rank1", found.index, f"{found.detail}, first_match_rank is {fmr[found.index]}", found.count, found.total)
    return None


def _mean_rule(summary: str, per_query: str):
    def find(view: TraceView) -> Offence | None:
        d = view.data
        expected = _valid_means(getattr(d, per_query), np.asarray(d.valid, dtype=bool))
        if expected is None:
            return None
        stored = np.asarray(getattr(d, summary), dtype=np.float64)
        bad = ~(np.abs(stored - expected) <= MEAN_TOLERANCE)
        found = _first(summary, bad, stored)
        if found:
            c = found.index[0]
            return Offence(summary, found.index, f"{found.detail}, mean of {per_query} over valid queries is "
                           f"{expected[c]:.6g}", found.count, found.total)
        return None

    return find


register_rule(ValueRule("map-agrees", ("mAP", "ap", "valid"), "mAP is the mean AP over valid queries",
                        _mean_rule("mAP", "ap")))
register_rule(ValueRule("minp-agrees", ("mINP", "inp", "valid"), "mINP is the mean INP over valid queries",
                        _mean_rule("mINP", "inp")))


@rule("cmc-agrees", ("cmc", "first_match_rank", "valid"),
      "CMC at rank r is the share of valid queries whose first match is at rank <= r")
def _cmc_agrees(view: TraceView) -> Offence | None:
    d = view.data
    valid = np.asarray(d.valid, dtype=bool)
    n_valid, max_rank = int(valid.sum()), d.max_rank
    if n_valid == 0 or max_rank == 0:
        return None
    fmr = np.asarray(d.first_match_rank)[:, valid]
    bins = np.clip(fmr, 1, max_rank + 1) - 1 + (max_rank + 1) * np.arange(d.n_conditions)[:, None]  # past R: last bin
    hits = np.bincount(bins.reshape(-1), minlength=d.n_conditions * (max_rank + 1)).reshape(d.n_conditions, -1)
    expected = np.cumsum(hits[:, :max_rank], axis=1) / n_valid
    stored = np.asarray(d.cmc, dtype=np.float64)
    bad = ~(np.abs(stored - expected) <= 1e-9)
    found = _first("cmc", bad, stored)
    if found:
        c, r = found.index
        return Offence("cmc", found.index, f"{found.detail}, the first-match ranks give {expected[c, r]:.6g} "
                       f"at rank {r + 1}", found.count, found.total)
    return None


@rule("gates-unit-interval", ("gates",), "gate weights lie in [0, 1]")
def _gates_unit_interval(view: TraceView) -> Offence | None:
    gates = np.asarray(view.data.gates)
    if gates.size == 0 or _within_unit_interval(gates):
        return None
    with np.errstate(invalid="ignore"):
        return _first("gates", ~((gates >= 0) & (gates <= 1)), gates)


@rule("topk-neighbours", ("topk_index", "topk_distance"),
      "top-k indices point into the gallery (-1 pads) and distances are NaN exactly at the padding")
def _topk_neighbours(view: TraceView) -> Offence | None:
    d = view.data
    index = np.asarray(d.topk_index)
    distance = np.asarray(d.topk_distance)
    if index.size == 0:
        return None
    low, high = index.min(), index.max()
    if low < -1 or high >= d.n_gallery:
        return _first("topk_index", (index < -1) | (index >= d.n_gallery), index)
    if low >= 0 and not np.isnan(distance.max()):  # no padding and no NaN: the common case, in two passes
        return None
    return _first("topk_distance", np.isnan(distance) != (index == -1), distance,
                  "NaN must mark exactly the -1 padding of topk_index")


@rule("pairs", ("pair_query", "pair_gallery", "pair_distance", "query_pid", "gallery_pid"),
      "sampled pairs point into the query and gallery axes, join two different identities, and their distances "
      "are non-negative (NaN: not recorded)")
def _pairs(view: TraceView) -> Offence | None:
    d = view.data
    pq, pg = np.asarray(d.pair_query), np.asarray(d.pair_gallery)
    if pq.size == 0:
        return None
    for name, index, n in (("pair_query", pq, d.n_queries), ("pair_gallery", pg, d.n_gallery)):
        found = _first(name, (index < 0) | (index >= n), index)
        if found:
            return found
    same = np.asarray(d.query_pid)[pq] == np.asarray(d.gallery_pid)[pg]
    found = _first("pair_gallery", same, pg, "a pair must join two different identities")
    if found:
        return found
    distance = np.asarray(d.pair_distance)
    return _first("pair_distance", distance < 0, distance)


@rule("dimension-scales", tuple(COORDINATES),
      "coordinates count 0..n-1 (query, gallery, pair) and 1..n (rank, topk), and every array attaches its axes' scales")
def _dimension_scales(view: TraceView) -> Offence | None:
    h5 = view.h5
    if h5 is None:
        return None  # a trace in memory has no scales to check
    for dim, start in (("query", 0), ("gallery", 0), ("rank", 1), ("topk", 1), ("pair", 0)):
        if dim not in h5:
            continue  # an axis newer than the file's schema
        values = np.asarray(h5[dim][()])
        expected = np.arange(start, start + values.shape[0])
        found = _first(dim, values != expected, values, f"expected {start}, {start + 1}, ...")
        if found:
            return found
    import h5py

    scales = {dim: h5[dim].id for dim in COORDINATES if dim in h5}  # older files lack newer axes
    for spec in ARRAYS:
        if spec.path not in h5:
            continue  # an array newer than the file's schema: the reader filled it, nothing is attached
        ds = h5[spec.path]
        for axis, dim in enumerate(spec.dims):
            if not h5py.h5ds.is_attached(ds.id, scales[dim], axis):
                attached = [scale.name.rsplit("/", 1)[-1] for scale in ds.dims[axis].values()]
                return Offence(spec.path, (), f"axis {axis} should attach the scale '{dim}', has {attached or 'none'}")
    return None


# ------------------------------------------------------------------------------ running
def _shape_offences(data: TraceData) -> Iterator[Offence]:
    sizes = data.sizes
    for spec in ARRAYS:
        value = getattr(data, spec.field)
        expected = tuple(sizes[d] for d in spec.dims)
        if np.shape(value) != expected:
            yield Offence(spec.field, (), f"shape {np.shape(value)}, expected {expected} for axes {spec.dims}")


SHAPE_RULE = ValueRule("shapes", tuple(spec.field for spec in ARRAYS),
                       "every array has the lengths of its named axes", lambda view: next(_shape_offences(view.data), None))


def _label_offence(data: TraceData) -> Offence | None:
    """Condition names, kinds and routers, and the distance, as :meth:`TraceData.validate` sees them."""
    try:
        data.validate()
    except MosaicError as exc:
        return Offence("conditions", (), str(exc).removeprefix("inconsistent trace data: "))
    return None


LABEL_RULE = ValueRule("labels", ("condition_name", "condition_kind", "condition_router"),
                       "condition names are unique, kinds and routers are registered, the distance is known",
                       lambda view: _label_offence(view.data))


CHECKSUM_RULE = ValueRule("checksums", (), "every dataset's values match the checksum stored with it",
                          lambda view: None)  # run on the file by checksum_violations, not on arrays


def checksum_violations(h5: Any, source: str | os.PathLike) -> list[Violation]:
    """One violation per dataset of the open file ``h5`` that fails its checksum (none for files without)."""
    from mosaic.tracefile.checksums import find_mismatches

    mismatches, _ = find_mismatches(h5, source)
    return [Violation(CHECKSUM_RULE, Offence(m.dataset.lstrip("/"), (), m.detail))
            for m in mismatches]


def find_violations(data: TraceData, h5: Any = None) -> list[Violation]:
    """Every rule's first offence, shapes first. Rules reading a mis-shaped array are not run."""
    misshaped = {o.array for o in _shape_offences(data)}
    violations = [Violation(SHAPE_RULE, o) for o in _shape_offences(data)]
    view = TraceView(data, h5)
    for value_rule in (LABEL_RULE, *VALUE_RULES.values()):
        if misshaped and (misshaped & set(value_rule.arrays) or value_rule is LABEL_RULE):
            continue
        offence = value_rule.find(view)
        if offence is not None:
            violations.append(Violation(value_rule, offence))
    return violations


def check_trace_values(data: TraceData, h5: Any = None, *, source: str | os.PathLike = "trace") -> TraceData:
    """Raise a one-line :class:`MosaicError` at the first broken rule; return ``data`` if none is."""
    view = TraceView(data, h5)
    for value_rule in VALUE_RULES.values():
        offence = value_rule.find(view)
        if offence is not None:
            raise MosaicError(
                f"trace {source} is corrupt: {Violation(value_rule, offence)}; re-run `mosaic trace` to rewrite it "
                f"(`mosaic inspect --check` lists every violation)"
            )
    return data


__all__ = [
    "MEAN_TOLERANCE",
    "Offence",
    "TraceView",
    "VALUE_RULES",
    "ValueRule",
    "Violation",
    "CHECKSUM_RULE",
    "check_trace_values",
    "checksum_violations",
    "find_violations",
    "register_rule",
]
