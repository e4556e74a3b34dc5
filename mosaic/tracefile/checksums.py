"""End-to-end checksums of a trace: a CRC-32 of every dataset, stored on the dataset and verified
whenever the dataset is read.

What the CRC-32 covers depends on how the dataset is stored (:func:`stamp`):

* ``crc32:xxxxxxxx`` -- contiguous datasets (every array but the compressed three): the values
  as numpy reads them. Numbers and booleans: the C-order, little-endian bytes of the stored dtype.
  Variable-length strings: each value's UTF-8 bytes followed by one NUL byte (HDF5 strings cannot
  hold NUL), in C order -- the characters, which live on HDF5's global heap, not only the heap
  references in the dataset's own storage.
* ``crc32-chunks:xxxxxxxx`` -- chunked, compressed datasets (``routing/gates``,
  ``retrieval/topk_*``): the stored bytes of every chunk, compressed as they are, in the order of
  the chunks' positions in the array. Checked before anything is decompressed, so every flipped
  bit is caught -- including the bits of a deflate stream that decompression ignores, which
  change no value -- and it costs a CRC of the compressed bytes, not of the much larger values.

The root attribute ``checksums = "crc32"`` says that every dataset carries one (schema 1.3.0 on);
files written before have none and read as they always did.

Why not HDF5's fletcher32 filter alone: HDF5 refuses it on variable-length strings ("not suitable
for filters"), so paths, condition names and the schema's labels would go unprotected, and it needs
every dataset re-chunked, which grows a Market-sized trace by 0.7 % against 0.01 % here; reading
costs about the same (``benchmarks/bench_checksums.py`` measures both). A CRC-32 (zlib, several
GB/s) detects every single-bit error and every burst of up to 32 bits; any HDF5 reader still opens
the file, the checksums being plain attributes. Torch-free.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from mosaic.core.errors import MosaicError

__all__ = ["ALGORITHM", "ATTRIBUTE", "CHUNKS", "ROOT_ATTRIBUTE", "Mismatch", "chunks_digest", "digest",
           "file_has_checksums", "find_mismatches", "read_dataset", "stamp", "verify_rest"]

ALGORITHM = "crc32"
ATTRIBUTE = "checksum"        # on every dataset: "crc32:xxxxxxxx" (values) or "crc32-chunks:xxxxxxxx" (stored chunks)
CHUNKS = "crc32-chunks"
ROOT_ATTRIBUTE = "checksums"  # on the root: the algorithm, present when every dataset has a checksum


def digest(values: Any) -> str:
    """``"crc32:xxxxxxxx"`` of ``values`` (a numpy array; an object array holds str or bytes)."""
    arr = np.asarray(values)
    if arr.dtype == object:
        values = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in arr.reshape(-1).tolist()]
        crc = zlib.crc32(b"\0".join(values) + b"\0") if values else 0  # each value, then a NUL
    else:
        arr = np.ascontiguousarray(arr)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        crc = zlib.crc32(arr.reshape(-1).view(np.uint8)) if arr.size else 0
    return f"{ALGORITHM}:{crc:08x}"


def chunks_digest(dataset) -> str:
    """``"crc32-chunks:xxxxxxxx"`` of a chunked dataset's stored chunk bytes, in chunk-position order."""
    ident = dataset.id
    chunks = sorted(ident.get_chunk_info(i).chunk_offset for i in range(ident.get_num_chunks()))
    crc = 0
    for offset in chunks:
        crc = zlib.crc32(ident.read_direct_chunk(offset)[1], crc)
    return f"{CHUNKS}:{crc:08x}"


def stamp(dataset, values: Any) -> None:
    """Store the checksum of ``dataset`` (whose ``values`` were just written) on it."""
    dataset.attrs[ATTRIBUTE] = chunks_digest(dataset) if dataset.chunks is not None else digest(values)


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


_READ_ERRORS = (OSError, ValueError, RuntimeError, KeyError)


def _compare(dataset, stored: str, compute) -> Mismatch | None:
    try:
        computed = compute()
    except _READ_ERRORS as exc:
        return _unreadable(dataset, exc)
    if computed != stored:
        return Mismatch(dataset.name, f"fails its checksum (stored {stored}, computed {computed})")
    return None


def _unreadable(dataset, exc: Exception) -> Mismatch:
    return Mismatch(dataset.name, f"cannot be read ({type(exc).__name__}: {exc})")


def _read_checked(dataset, verify: bool) -> tuple[np.ndarray | None, Mismatch | None]:
    """The values, and what is wrong with them when ``verify``: stored chunks are checked before
    they are decompressed, values after they are read."""
    stored = _stored(dataset) if verify else None
    if verify and stored is None:
        return None, Mismatch(dataset.name, "has no checksum although the file says every dataset has one")
    chunked = verify and stored.startswith(f"{CHUNKS}:")
    if chunked:
        mismatch = _compare(dataset, stored, lambda: chunks_digest(dataset))
        if mismatch is not None:
            return None, mismatch
    try:
        values = np.asarray(dataset[()])
    except _READ_ERRORS as exc:
        return None, _unreadable(dataset, exc)
    if verify and not chunked:
        return values, _compare(dataset, stored, lambda: digest(values))
    return values, None


def read_dataset(dataset, file: Any, *, verify: bool) -> np.ndarray:
    """The values of ``dataset`` as stored, checked against its checksum when ``verify``.

    Variable-length strings come back as an object array of ``bytes``. A mismatch, or data HDF5
    cannot decode, raises one :class:`MosaicError` line naming ``file`` and the dataset.
    """
    values, mismatch = _read_checked(dataset, verify)
    if mismatch is not None:
        raise MosaicError(mismatch.message(file))
    return values


def _dataset_names(h5) -> list[str]:
    """Every dataset's path (a trace's groups are one level deep; h5py's visititems is slower)."""
    names = []
    for key, kind in _links(h5):
        if kind == "group":
            names.extend(f"/{key}/{sub}" for sub, sub_kind in _links(h5[key]) if sub_kind == "dataset")
        elif kind == "dataset":
            names.append(f"/{key}")
    return names


def _links(group) -> list[tuple[str, str]]:
    import h5py

    out = []
    for key in group.keys():
        cls = group.get(key, getclass=True)
        out.append((key, "group" if cls is h5py.Group else "dataset" if cls is h5py.Dataset else "other"))
    return out


def _datasets(h5) -> list:
    return [h5[name] for name in _dataset_names(h5)]


def verify_rest(h5, file: Any, done: Iterable[str]) -> None:
    """Verify every dataset of ``h5`` not named in ``done`` (HDF5 paths with their leading '/')."""
    done = set(done)
    for name in _dataset_names(h5):
        if name not in done:
            read_dataset(h5[name], file, verify=True)


def find_mismatches(h5, file: Any) -> tuple[list[Mismatch], int]:
    """Every dataset whose values fail (or cannot be read for) their checksum, and how many were checked.

    ``([], 0)`` for a file written without checksums.
    """
    if not file_has_checksums(h5):
        return [], 0
    datasets = _datasets(h5)
    found = [mismatch for _, mismatch in map(lambda ds: _read_checked(ds, True), datasets) if mismatch is not None]
    return found, len(datasets)
