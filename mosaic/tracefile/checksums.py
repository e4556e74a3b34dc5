"""End-to-end checksums of a trace: a CRC-32 of every dataset's values, stored on the dataset and
verified whenever the dataset is read.

HDF5's own fletcher32 filter was the other candidate. It checks only chunked datasets (most of a
trace is small contiguous arrays), it covers the heap references of a variable-length string
rather than its characters, and it needs every dataset re-chunked; ``benchmarks/bench_checksums.py``
measures both. A digest of the *values* as numpy sees them covers every dataset whatever its
storage (contiguous, gzip chunks, strings on the global heap), costs one pass of ``zlib.crc32``
(several GB/s) on read and eight hex digits per dataset on disk, and any HDF5 reader still opens
the file. A CRC-32 detects every single-bit error and every burst of up to 32 bits.

The digest of an array (:func:`digest`):

* numbers and booleans: CRC-32 of the C-order, little-endian bytes of the stored dtype;
* variable-length strings: CRC-32 of each value's UTF-8 bytes followed by one NUL byte (HDF5
  strings cannot hold NUL), in C order.

It is stored as the dataset attribute ``checksum = "crc32:xxxxxxxx"``. The compressed (chunked)
datasets also carry HDF5's fletcher32 filter, which checks the stored chunk bytes before they are
decompressed: a deflate stream has bits that decompression ignores, so a flip there changes no value
and only a checksum of the stored bytes sees it. The root attribute
``checksums = "crc32"`` says that every dataset of the file carries one (schema 1.2.0 on). Files
written before have no checksums and read as they always did. Torch-free.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from mosaic.core.errors import MosaicError

__all__ = ["ALGORITHM", "ATTRIBUTE", "ROOT_ATTRIBUTE", "Mismatch", "digest", "file_has_checksums",
           "find_mismatches", "read_dataset", "stamp", "verify_rest"]

ALGORITHM = "crc32"
ATTRIBUTE = "checksum"        # on every dataset: "crc32:xxxxxxxx"
ROOT_ATTRIBUTE = "checksums"  # on the root: the algorithm, present when every dataset has a checksum


def digest(values: Any) -> str:
    """``"crc32:xxxxxxxx"`` of ``values`` (a numpy array; an object array holds str or bytes)."""
    arr = np.asarray(values)
    if arr.dtype == object:
        crc = 0
        for value in arr.reshape(-1).tolist():
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
            crc = zlib.crc32(b"\0", zlib.crc32(raw, crc))
    else:
        arr = np.ascontiguousarray(arr)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        crc = zlib.crc32(arr.reshape(-1).view(np.uint8)) if arr.size else 0
    return f"{ALGORITHM}:{crc:08x}"


def stamp(dataset, values: Any) -> None:
    """Store the digest of ``values`` (what was just written to ``dataset``) on it."""
    dataset.attrs[ATTRIBUTE] = digest(values)


def file_has_checksums(h5) -> bool:
    value = h5.attrs.get(ROOT_ATTRIBUTE)
    if value is None:
        return False
    value = value.decode() if isinstance(value, bytes) else str(value)
    if value != ALGORITHM:
        raise MosaicError(f"trace {h5.filename} uses checksums {value!r}, unknown to this mosaic (knows {ALGORITHM}): upgrade mosaic")
    return True


@dataclass(frozen=True)
class Mismatch:
    dataset: str   # HDF5 path, with its leading '/'
    detail: str    # what differs, in words

    def message(self, file: Any) -> str:
        return (f"trace {file}: dataset {self.dataset} {self.detail}: the file is corrupted; "
                "restore an intact copy or re-run `mosaic trace`")


def _stored(dataset) -> str | None:
    value = dataset.attrs.get(ATTRIBUTE)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _check(dataset, values: np.ndarray) -> Mismatch | None:
    stored = _stored(dataset)
    if stored is None:
        return Mismatch(dataset.name, "has no checksum although the file says every dataset has one")
    computed = digest(values)
    if computed != stored:
        return Mismatch(dataset.name, f"fails its checksum (stored {stored}, computed {computed})")
    return None


_READ_ERRORS = (OSError, ValueError, RuntimeError, KeyError)


def _unreadable(dataset, exc: Exception) -> Mismatch:
    if getattr(dataset, "fletcher32", False) and isinstance(exc, OSError):  # HDF5 checks it before decoding
        return Mismatch(dataset.name, f"fails its checksum (HDF5 fletcher32 of a stored chunk: {exc})")
    return Mismatch(dataset.name, f"cannot be read ({type(exc).__name__}: {exc})")


def read_dataset(dataset, file: Any, *, verify: bool) -> np.ndarray:
    """The values of ``dataset`` as stored, checked against its checksum when ``verify``.

    Variable-length strings come back as an object array of ``bytes``. A mismatch, or data HDF5
    cannot decode, raises one :class:`MosaicError` line naming ``file`` and the dataset.
    """
    try:
        values = np.asarray(dataset[()])
    except _READ_ERRORS as exc:
        raise MosaicError(_unreadable(dataset, exc).message(file)) from None
    if verify:
        mismatch = _check(dataset, values)
        if mismatch is not None:
            raise MosaicError(mismatch.message(file))
    return values


def _datasets(h5) -> list:
    found = []
    h5.visititems(lambda name, obj: found.append(obj) if hasattr(obj, "dtype") and hasattr(obj, "shape") else None)
    return found


def verify_rest(h5, file: Any, done: Iterable[str]) -> None:
    """Verify every dataset of ``h5`` not named in ``done`` (HDF5 paths with their leading '/')."""
    done = set(done)
    for dataset in _datasets(h5):
        if dataset.name not in done:
            read_dataset(dataset, file, verify=True)


def find_mismatches(h5, file: Any) -> tuple[list[Mismatch], int]:
    """Every dataset whose values fail (or cannot be read for) their checksum, and how many were checked.

    ``([], 0)`` for a file written without checksums.
    """
    if not file_has_checksums(h5):
        return [], 0
    found, datasets = [], _datasets(h5)
    for dataset in datasets:
        try:
            values = np.asarray(dataset[()])
        except _READ_ERRORS as exc:
            found.append(_unreadable(dataset, exc))
            continue
        mismatch = _check(dataset, values)
        if mismatch is not None:
            found.append(mismatch)
    return found, len(datasets)
