"""Trace checksums: every single-bit flip in any dataset's data is detected on read; traces written
before checksums still read, and say so."""

from __future__ import annotations

import json
import struct

import h5py
import numpy as np
import pytest

from analysis import read_trace
from analysis.simulation.trace import simulate_data
from mosaic.app.cli import main
from mosaic.core.errors import MosaicError
from mosaic.tracefile import SCHEMA_VERSION, check_trace_file, read_trace_file, write_trace
from mosaic.tracefile.checksums import chunks_digest, digest, find_mismatches
from mosaic.tracefile.layout import UNCHECKED_VERSION


@pytest.fixture(scope="module")
def trace_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checksums")
    data = simulate_data(n_ids=12, queries_per_id=2, gallery_per_id=3, seed=3)
    new, old = folder / "new.h5", folder / "old.h5"
    write_trace(data, new)
    write_trace(data, old, checksums=False)
    return new, old


def _heap_object(raw: bytes, address: int, index: int) -> tuple[int, int]:
    """(start, size) of object ``index`` of the global heap collection at ``address``."""
    assert raw[address:address + 4] == b"GCOL"
    (size,) = struct.unpack_from("<Q", raw, address + 8)
    position, end = address + 16, address + size
    while position + 16 <= end:
        number, _, _, length = struct.unpack_from("<HHIQ", raw, position)
        if number == index:
            return position + 16, length
        if number == 0:
            break
        position += 16 + (length + 7) // 8 * 8
    raise AssertionError(f"heap object {index} not found at {address}")


def data_byte_ranges(path) -> dict[str, list[tuple[int, int]]]:
    """Per dataset, the (offset, length) ranges of the file bytes that hold its data: contiguous
    storage, every chunk of a chunked one, and the characters of variable-length strings on the heap."""
    raw = path.read_bytes()
    ranges: dict[str, list[tuple[int, int]]] = {}
    with h5py.File(path, "r") as h5:
        datasets = []
        h5.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        for ds in datasets:
            if ds.chunks is not None:
                chunks = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
                spans = [(c.byte_offset, c.size) for c in chunks]
            elif h5py.check_string_dtype(ds.dtype) is not None:
                offset = ds.id.get_offset()
                spans = []
                for i in range(ds.size):  # each element: length, heap collection address, object index
                    length, address, index = struct.unpack_from("<IQI", raw, offset + 16 * i)
                    start, size = _heap_object(raw, address, index)
                    assert size == length
                    spans.append((start, size))
            else:
                spans = [(ds.id.get_offset(), ds.id.get_storage_size())]
            ranges[ds.name] = [(o, n) for o, n in spans if n > 0]
    return ranges


def test_every_dataset_has_a_checksum_and_the_file_says_so(trace_pair):
    new, _ = trace_pair
    with h5py.File(new, "r") as h5:
        assert h5.attrs["checksums"] == "crc32" and h5.attrs["schema_version"] == SCHEMA_VERSION
        found = []
        h5.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
        assert len(found) >= 40
        for ds in found:
            expected = chunks_digest(ds) if ds.chunks else digest(ds[()])
            assert ds.attrs["checksum"] == expected and expected.startswith("crc32"), ds.name
        assert {ds.name for ds in found if ds.chunks} == {"/routing/gates", "/retrieval/topk_index", "/retrieval/topk_distance"}
    assert find_mismatches(h5py.File(new, "r"), new) == ([], len(found))


def test_every_single_bit_flip_in_every_dataset_is_detected(trace_pair, tmp_path):
    """Per round, one random bit of every dataset's data is flipped at once: each dataset is checked
    on its own, so each of its flips must be reported for that dataset."""
    new, _ = trace_pair
    ranges = data_byte_ranges(new)
    # A trace of a checkpoint samples no pairs: its /pairs datasets hold no byte that could flip.
    empty = {name for name, spans in ranges.items() if not spans}
    assert empty <= {"/pair", "/pairs/query", "/pairs/gallery", "/pairs/distance"}, empty
    ranges = {name: spans for name, spans in ranges.items() if spans}
    assert len(ranges) >= 40
    pristine = new.read_bytes()
    rng = np.random.default_rng(27)
    rounds, damaged = 200, tmp_path / "damaged.h5"
    for _ in range(rounds):
        raw = bytearray(pristine)
        for spans in ranges.values():
            sizes = np.array([n for _, n in spans])
            span = rng.choice(len(spans), p=sizes / sizes.sum())
            offset, length = spans[span]
            raw[offset + int(rng.integers(length))] ^= 1 << int(rng.integers(8))
        damaged.write_bytes(raw)
        with h5py.File(damaged, "r") as h5:
            mismatches, checked = find_mismatches(h5, damaged)
        assert {m.dataset for m in mismatches} == set(ranges) and checked == len(ranges) + len(empty)
    # flips one at a time through the reader every command uses: one line naming file and dataset
    for name in ("/retrieval/ap", "/conditions/cmc", "/routing/gates", "/gallery_images/path", "/rank"):
        offset, length = ranges[name][0]
        raw = bytearray(pristine)
        raw[offset + length // 2] ^= 1
        damaged.write_bytes(raw)
        with pytest.raises(MosaicError, match=rf"trace {damaged}: dataset {name} (fails its checksum|cannot be read)") as err:
            read_trace_file(damaged)
        assert "\n" not in str(err.value)
        with pytest.raises(MosaicError, match=name):
            read_trace(damaged)
        violations = check_trace_file(damaged)
        assert [v.rule.name for v in violations] == ["checksums"] and violations[0].array == name.lstrip("/")


def test_the_lowest_bit_of_one_ap_value_is_caught(trace_pair, tmp_path):
    """The flip the value rules cannot see: a valid AP moved in its last mantissa bit."""
    new, _ = trace_pair
    with h5py.File(new, "r") as h5:
        ds = h5["retrieval/ap"]
        offset, values = ds.id.get_offset(), ds[()]
    first_valid = int(np.flatnonzero(np.isfinite(values.reshape(-1)))[0])
    raw = bytearray(new.read_bytes())
    raw[offset + 4 * first_valid] ^= 1  # little-endian: the lowest mantissa byte
    damaged = tmp_path / "ap.h5"
    damaged.write_bytes(raw)
    with pytest.raises(MosaicError, match="dataset /retrieval/ap fails its checksum"):
        read_trace_file(damaged)


def test_a_trace_written_without_checksums_still_reads_and_says_so(trace_pair, capsys):
    new, old = trace_pair
    with h5py.File(old, "r") as h5:
        assert "checksums" not in h5.attrs and h5.attrs["schema_version"] == UNCHECKED_VERSION
        assert all("checksum" not in h5[name].attrs for name in ("retrieval/ap", "condition"))
    a, b = read_trace(new), read_trace(old)
    assert a.checksums == "crc32" and b.checksums is None and b.schema_version == UNCHECKED_VERSION
    np.testing.assert_array_equal(a.data.ap, b.data.ap)
    assert check_trace_file(old) == []
    assert main(["inspect", str(old)]) == 0
    assert "checksums: no checksums" in capsys.readouterr().out
    assert main(["inspect", "--json", str(new)]) == 0
    assert json.loads(capsys.readouterr().out)["checksums"] == "crc32"


def test_inspect_check_lists_the_corrupted_dataset(trace_pair, tmp_path, capsys):
    new, _ = trace_pair
    ranges = data_byte_ranges(new)
    raw = bytearray(new.read_bytes())
    for name in ("/conditions/cmc", "/query_images/pid"):
        offset, length = ranges[name][0]
        raw[offset + length - 1] ^= 0x80
    damaged = tmp_path / "two.h5"
    damaged.write_bytes(raw)
    assert main(["inspect", "--check", str(damaged)]) == 2
    out = capsys.readouterr()
    assert "conditions/cmc" in out.out and "query_images/pid" in out.out and "checksums" in out.err
    assert main(["inspect", "--check", str(new)]) == 0
    assert "every dataset matches its crc32 checksum" in capsys.readouterr().out


def test_report_and_study_refuse_a_corrupted_trace_in_one_line(trace_pair, tmp_path, capsys):
    new, old = trace_pair
    offset, length = data_byte_ranges(new)["/retrieval/inp"][0]
    raw = bytearray(new.read_bytes())
    raw[offset + length // 3] ^= 0x04
    damaged = tmp_path / "inp.h5"
    damaged.write_bytes(raw)
    for args in (["report", str(damaged), "--out", str(tmp_path / "r.html")],
                 ["study", str(old), str(damaged), "--out", str(tmp_path / "s.html")]):
        assert main(args) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: trace {damaged}: dataset /retrieval/inp fails its checksum")
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "s.html").exists()
