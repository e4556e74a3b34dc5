"""Market-sized evaluation: vectorised ``mosaic.core.metrics.evaluate`` against the per-query loop.

The baseline is the classic per-query algorithm of the public ReID toolkits (stable sort of the
gallery, drop same-pid same-camera images, cumulative matches), measured in the same run on the
same random distance matrix: 3,368 queries x 15,913 gallery images, 750 identities, 6 cameras,
distractors with pid 0, as in Market-1501.

    .venv/bin/python -m benchmarks.bench_evaluate [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mosaic.core.metrics import evaluate

N_QUERY, N_GALLERY, N_IDS, N_CAMERAS, N_DISTRACTORS = 3368, 15913, 750, 6, 2798


def market_sized_problem(seed: int = 0):
    """Random distances with Market-1501's query/gallery sizes, identities and cameras."""
    rng = np.random.default_rng(seed)
    g_pids = np.concatenate([rng.integers(1, N_IDS + 1, N_GALLERY - N_DISTRACTORS), np.zeros(N_DISTRACTORS, int)])
    g_camids = rng.integers(1, N_CAMERAS + 1, N_GALLERY)
    q_pids = rng.integers(1, N_IDS + 1, N_QUERY)
    q_camids = rng.integers(1, N_CAMERAS + 1, N_QUERY)
    distmat = rng.random((N_QUERY, N_GALLERY))
    return distmat, q_pids, g_pids, q_camids, g_camids


def per_query_reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The straightforward per-query loop of the public toolkits (same protocol, stable sort)."""
    n_query = distmat.shape[0]
    ap, inp, first = np.full(n_query, np.nan), np.full(n_query, np.nan), np.full(n_query, -1)
    cmc_sum, n_valid = np.zeros(max_rank), 0
    for i in range(n_query):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        raw = (g_pids[order][keep] == q_pids[i]).astype(np.int64)
        if not raw.any():
            continue
        cmc = raw.cumsum()
        hits = np.minimum(cmc, 1)
        cmc_sum[: min(max_rank, hits.size)] += hits[:max_rank]
        n_valid += 1
        pos = np.nonzero(raw)[0]
        first[i] = pos[0] + 1
        inp[i] = cmc[pos[-1]] / (pos[-1] + 1.0)
        ap[i] = (cmc / np.arange(1, cmc.size + 1) * raw).sum() / raw.sum()
    return ap, inp, first, cmc_sum / n_valid


def _best_of(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings keep the best of this many runs")
    args = parser.parse_args(argv)
    problem = market_sized_problem()
    t_ref, (ap, inp, first, cmc) = _best_of(lambda: per_query_reference(*problem), 1)
    t_vec, ev = _best_of(lambda: evaluate(*problem), args.repeats)
    t_top, ev_top = _best_of(lambda: evaluate(*problem, topk=10), args.repeats)
    diff = max(
        float(np.nanmax(np.abs(ev.ap - ap))),
        float(np.nanmax(np.abs(ev.inp - inp))),
        float(np.max(np.abs(ev.cmc - cmc))),
        float(np.max(np.abs(ev.first_match_rank - first))),
    )
    print(f"{N_QUERY} x {N_GALLERY} distances, {N_IDS} ids, {N_CAMERAS} cameras, {ev.n_valid} valid queries")
    print(f"{'method':38s} {'seconds':>8s} {'speed-up':>9s}")
    print(f"{'per-query loop (toolkit reference)':38s} {t_ref:8.2f} {1.0:8.1f}x")
    print(f"{'evaluate (vectorised)':38s} {t_vec:8.2f} {t_ref / t_vec:8.1f}x")
    print(f"{'evaluate, topk=10':38s} {t_top:8.2f} {t_ref / t_top:8.1f}x")
    print(f"max |difference| to the reference (AP, INP, CMC, first rank): {diff:.2e}")
    assert ev_top.mAP == ev.mAP


if __name__ == "__main__":
    main()
