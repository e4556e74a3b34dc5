"""Statistical calibration of the paired tests on simulated traces with known truth.

    .venv/bin/python -m benchmarks.calibration [--n-traces 200]

Worlds are small (default 150 identities x 4 queries, 10 groups, ``oracle`` + ``drop`` +
``counterfactual``), drawn by :func:`analysis.simulation.trace.simulate`. Three kinds:

- **exact null**: every query's effect is exactly zero (``effects=None``, ``effect_sd=0``);
- **population null**: each identity's effect of each group is drawn around a population mean of
  zero (``effect_sd = --null-sd``): the groups matter to every identity, in either direction, but not to
  identities on average. Pseudo-replication is visible only here: a test that counts queries as
  independent trials rejects far too often;
- **planted**: effects ``0, 0.15, ..., 1.35`` (logit scale) with identity spread ``--planted-sd``.

Checks, each beside a baseline measured in the same run:

1. Family-wise error: every family (one test x one comparison, across the groups) should contain
   a Holm rejection at most ``alpha + 2 SE`` of the time (SE the binomial simulation error).
   Baseline: the textbook query-level McNemar and Wilcoxon tests, which assume independent queries.
2. Coverage: the 95% interval of each group's ΔmAP (``paired_identity``; the same interval is in
   ``paired_wilcoxon``) and of each group's Δrank-1 (``paired_mcnemar``) should cover the
   population value 92-98% of the time. In null worlds the population value is exactly 0 (the
   simulator makes the two conditions exchangeable); in planted worlds it is estimated from large
   simulations with the same settings.
3. Power on planted effects: share of worlds where each test rejects a group after Holm, beside the
   identity sign-flip test's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
TESTS = ("paired_mcnemar", "paired_wilcoxon", "paired_identity")
BASELINES = ("query McNemar (independent queries)", "query Wilcoxon (independent queries)")
KINDS = ("oracle", "drop", "counterfactual")


def _interval(successes: int, n: int) -> str:
    ci = stats.binomtest(successes, n).proportion_ci(0.95, method="exact")
    return f"[{ci.low:.3f}, {ci.high:.3f}]"


def _world(args, seed: int, *, effects=None, effect_sd=0.0, n_ids=None):
    from analysis.simulation.trace import simulate

    return simulate(n_ids=n_ids or args.n_ids, queries_per_id=args.queries_per_id, groups=args.groups,
                    effects=effects, effect_sd=effect_sd, n_subsets=0, kinds=KINDS, n_layers=1, top_k=5, seed=seed)


def _query_level_tables(trace, settings) -> dict[str, pd.DataFrame]:
    """The textbook tests that treat queries as independent (the baseline), with Holm per family."""
    from analysis.methods.paired import comparisons, mcnemar_exact, wilcoxon_signed_rank
    from analysis.stats.corrections import add_corrections

    data = trace.data
    valid = data.valid
    out = {}
    for name, test, values in ((BASELINES[0], mcnemar_exact, data.rank1), (BASELINES[1], wilcoxon_signed_rank, data.ap)):
        rows = [{**c.key(), **test(values[c.baseline_index][valid], values[c.index][valid])}
                for c in comparisons(trace, settings)]
        out[name] = add_corrections(pd.DataFrame(rows), settings.alpha)
    return out


def family_wise_error(args, settings, world: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Any-Holm-rejection per family and world, and the interval coverage rows of null worlds."""
    from analysis.methods.paired import paired_tables

    rows, cover = [], []
    effect_sd = args.null_sd if world == "population null" else 0.0
    offset = 10_000 if world == "exact null" else 30_000
    for seed in range(args.n_traces):
        trace = _world(args, offset + seed, effect_sd=effect_sd)
        tables = {**paired_tables(trace, settings), **_query_level_tables(trace, settings)}
        for name, table in tables.items():
            for comparison, family in table.groupby("comparison"):
                rows.append({"world": world, "test": name, "comparison": comparison, "trace": seed,
                             "any_holm": bool(family["reject_holm"].any()), "any_bh": bool(family["reject_bh"].any())})
        _coverage_rows(cover, tables, seed, world, truth=None)  # population ΔmAP, Δrank-1 are exactly 0
    return pd.DataFrame(rows), pd.DataFrame(cover)


def _coverage_rows(rows: list, tables, seed: int, world: str, truth) -> None:
    for name, estimate, value_key in (("paired_identity", "delta_map", "delta_map"),
                                      ("paired_mcnemar", "delta_rank1", "delta_rank1")):
        for _, row in tables[name].iterrows():
            value = 0.0 if truth is None else truth[value_key][(row["comparison"], row["group"])]
            rows.append({"world": world, "interval": name, "estimate": estimate, "trace": seed,
                         "group": row["group"], "covered": bool(row["ci_low"] <= value <= row["ci_high"]),
                         "width": row["ci_high"] - row["ci_low"]})


def population_values(args, effects: dict) -> dict[str, pd.Series]:
    """Population ΔmAP and Δrank-1 per (comparison, group), from large simulations."""
    from analysis.methods.paired import comparisons
    from analysis.settings import AnalysisSettings

    settings = AnalysisSettings()
    parts: dict[str, list] = {"delta_map": [], "delta_rank1": []}
    for seed in range(args.truth_traces):
        trace = _world(args, 90_000 + seed, effects=effects, effect_sd=args.planted_sd, n_ids=args.truth_ids)
        data, valid = trace.data, trace.data.valid
        comps = comparisons(trace, settings)
        index = pd.MultiIndex.from_tuples([(c.comparison, c.group) for c in comps])
        for key, values in (("delta_map", data.ap.astype(float)), ("delta_rank1", data.rank1.astype(float))):
            parts[key].append(pd.Series([np.mean(values[c.index][valid] - values[c.baseline_index][valid])
                                         for c in comps], index=index))
    return {k: pd.concat(v, axis=1).mean(axis=1) for k, v in parts.items()}


def planted(args, settings, effects: dict, truth) -> tuple[pd.DataFrame, pd.DataFrame]:
    from analysis.methods.paired import paired_tables

    cover, power = [], []
    for seed in range(args.n_traces):
        trace = _world(args, 20_000 + seed, effects=effects, effect_sd=args.planted_sd)
        tables = {**paired_tables(trace, settings), **_query_level_tables(trace, settings)}
        _coverage_rows(cover, tables, seed, "planted", truth)
        for name, table in tables.items():
            for _, row in table.iterrows():
                power.append({"test": name, "comparison": row["comparison"], "effect": effects[row["group"]],
                              "reject": bool(row["reject_holm"])})
    return pd.DataFrame(cover), pd.DataFrame(power)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The calibration settings (the command line's, or defaults overridden by ``argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-traces", type=int, default=200, help="simulated worlds per kind")
    parser.add_argument("--n-ids", type=int, default=150)
    parser.add_argument("--queries-per-id", type=int, default=4)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--null-sd", type=float, default=3.0,
                        help="identity spread of every group's effect in population-null worlds")
    parser.add_argument("--planted-sd", type=float, default=1.0, help="identity spread of the planted effects")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--n-permutations", type=int, default=1000)
    parser.add_argument("--truth-ids", type=int, default=5000)
    parser.add_argument("--truth-traces", type=int, default=4)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    from analysis.settings import AnalysisSettings

    settings = AnalysisSettings(alpha=ALPHA, n_bootstrap=args.n_bootstrap, n_permutations=args.n_permutations)
    se = np.sqrt(ALPHA * (1 - ALPHA) / args.n_traces)
    limit = ALPHA + 2 * se
    print(f"# calibration: {args.n_traces} worlds per kind, {args.groups} groups, {args.n_ids} identities x "
          f"{args.queries_per_id} queries; identity spread of effects {args.null_sd} (population null), "
          f"{args.planted_sd} (planted)\n")
    fwer_parts, cover_parts = [], []
    for world in ("exact null", "population null"):
        start = time.perf_counter()
        frame, covered = family_wise_error(args, settings, world)
        print(f"{world}: {time.perf_counter() - start:.0f} s")
        fwer_parts.append(frame)
        cover_parts.append(covered)
    fwer = pd.concat(fwer_parts)
    print(f"\n## family-wise error (Holm, alpha {ALPHA}; limit alpha + 2 SE = {limit:.3f})\n")
    print("| world | test | unit | families | any Holm rejection | 95% CI | within limit | any BH rejection |")
    print("|---|---|---|---:|---:|---|---|---:|")
    for (world, test), block in fwer.groupby(["world", "test"], sort=False):
        for comparison, fam in block.groupby("comparison", sort=False):
            n, holm = len(fam), int(fam["any_holm"].sum())
            unit = "query" if test in BASELINES else "identity"
            print(f"| {world} | {test} ({comparison}) | {unit} | {n} | {holm / n:.3f} | {_interval(holm, n)} | "
                  f"{'yes' if holm / n <= limit else '**no**'} | {fam['any_bh'].mean():.3f} |")

    effects = {f"g{i:02d}": 0.15 * i for i in range(args.groups)}
    start = time.perf_counter()
    truth = population_values(args, effects)
    cover, power = planted(args, settings, effects, truth)
    print(f"\nplanted: {time.perf_counter() - start:.0f} s")
    cover = pd.concat([*cover_parts, cover])
    print("\n## coverage of 95% intervals (target 0.92-0.98)\n")
    print("| world | interval | intervals | coverage | 95% CI | mean width |")
    print("|---|---|---:|---:|---|---:|")
    for (world, name), block in cover.groupby(["world", "interval"], sort=False):
        n, hit = len(block), int(block["covered"].sum())
        label = {"paired_identity": "ΔmAP, identity-cluster bootstrap",
                 "paired_mcnemar": "Δrank-1, Tango score / identity design effect"}[name]
        print(f"| {world} | {label} | {n} | {hit / n:.3f} | {_interval(hit, n)} | {block['width'].mean():.4f} |")
    per_group = cover[(cover["world"] == "planted")].groupby(["interval", "group"])["covered"].mean()
    print(f"\nplanted worlds, coverage per group: min {per_group.min():.3f}, max {per_group.max():.3f}")

    print("\n## power after Holm on planted effects (share of worlds rejecting the group; drop comparison)\n")
    table = power[power["comparison"] == "drop"].pivot_table(index="test", columns="effect", values="reject",
                                                              aggfunc="mean", sort=False)
    print("| test | " + " | ".join(f"{e:.2f}" for e in table.columns) + " |")
    print("|---|" + "---:|" * len(table.columns))
    for test, row in table.iterrows():
        print(f"| {test} | " + " | ".join(f"{v:.2f}" for v in row) + " |")


if __name__ == "__main__":
    main()
