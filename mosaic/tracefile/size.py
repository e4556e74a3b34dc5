"""How many bytes a trace takes on disk, known before any image is read (the tracer's space check).

Derived from the layout (:mod:`mosaic.tracefile.layout`), array by array:

* an uncompressed array takes its element count times its item size;
* a variable-length string takes a 16-byte reference in its array plus a global-heap object
  (a 16-byte header and the UTF-8 text padded to 8 bytes);
* the three compressed arrays (gzip over byte-shuffled chunks, one chunk per condition) are counted
  by what their values can hold, not by their width, because that is what gzip keeps:

  - ``topk_index``: int32 indices into a gallery of N images: only the low byte planes that N
    needs vary, the others are constant;
  - ``topk_distance``: float32 distances of unit vectors, in [0, 2]: the sign-and-exponent byte
    takes a handful of values, the three mantissa bytes are noise and stay;
  - ``gates``: for a condition that routes experts, a query's gates are the same in every layer and
    take the values 0, 1 or a group's fixed gate: about two bits per (query, expert). A condition
    without experts (``none``, ``code``) stores zeros, which compress to nothing;

* the metadata: the provenance and the schema as JSON (each stored twice: as one root attribute
  and spread over ``/provenance`` or ``/schema``), and HDF5's own bookkeeping (object headers,
  dimension scales, chunk indexes), measured on this layout: about 64 KiB plus 256 bytes per condition.

``tests/test_disk_full.py`` checks the estimate against written traces; ``benchmarks/README.md``
gives the ratio on a Market-1501-sized one. Torch-free.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mosaic.tracefile.layout import ARRAYS, COORDINATES

__all__ = ["estimate_trace_bytes"]

REFERENCE_BYTES = 16      # a variable-length string's entry in its array
HEAP_OBJECT_BYTES = 16    # the global-heap header of each string
SHORT_TEXT_BYTES = 16     # kinds, routers, fill methods, families: short labels
BOOKKEEPING_BYTES = 64 * 2**10
BOOKKEEPING_PER_CONDITION = 256
DISTANCE_BYTES = 3        # of a float32 distance's four, after shuffle and gzip
GATE_BITS = 2             # per (query, expert) of a condition that routes experts

_COMPRESSED = {"topk_index", "topk_distance", "gates"}


def _pad8(n: int) -> int:
    return -(-n // 8) * 8


def _string_bytes(texts: Sequence[str]) -> int:
    return sum(REFERENCE_BYTES + HEAP_OBJECT_BYTES + _pad8(len(t.encode("utf-8", "backslashreplace"))) for t in texts)


def _short_strings(n: int) -> int:
    return n * (REFERENCE_BYTES + HEAP_OBJECT_BYTES + SHORT_TEXT_BYTES)


def _index_bytes(n_gallery: int) -> int:
    """Bytes of an int32 gallery index that vary (the byte planes gzip cannot drop)."""
    return max(1, -(-int(max(n_gallery - 1, 1)).bit_length() // 8))


def estimate_trace_bytes(
    sizes: Mapping[str, int],
    *,
    query_paths: Sequence[str],
    gallery_paths: Sequence[str],
    condition_names: Sequence[str],
    routed_conditions: int,
    metadata_bytes: int,
) -> int:
    """Bytes of the trace file of these sizes (the axes of :data:`mosaic.tracefile.layout.COORDINATES`).

    ``routed_conditions``: conditions whose gates are not all zero (they switch experts on).
    ``metadata_bytes``: length of the provenance and schema JSON (each is stored twice).
    """
    C, Q, N, K = (int(sizes[a]) for a in ("condition", "query", "gallery", "topk"))
    E = int(sizes["expert"])
    strings = {"query_path": _string_bytes(query_paths), "gallery_path": _string_bytes(gallery_paths)}
    compressed = {
        "topk_index": C * Q * K * _index_bytes(N),
        "topk_distance": C * Q * K * DISTANCE_BYTES,
        "gates": int(routed_conditions) * Q * E * GATE_BITS // 8,
    }
    total = 0
    for spec in ARRAYS:
        count = int(np.prod([sizes.get(d, 0) for d in spec.dims]))  # an axis a caller omits is empty
        if spec.field in _COMPRESSED:
            total += compressed[spec.field]
        elif spec.dtype == "str":
            total += strings.get(spec.field, _short_strings(count))
        else:
            total += count * np.dtype(spec.dtype).itemsize
    for dim, (dtype, _, _) in COORDINATES.items():
        if dtype == "str":
            total += _string_bytes(condition_names) if dim == "condition" else _short_strings(int(sizes[dim]))
        else:
            total += int(sizes.get(dim, 0)) * np.dtype(dtype).itemsize
    total += 6 * _short_strings(E)  # the /schema arrays: per expert and per group labels
    total += 2 * int(metadata_bytes)
    return total + BOOKKEEPING_BYTES + BOOKKEEPING_PER_CONDITION * C
