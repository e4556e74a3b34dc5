"""Statistical calibration of the paired tests on simulated traces with known truth.

    .venv/bin/python -m benchmarks.calibration [--n-traces 200]

1. Family-wise error: on null traces (no planted effect) every family of tests (one test x one
   comparison across the groups) should contain a Holm rejection at most ``alpha`` of the time;
   the uncorrected tests of the same families, measured in the same run, are the baseline.
2. Coverage: on traces with planted effects, the 95 % identity-cluster bootstrap interval of
   ΔmAP (``paired_identity``) should cover the true ΔmAP about 95 % of the time. The true value
   is the population ΔmAP, estimated from large simulations with the same settings. The baseline
   is the query-level t interval of the mean ΔAP (``paired_wilcoxon``), which ignores that the
   queries of one identity are not independent.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
TESTS = ("paired_mcnemar", "paired_wilcoxon", "paired_identity")


def _interval(successes: int, n: int) -> str:
    ci = stats.binomtest(successes, n).proportion_ci(0.95, method="exact")
    return f"[{ci.low:.3f}, {ci.high:.3f}]"


def family_wise_error(n_traces: int, n_ids: int, n_groups: int, settings) -> pd.DataFrame:
    from analysis.paired import paired_tables
    from analysis.simulate import simulate

    rows = []
    for seed in range(n_traces):
        trace = simulate(n_ids=n_ids, groups=n_groups, effects=None, n_subsets=0,
                         kinds=("oracle", "drop", "counterfactual"), n_layers=1, seed=10_000 + seed)
        for name, table in paired_tables(trace, settings).items():
            for comparison, family in table.groupby("comparison"):
                tested = family[family["status"] == "ok"]
                rows.append({"test": name, "comparison": comparison, "trace": seed,
                             "any_raw": bool((tested["p"] <= ALPHA).any()),
                             "any_holm": bool(tested["reject_holm"].any()),
                             "any_bh": bool(tested["reject_bh"].any())})
    return pd.DataFrame(rows)


def true_delta_map(effects: dict, n_groups: int, n_ids_truth: int, n_truth_traces: int) -> pd.Series:
    """Population ΔmAP per (comparison, group), averaged over large simulations."""
    from analysis.paired import identity_deltas
    from analysis.settings import AnalysisSettings
    from analysis.simulate import simulate

    settings = AnalysisSettings()
    parts = []
    for seed in range(n_truth_traces):
        trace = simulate(n_ids=n_ids_truth, groups=n_groups, effects=effects, n_subsets=0,
                         kinds=("oracle", "drop", "counterfactual"), n_layers=1, seed=90_000 + seed)
        deltas = identity_deltas(trace, settings)
        parts.append(pd.Series(deltas.delta.mean(1),
                               index=pd.MultiIndex.from_tuples([(c.comparison, c.group) for c in deltas.comparisons])))
    return pd.concat(parts, axis=1).mean(axis=1)


def coverage(n_traces: int, n_ids: int, n_groups: int, settings, truth: pd.Series, effects: dict) -> pd.DataFrame:
    from analysis.paired import paired_identity, paired_wilcoxon
    from analysis.simulate import simulate

    rows = []
    for seed in range(n_traces):
        trace = simulate(n_ids=n_ids, groups=n_groups, effects=effects, n_subsets=0,
                         kinds=("oracle", "drop", "counterfactual"), n_layers=1, seed=20_000 + seed)
        for name, table in (("identity bootstrap", paired_identity(trace, settings)),
                            ("query t interval", paired_wilcoxon(trace, settings))):
            for _, row in table.iterrows():
                value = truth[(row["comparison"], row["group"])]
                rows.append({"interval": name, "trace": seed, "group": row["group"],
                             "covered": bool(row["ci_low"] <= value <= row["ci_high"]),
                             "width": row["ci_high"] - row["ci_low"]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-traces", type=int, default=200, help="simulated traces per check")
    parser.add_argument("--n-ids", type=int, default=150)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--n-permutations", type=int, default=1000)
    args = parser.parse_args(argv)

    from analysis.settings import AnalysisSettings

    settings = AnalysisSettings(alpha=ALPHA, n_bootstrap=args.n_bootstrap, n_permutations=args.n_permutations)
    start = time.perf_counter()
    fwer = family_wise_error(args.n_traces, args.n_ids, args.groups, settings)
    print(f"## family-wise error on {args.n_traces} null traces ({args.groups} groups, {args.n_ids} identities; "
          f"{time.perf_counter() - start:.0f} s)\n")
    print("| test | families | any p <= 0.05, uncorrected (baseline) | any Holm rejection | 95% CI | any BH rejection |")
    print("|---|---:|---:|---:|---|---:|")
    for test in TESTS:
        block = fwer[fwer["test"] == test]
        n, holm = len(block), int(block["any_holm"].sum())
        print(f"| {test} | {n} | {block['any_raw'].mean():.3f} | {holm / n:.3f} | {_interval(holm, n)} | "
              f"{block['any_bh'].mean():.3f} |")
    n, holm = len(fwer), int(fwer["any_holm"].sum())
    print(f"| all | {n} | {fwer['any_raw'].mean():.3f} | {holm / n:.3f} | {_interval(holm, n)} | {fwer['any_bh'].mean():.3f} |")

    effects = {f"g{i:02d}": 0.15 * i for i in range(args.groups)}
    start = time.perf_counter()
    truth = true_delta_map(effects, args.groups, n_ids_truth=5000, n_truth_traces=4)
    cover = coverage(args.n_traces, args.n_ids, args.groups, settings, truth, effects)
    print(f"\n## coverage of 95% intervals of ΔmAP on {args.n_traces} traces with planted effects "
          f"0, 0.15, ..., {0.15 * (args.groups - 1):.2f} ({time.perf_counter() - start:.0f} s)\n")
    print("| interval | intervals | coverage | 95% CI | mean width |")
    print("|---|---:|---:|---|---:|")
    for name, block in cover.groupby("interval", sort=False):
        n, hit = len(block), int(block["covered"].sum())
        print(f"| {name} | {n} | {hit / n:.3f} | {_interval(hit, n)} | {block['width'].mean():.4f} |")
    per_trace = cover[cover["interval"] == "identity bootstrap"].groupby("trace")["covered"].mean()
    print(f"\nidentity bootstrap, coverage per trace: min {per_trace.min():.2f}, median {per_trace.median():.2f}")


if __name__ == "__main__":
    main()
