"""Writing a :class:`mosaic.tracefile.TraceData` to the HDF5 layout of :mod:`mosaic.tracefile.layout`, atomically."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mosaic.core.errors import MosaicError
from mosaic.core.jsonsafe import jsonable
from mosaic.core.schema import AttributeSchema
from mosaic.tracefile.checksums import ALGORITHM, ROOT_ATTRIBUTE, stamp
from mosaic.tracefile.data import TraceData
from mosaic.tracefile.layout import ARRAYS, COORDINATES, ENCODING_TYPE, GROUPS, SCHEMA_VERSION, UNCHECKED_VERSION

__all__ = ["attribute_json", "trace_file_image", "write_trace"]


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
        "pair": np.arange(data.n_pairs, dtype=np.int64),
    }


def _write_array(h5, path: str, values, dtype: str, *, compress: bool = False, checksum: bool = True):
    """One dataset, stamped with the checksum of its values (:mod:`mosaic.tracefile.checksums`)."""
    kwargs: dict[str, Any] = {}
    if dtype == "str":
        arr, kwargs = _as_str_array(values), dict(dtype=_str_dtype())
    else:
        arr = np.ascontiguousarray(np.asarray(values).astype(dtype, copy=False))
        if compress and arr.size > 0:
            # One chunk per condition keeps "all queries of one condition" a single read.
            chunks = (1,) + tuple(max(1, n) for n in arr.shape[1:])
            kwargs = dict(chunks=chunks, compression="gzip", compression_opts=4, shuffle=True)
    ds = h5.create_dataset(path, data=arr, **kwargs)
    if checksum:
        stamp(ds, arr)
    return ds


def _describe(dataset, long_name: str, units: str, description: str) -> None:
    dataset.attrs["long_name"] = long_name
    dataset.attrs["units"] = units
    dataset.attrs["description"] = description


def _jsonable(value: Any) -> Any:
    """JSON-safe copy (mosaic.core.jsonsafe); an object of unknown type is recorded as its repr."""
    return jsonable(value, unknown=repr)


def attribute_json(value: Any) -> str:
    return json.dumps(_jsonable(value), sort_keys=True, ensure_ascii=False)


def _flat_attribute(value: Any):
    """An HDF5 attribute for a provenance entry: scalars as they are, anything nested as JSON."""
    value = _jsonable(value)
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def write_trace(data: TraceData, path: str | os.PathLike, *, checksums: bool = True) -> Path:
    """Write ``data`` to ``path`` as a self-describing HDF5 trace (atomically) and return the path.

    Every dataset carries the checksum of its values (:mod:`mosaic.tracefile.checksums`), verified
    on every read; ``checksums=False`` writes the layout of schema 1.2.0, without them (what files
    written before looked like: for comparisons and tests).

    The file is built in memory and its bytes written under a temporary name beside ``path``,
    renamed only when complete, so an interrupted write leaves ``path`` untouched. HDF5 itself never
    writes to the disk: a write it cannot finish (a full disk) can crash the library when the file
    is closed, while the same failure of a Python write is one :class:`MosaicError` line.
    """
    from mosaic.core.diskspace import OUT_FIX
    from mosaic.core.fileio import atomic_path

    data.validate()
    path = Path(path)
    image = trace_file_image(data, checksums=checksums)
    with atomic_path(path, needed=len(image), fix=OUT_FIX) as tmp:
        tmp.write_bytes(image)
    return path


_CORE_BLOCK = 4 * 2**20  # the in-memory file grows by this much at a time


def trace_file_image(data: TraceData, *, checksums: bool = True) -> bytes:
    """The bytes of the HDF5 trace of ``data``, built in memory (HDF5's core driver, no backing file)."""
    import secrets

    import h5py

    name = f"mosaic-trace-{secrets.token_hex(8)}.h5"  # the core driver's files are named; never on disk
    with h5py.File(name, "w", driver="core", backing_store=False, block_size=_CORE_BLOCK, track_order=True) as h5:
        _write_contents(h5, data, checksums)
        h5.flush()
        return h5.id.get_file_image()


def _write_contents(h5, data: TraceData, checksums: bool) -> None:
    from mosaic import __version__

    version = SCHEMA_VERSION if checksums else UNCHECKED_VERSION
    h5.attrs["encoding_type"] = ENCODING_TYPE
    h5.attrs["encoding_version"] = version
    h5.attrs["schema_version"] = version
    if checksums:
        h5.attrs[ROOT_ATTRIBUTE] = ALGORITHM
    h5.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    h5.attrs["mosaic_version"] = __version__
    h5.attrs["title"] = "mosaic retrieval trace"
    h5.attrs["distance"] = data.distance
    h5.attrs["attribute_schema"] = data.schema.to_json()
    h5.attrs["schema_fingerprint"] = data.schema.fingerprint()
    h5.attrs["provenance"] = attribute_json(data.provenance)
    h5.attrs["dataset"] = attribute_json(data.dataset)

    scales = {}
    for dim, values in _coordinate_values(data).items():
        dtype, long_name, description = COORDINATES[dim]
        ds = _write_array(h5, dim, values, dtype, checksum=checksums)
        ds.make_scale(dim)
        _describe(ds, long_name, "1" if dtype != "str" else "", description)
        scales[dim] = ds

    for name, description in GROUPS.items():
        grp = h5.create_group(name, track_order=True)
        grp.attrs["encoding_type"] = f"{ENCODING_TYPE}/{name}"
        grp.attrs["encoding_version"] = version
        grp.attrs["description"] = description

    for spec in ARRAYS:
        ds = _write_array(h5, spec.path, getattr(data, spec.field), spec.dtype, compress=spec.compress, checksum=checksums)
        for axis, dim in enumerate(spec.dims):
            ds.dims[axis].attach_scale(scales[dim])
        _describe(ds, spec.long_name, spec.units, spec.description)

    _write_schema_group(h5["schema"], data.schema, scales, checksums)
    for key, value in data.provenance.items():
        h5["provenance"].attrs[str(key)] = _flat_attribute(value)


def _write_schema_group(grp, schema: AttributeSchema, scales, checksums: bool) -> None:
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
        ds = _write_array(grp, name, values, "str", checksum=checksums)
        ds.dims[0].attach_scale(scales[dim])
        _describe(ds, name.replace("_", " "), "", description.capitalize() + ".")
    counts = _write_array(grp, "group_n_states", [len(g.states) for g in schema.groups], "int32", checksum=checksums)
    counts.dims[0].attach_scale(scales["group"])
    _describe(counts, "number of states", "1", "Number of states (and experts) of the group.")
    codes = _write_array(grp, "expert_state_code", [schema.group(g).code(s) for g, s in schema.experts], "int16",
                         checksum=checksums)
    codes.dims[0].attach_scale(scales["expert"])
    _describe(codes, "state code of the expert", "1",
              "The state code (as in query_images/states) that switches this expert on under the oracle.")
