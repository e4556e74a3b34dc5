"""Reading a trace file back: version check, arrays, root attributes (:mod:`mosaic.tracefile.layout`)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mosaic.core.errors import MosaicError
from mosaic.core.schema import AttributeSchema
from mosaic.tracefile.check import Violation, check_trace_values, checksum_violations, find_violations
from mosaic.tracefile.checksums import file_has_checksums, read_dataset, verify_rest
from mosaic.tracefile.data import TraceData
from mosaic.tracefile.layout import ARRAYS, COORDINATES, ENCODING_TYPE, SCHEMA_VERSION

__all__ = ["check_schema_version", "check_trace_file", "open_trace_file", "parse_version", "read_trace_attrs",
           "read_trace_data", "read_trace_file"]


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


def _read_array(h5, path: str, dtype: str, file_path, verify: bool) -> np.ndarray:
    """One dataset's values, checked against its checksum when ``verify`` (:mod:`.checksums`)."""
    try:
        ds = h5[path]
    except KeyError:
        raise MosaicError(f"trace {file_path} lacks the dataset /{path}: the file is incomplete or damaged") from None
    raw = read_dataset(ds, file_path, verify=verify)
    if dtype == "str":
        if not np.size(raw):
            return np.zeros(ds.shape, dtype="<U1")
        try:
            text = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in raw.reshape(-1).tolist()]
        except UnicodeDecodeError:
            raise MosaicError(f"trace {file_path}: dataset /{path} holds text that is not UTF-8: the file is "
                              "corrupted; restore an intact copy or re-run `mosaic trace`") from None
        return np.asarray(text, dtype=object).astype(str).reshape(raw.shape)
    return raw.astype(dtype, copy=False)


def read_trace_data(path: str | os.PathLike) -> TraceData:
    """Read a trace written by :func:`write_trace` back into a :class:`TraceData`."""
    return read_trace_file(path)[0]


def read_trace_file(path: str | os.PathLike) -> tuple[TraceData, dict[str, Any]]:
    """The :class:`TraceData` and the root attributes (as :func:`read_trace_attrs`), in one open.

    Every dataset is checked against its checksum (files of schema 1.3.0 on); a mismatch is one
    :class:`MosaicError` line naming the file and the dataset.
    """
    with open_trace_file(path) as h5, damaged_file_errors(path):
        return _read(h5, path), _root_attrs(h5)


@contextlib.contextmanager
def damaged_file_errors(path):
    """Turn what h5py raises on damaged chunks or truncated data into one line naming ``path``."""
    try:
        yield
    except MosaicError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise MosaicError(
            f"trace {path} could not be read ({type(exc).__name__}: {exc}): the file is damaged; re-run `mosaic trace`"
        ) from None


def _read(h5, path, *, checked: bool = True) -> TraceData:
    """The arrays of an open trace; ``checked``: checksums of every dataset, shapes and value rules
    too (mosaic.tracefile.checksums, mosaic.tracefile.check)."""
    verify = checked and file_has_checksums(h5)
    schema = AttributeSchema.from_json(_attr_str(h5.attrs["attribute_schema"]))
    version = parse_version(_attr_str(h5.attrs.get("schema_version", h5.attrs.get("encoding_version"))))
    read = [spec for spec in ARRAYS if spec.path in h5 or parse_version(spec.since) <= version]  # older files lack newer arrays
    arrays = {spec.field: _read_array(h5, spec.path, spec.dtype, path, verify) for spec in read}
    arrays["condition_name"] = _read_array(h5, "condition", "str", path, verify)
    arrays["layers"] = _read_array(h5, "layer", "int32", path, verify)
    if verify:  # the datasets not read into arrays: coordinates, the schema's tables
        verify_rest(h5, path, ["/" + spec.path for spec in read] + ["/condition", "/layer"])

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
    return check_trace_values(data.validate(), h5, source=path)


def check_trace_file(path: str | os.PathLike) -> list[Violation]:
    """Every violation in the trace at ``path``, rather than the first (which reading raises):
    every dataset that fails its checksum, then every broken value rule."""
    with open_trace_file(path) as h5:
        corrupted = checksum_violations(h5, path)
        if corrupted:  # values that are not what was written: the value rules would judge noise
            return corrupted
        with damaged_file_errors(path):
            data = _read(h5, path, checked=False)
        return find_violations(data, h5)


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
