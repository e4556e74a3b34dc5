"""Speed of ``analysis.analyze`` on a Market-1501-sized simulated trace, by stage.

    .venv/bin/python -m benchmarks.bench_analyze

The trace: 3,368 queries of 750 identities, 15,913 gallery images, the 12 Market groups and 62
conditions (oracle, none, 12 x drop / only / counterfactual, 24 subsets). The baseline measured in
the same run is the plain way to compute the identity-level statistics, a Python loop over
resamples (index lists per bootstrap draw, one sign vector per permutation), against the
vectorised matrix products that :mod:`analysis.methods.paired` uses.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

MARKET = dict(n_ids=750, n_queries=3368, gallery_per_id=17, n_distractors=3163, n_subsets=24)


def _loop_identity_tests(delta: np.ndarray, identity: np.ndarray, n_bootstrap: int, n_permutations: int, seed: int):
    """Baseline: bootstrap and sign-flip test of one comparison with Python loops over resamples."""
    rng = np.random.default_rng(seed)
    ids = np.unique(identity)
    per_id = [delta[identity == i] for i in ids]
    boot = []
    for _ in range(n_bootstrap):
        chosen = rng.integers(0, ids.size, size=ids.size)
        boot.append(np.concatenate([per_id[i] for i in chosen]).mean())
    means = np.array([d.mean() for d in per_id])
    observed = abs(means.mean())
    extreme = 0
    for _ in range(n_permutations):
        signs = rng.choice([-1.0, 1.0], size=ids.size)
        extreme += abs((signs * means).mean()) >= observed
    return np.quantile(boot, [0.025, 0.975]), (1 + extreme) / (1 + n_permutations)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--n-permutations", type=int, default=2000)
    parser.add_argument("--baseline-resamples", type=int, default=200,
                        help="resamples timed for the loop baseline (scaled up to the full count)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    import analysis
    from analysis.methods.paired import identity_deltas, identity_tests
    from analysis.settings import AnalysisSettings

    start = time.perf_counter()
    effects = {g: 0.1 * (i + 1) for i, g in enumerate(analysis.simulate(n_ids=2, n_subsets=0, kinds=("oracle",)).group_names)}
    trace = analysis.simulate(**MARKET, effects=effects, effect_sd=0.5, seed=0)
    simulate_s = time.perf_counter() - start
    sizes = trace.sizes
    print(f"trace: {sizes['query']} queries, {len(np.unique(trace.data.query_pid))} identities, "
          f"{sizes['gallery']} gallery, {sizes['group']} groups, {sizes['condition']} conditions "
          f"(simulated in {simulate_s:.1f} s)")

    start = time.perf_counter()
    results = analysis.analyze(trace, n_bootstrap=args.n_bootstrap, n_permutations=args.n_permutations, seed=0)
    total = time.perf_counter() - start

    print("\n| stage | seconds | share |\n|---|---:|---:|")
    for stage, seconds in results.timings.items():
        print(f"| {stage} | {seconds:.2f} | {seconds / total:.0%} |")
    print(f"| **analyze, total** | **{total:.2f}** | 100% |")
    failed = results.warnings[results.warnings["reason"].str.startswith(("failed", "not run", "not available"))]
    if len(failed):
        print("\nmethods that did not run:", failed.to_dict("records"))

    # the paired tables one by one (all identity-valid), beside the query-independent textbook tests
    from analysis.methods.paired import PAIRED_TESTS, comparisons, mcnemar_exact, wilcoxon_signed_rank

    settings = AnalysisSettings(n_bootstrap=args.n_bootstrap, n_permutations=args.n_permutations)
    print("\n| paired table (unit: identity) | seconds |\n|---|---:|")
    for name, test in PAIRED_TESTS.items():
        start = time.perf_counter()
        test(trace, settings)
        print(f"| {name} | {time.perf_counter() - start:.3f} |")
    data, valid = trace.data, trace.data.valid
    start = time.perf_counter()
    for c in comparisons(trace, settings):
        mcnemar_exact(data.rank1[c.baseline_index][valid], data.rank1[c.index][valid])
        wilcoxon_signed_rank(data.ap[c.baseline_index][valid], data.ap[c.index][valid])
    print(f"| baseline: textbook McNemar + Wilcoxon, queries independent | {time.perf_counter() - start:.3f} |")

    # identity-level statistics: vectorised (as analyze) vs the loop baseline, same workload
    deltas = identity_deltas(trace, settings)
    k = deltas.delta.shape[0]
    start = time.perf_counter()
    identity_tests(deltas.delta, deltas.identity, n_bootstrap=args.n_bootstrap, n_permutations=args.n_permutations)
    vectorised = time.perf_counter() - start
    start = time.perf_counter()
    n = args.baseline_resamples
    _loop_identity_tests(deltas.delta[0], deltas.identity, n, n, 0)
    per_resample = (time.perf_counter() - start) / (2 * n)
    loop = per_resample * (args.n_bootstrap + args.n_permutations) * k
    print(f"\nidentity-level tests of {k} comparisons ({args.n_bootstrap} bootstrap + {args.n_permutations} permutations each):")
    print("\n| implementation | seconds | vs baseline |\n|---|---:|---:|")
    print(f"| baseline: Python loop over resamples (timed on {n} + {n}, scaled) | {loop:.2f} | 1.00x |")
    print(f"| `analysis.methods.paired.identity_tests` (multinomial weights, one matrix product) | {vectorised:.3f} | {loop / vectorised:.0f}x |")


if __name__ == "__main__":
    main()
