"""The trace: the one contract between ``mosaic`` (which writes it) and ``analysis`` (which reads it).

Torch-free. :class:`TraceData` (:mod:`.data`) is the in-memory form, plain numpy arrays with
named axes; :func:`write_trace` (:mod:`.write`) and :func:`read_trace_data` (:mod:`.read`) move it
to and from the self-describing HDF5 layout documented in ``docs/trace-format.md``, whose arrays
are data in :mod:`.layout`; :mod:`.checksums` the CRC-32 of every dataset that every read verifies,
:mod:`.check` the value rules every read applies, and :mod:`.size` estimates a file's size before it
is written. Import them from this package.

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

from mosaic.tracefile.data import FILL_METHODS, ROUTERS, TraceData, default_router
from mosaic.tracefile.layout import ARRAYS, COORDINATES, ENCODING_TYPE, GROUPS, SCHEMA_VERSION, ArraySpec
from mosaic.tracefile.read import (
    check_schema_version,
    check_trace_file,
    open_trace_file,
    parse_version,
    read_trace_attrs,
    read_trace_data,
    read_trace_file,
)
from mosaic.tracefile.write import write_trace

__all__ = [
    "ARRAYS", "COORDINATES", "ENCODING_TYPE", "FILL_METHODS", "GROUPS", "ROUTERS", "SCHEMA_VERSION", "ArraySpec",
    "TraceData", "check_schema_version", "check_trace_file", "default_router", "open_trace_file", "parse_version",
    "read_trace_attrs", "read_trace_data", "read_trace_file", "write_trace",
]
