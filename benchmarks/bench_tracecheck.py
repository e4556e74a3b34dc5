"""Cost of the value rules on read: ``analysis.read_trace`` with and without them, on a
Market-1501-sized simulated trace.

    .venv/bin/python -m benchmarks.bench_tracecheck

The trace: 3,368 queries of 750 identities, 15,913 gallery images, the 12 Market groups and 62
conditions, as in ``bench_analyze``, with gates on 4 expert-carrying blocks (the shipped configs). The baseline, timed in the same run and interleaved with the
checked read, is the same ``read_trace`` with :func:`mosaic.tracefile.check.check_trace_values` replaced
by a no-op (reading, decompression, shape validation and the pandas wrapper stay). Best of
``--rounds`` (15).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

MARKET = dict(n_ids=750, n_queries=3368, gallery_per_id=17, n_distractors=3163, n_subsets=24)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--layers", type=int, default=4, help="expert-carrying blocks (the shipped CLIP configs: 4)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import analysis
    from mosaic.tracefile import check as tracecheck
    from mosaic.tracefile import read as reader  # reads with the rules it imported
    from mosaic.tracefile import write_trace

    data = analysis.simulate(**MARKET, n_layers=args.layers, seed=0).data
    with tempfile.TemporaryDirectory() as folder:
        path = write_trace(data, Path(folder) / "market.h5")
        size_mb = path.stat().st_size / 2**20
        sizes = data.sizes
        print(f"trace: {sizes['query']} queries, {sizes['gallery']} gallery, {sizes['condition']} conditions, "
              f"{sizes['layer']} layers x {sizes['expert']} experts of gates, {size_mb:.0f} MiB on disk")

        checked = reader.check_trace_values
        best = {"read_trace, value rules off (baseline)": float("inf"), "read_trace, value rules on": float("inf")}
        for _ in range(args.rounds):
            for label in best:
                reader.check_trace_values = (lambda d, h5=None, source="": d) if "off" in label else checked
                start = time.perf_counter()
                analysis.read_trace(path)
                best[label] = min(best[label], time.perf_counter() - start)
        reader.check_trace_values = checked

        rules_alone = float("inf")
        for _ in range(args.rounds):
            start = time.perf_counter()
            checked(data)
            rules_alone = min(rules_alone, time.perf_counter() - start)

    base = best["read_trace, value rules off (baseline)"]
    print("\n| step | seconds | vs baseline |\n|---|---:|---:|")
    for label, seconds in best.items():
        print(f"| {label} | {seconds:.3f} | {seconds / base:.3f}x |")
    print(f"| the {len(tracecheck.VALUE_RULES)} value rules alone, in memory | {rules_alone:.3f} | |")
    print(f"\nchecking adds {100 * (best['read_trace, value rules on'] / base - 1):.1f}% to read_trace")


if __name__ == "__main__":
    main()
