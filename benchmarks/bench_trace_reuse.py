"""The trace with reuse (known segments reused, mixtures cut to the enabled experts, none without a
mixture) against the full computation, on a checkpoint's own dataset and the default conditions.

Both traces run in the same process, taking turns (``--repeats``), each keeping its best time;
the trunk is computed in both. The reuse must give the same trace: identical first-match ranks,
top-k lists and gates, AP within 1e-6 (checked before the timings are printed).

    .venv/bin/python -m benchmarks.bench_trace_reuse --ckpt runs/demo/run [--conditions ...] [--device cpu]

``mosaic demo`` writes the checkpoint this measures by default (its folder ``runs/demo/run``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np


def run(ckpt: str, conditions: str | None, device: str, precision: str, repeats: int, batch_size: int | None):
    import torch

    from mosaic import api
    from mosaic.tracing.settings import TraceSettings

    base = TraceSettings(feature=None, progress=False, precision=precision, batch_size=batch_size)
    best = {True: float("inf"), False: float("inf")}
    traces = {}
    for _ in range(repeats):
        for reuse in (True, False):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            started = time.perf_counter()
            traces[reuse] = api.trace(ckpt, None, conditions=conditions, settings=dataclasses.replace(base, reuse=reuse),
                                      device=device, progress=False).data
            best[reuse] = min(best[reuse], time.perf_counter() - started)
    fast, full = traces[True], traces[False]
    np.testing.assert_array_equal(fast.first_match_rank, full.first_match_rank)
    np.testing.assert_array_equal(fast.topk_index, full.topk_index)
    np.testing.assert_array_equal(fast.gates, full.gates)
    np.testing.assert_allclose(fast.ap, full.ap, atol=1e-6, rtol=0)
    rows_fast, rows_full = (sum(t.provenance["head_rows"].values()) for t in (fast, full))
    return {"conditions": int(fast.n_conditions), "queries": int(fast.n_queries), "gallery": int(fast.n_gallery),
            "seconds_full": best[False], "seconds_reuse": best[True], "speedup": best[False] / best[True],
            "head_rows_full": rows_full, "head_rows_reuse": rows_fast,
            "max_abs_delta_ap": float(np.nanmax(np.abs(fast.ap - full.ap)))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="runs/demo/run")
    parser.add_argument("--conditions", default=None, help="condition patterns (default: every default kind)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = run(args.ckpt, args.conditions, args.device, args.precision, args.repeats, args.batch_size)
    print(f"{result['conditions']} conditions x {result['queries']} queries x {result['gallery']} gallery; "
          f"device {args.device}, {args.precision}")
    print(f"{'trace':34s} {'seconds':>8s} {'head rows':>10s} {'speed-up':>9s}")
    print(f"{'full computation (reuse=False)':34s} {result['seconds_full']:8.1f} {result['head_rows_full']:10,d} {1:8.2f}x")
    print(f"{'reuse (the default)':34s} {result['seconds_reuse']:8.1f} {result['head_rows_reuse']:10,d} "
          f"{result['speedup']:8.2f}x")
    print(f"same ranks and top-k; max |ΔAP| {result['max_abs_delta_ap']:.1e}")
    return result


if __name__ == "__main__":
    main()
