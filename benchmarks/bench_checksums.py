"""Cost of the trace checksums: write time, read time and file size with and without them, on a
Market-1501-sized simulated trace.

    .venv/bin/python -m benchmarks.bench_checksums

The trace is ``bench_tracecheck``'s: 3,368 queries of 750 identities, 15,913 gallery images, the 12
Market groups, 62 conditions, gates on 4 expert-carrying blocks. The baseline, timed in the same
run and interleaved with the checked variant, is the same trace written without checksums
(``write_trace(..., checksums=False)``, the schema 1.2.0 layout) and read by the same
``analysis.read_trace``, which then verifies nothing. The design alternative, HDF5's fletcher32
filter on every dataset (each re-chunked to hold it), is measured by copying the baseline file
with h5py and reading every dataset back raw, beside the same raw read of the other two files.
The verification alone is the checked file read with and without it (``verification off``).
Best of ``--rounds`` (30), the variants interleaved in every round, in CPU seconds of this process.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.bench_tracecheck import MARKET


def _fletcher32_copy(source: Path, target: Path) -> None:
    """Every dataset of ``source`` re-created chunked with the fletcher32 filter (gzip kept where present).

    HDF5 refuses filters on variable-length strings ("not suitable for filters"): those stay
    unprotected, copied as they are.
    """
    import h5py

    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                if h5py.check_string_dtype(obj.dtype) is not None or not obj.size:
                    dst.create_dataset(name, data=obj[()], dtype=obj.dtype)
                    return
                options = dict(chunks=obj.chunks or True, fletcher32=True)
                if obj.compression:
                    options.update(compression=obj.compression, compression_opts=obj.compression_opts, shuffle=obj.shuffle)
                dst.create_dataset(name, data=obj[()], dtype=obj.dtype, **{k: v for k, v in options.items() if v is not None})
        src.visititems(copy)


def _read_raw(path: Path) -> None:
    import h5py

    def read(name, obj):
        if isinstance(obj, h5py.Dataset):
            obj[()]  # a callback returning anything but None would end the visit

    with h5py.File(path, "r") as h5:
        h5.visititems(read)


def _best(rounds: int, steps: dict) -> dict:
    """Least CPU time of this process per step over ``rounds``, the steps interleaved in each round.

    CPU time rather than wall time: on a shared machine the wall clock also counts other jobs'
    turns, and every step here runs on this process's one thread (h5py decompresses in-process).
    """
    best = {label: float("inf") for label in steps}
    for _ in range(rounds):
        for label, step in steps.items():
            start = time.process_time()
            step()
            best[label] = min(best[label], time.process_time() - start)
    return best


def _verification_alone(path: Path, rounds: int) -> float:
    """The checksum work of a verified read without the reading: every stored-chunk CRC and every
    values CRC (of values already in memory), and the attribute reads."""
    import h5py

    from mosaic.tracefile.checksums import ATTRIBUTE, _dataset_names, chunks_digest, digest

    with h5py.File(path, "r") as h5:
        datasets = [h5[name] for name in _dataset_names(h5)]
        values = {ds.name: ds[()] for ds in datasets if ds.chunks is None}

        def work():
            for ds in datasets:
                ds.attrs[ATTRIBUTE]
                chunks_digest(ds) if ds.chunks is not None else digest(values[ds.name])

        return _best(rounds, {"verify": work})["verify"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--layers", type=int, default=4, help="expert-carrying blocks (the shipped CLIP configs: 4)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import analysis
    from mosaic.tracefile import read as reader  # reads with the verification it imported
    from mosaic.tracefile import write_trace

    data = analysis.simulate(**MARKET, n_layers=args.layers, seed=0).data
    with tempfile.TemporaryDirectory() as folder:
        plain, checked, fletcher = (Path(folder) / name for name in ("plain.h5", "checked.h5", "fletcher32.h5"))
        write = _best(args.rounds, {
            "without checksums (baseline)": lambda: write_trace(data, plain, checksums=False),
            "with checksums": lambda: write_trace(data, checked),
        })
        _fletcher32_copy(plain, fletcher)
        verifying = reader.file_has_checksums

        def read_unverified():
            reader.file_has_checksums = lambda h5: False
            try:
                analysis.read_trace(checked)
            finally:
                reader.file_has_checksums = verifying

        read = _best(args.rounds, {
            "without checksums (baseline)": lambda: analysis.read_trace(plain),
            "with checksums": lambda: analysis.read_trace(checked),
            "with checksums, verification off": read_unverified,
        })
        raw = _best(args.rounds, {
            "without checksums (baseline)": lambda: _read_raw(plain),
            "with checksums": lambda: _read_raw(checked),
            "fletcher32 on every dataset": lambda: _read_raw(fletcher),
        })
        alone = _verification_alone(checked, args.rounds)
        size = {"without checksums (baseline)": plain.stat().st_size, "with checksums": checked.stat().st_size,
                "with checksums, verification off": checked.stat().st_size, "fletcher32 on every dataset": fletcher.stat().st_size}

    sizes = data.sizes
    print(f"trace: {sizes['query']} queries, {sizes['gallery']} gallery, {sizes['condition']} conditions, "
          f"{sizes['layer']} layers x {sizes['expert']} experts of gates; best of {args.rounds}")
    base = "without checksums (baseline)"
    print("CPU seconds of this process (see _best)")
    print("| variant | write (s) | read_trace (s) | read ratio | raw h5py read (s) | size (MiB) | size ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label in size:
        w = f"{write[label]:.3f}" if label in write else "n/a"
        r = f"{read[label]:.3f}" if label in read else "n/a"
        ratio = f"{read[label] / read[base]:.3f}x" if label in read else "n/a"
        rawtime = f"{raw[label]:.3f}" if label in raw else "n/a"
        print(f"| {label} | {w} | {r} | {ratio} | {rawtime} | {size[label] / 2**20:.2f} | "
              f"{size[label] / size[base]:.4f}x |")
    read_cost = read["with checksums"] / read[base] - 1
    size_cost = size["with checksums"] / size[base] - 1
    verify_cost = read["with checksums"] / read["with checksums, verification off"] - 1
    print(f"checksums cost {100 * read_cost:+.1f}% read time against the file without them "
          f"({100 * verify_cost:+.1f}% against the same file read unverified; limit 5%), "
          f"{100 * size_cost:+.3f}% size (limit 2%), {100 * (write['with checksums'] / write[base] - 1):+.1f}% write time")
    print(f"the checksum work alone (every CRC and attribute read, no reading of data): {alone:.4f} s, "
          f"{100 * alone / read['with checksums, verification off']:.1f}% of an unverified read")


if __name__ == "__main__":
    main()
