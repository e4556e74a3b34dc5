"""Calibration of the configuration-level models and the query GLM on simulated worlds.

    .venv/bin/python -m benchmarks.calibration_configuration [--n-traces 200]

Worlds are small (default 80 identities x 3 queries, 6 groups, ``oracle`` + ``none`` + ``drop`` +
``only`` + 30 random ``subset`` configurations), drawn by :func:`analysis.simulation.trace.simulate`:

- **exact null**: every query's effect of every group is exactly zero;
- **population null**: each identity's effect of each group is drawn around a population mean of
  zero (``effect_sd = --null-sd``). The simulator splits the identity-specific part between the
  group's presence and absence, so every population coefficient is exactly 0 while each test set's
  identities make some groups look important;
- **planted** (power): effects ``0, 0.3, ..., 1.5`` with identity spread ``--planted-sd``.

Checks, each beside a baseline measured in the same run:

1. Family-wise error: a family is one table's group rows (binomial GLM, Gaussian GLM, t-test) or
   one level of the query GLM (its term rows, its group rows). A family should contain a Holm
   rejection at most ``alpha + 2 SE`` of the time. Baselines: the paper's numbers
   (``p_conditional``, every configuration's outcome treated as fixed given the test set) and, for
   the query GLM, statsmodels' CR1 cluster sandwich with a normal reference.
2. Coverage: the 95% intervals of each group's configuration-level coefficient (and t-test
   difference) should cover the population value, 0 in both null worlds, 92-98% of the time; the
   paper's conditional intervals are shown beside them.
3. Power on planted effects: share of worlds where a group is rejected after Holm, for the
   identity-resampled configuration tables beside the identity sign-flip test of ``drop:<g>``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
KINDS = ("oracle", "none", "drop", "only", "subset")
CONFIG_TABLES = ("config_glm_binomial", "config_glm_gaussian", "config_ttest")


def _binomial_ci(successes: int, n: int) -> str:
    ci = stats.binomtest(successes, n).proportion_ci(0.95, method="exact")
    return f"[{ci.low:.3f}, {ci.high:.3f}]"


def _world(args, seed: int, *, effects=None, effect_sd=0.0):
    from analysis.simulation.trace import simulate

    return simulate(n_ids=args.n_ids, queries_per_id=args.queries_per_id, groups=args.groups, effects=effects,
                    effect_sd=effect_sd, n_subsets=args.n_subsets, kinds=KINDS, n_layers=1, top_k=5, seed=seed)


def _tables(trace, settings) -> dict[str, pd.DataFrame]:
    """The identity-valid configuration tables and the query GLM (surrogates left out: slow, no test)."""
    from analysis.methods.configuration.level import (
        ConfigurationOptions, config_glm_binomial, config_glm_gaussian, config_ttest, configuration_design,
    )
    from analysis.methods.query.explanatory import ExplanatoryOptions
    from analysis.methods.query.glm import query_glm
    from analysis.stats.glm import small_blas

    options = ConfigurationOptions()
    design = configuration_design(trace, options, n_bootstrap=settings.n_bootstrap, seed=settings.seed)
    with small_blas():
        return {
            "config_glm_binomial": config_glm_binomial(design, options, settings.alpha, settings.ci_level),
            "config_glm_gaussian": config_glm_gaussian(design, options, settings.alpha, settings.ci_level),
            "config_ttest": config_ttest(design, options, settings.alpha, settings.ci_level),
            "query_glm": query_glm(trace, settings, ExplanatoryOptions()),
        }


def _cr1_query_glm(trace, settings) -> pd.DataFrame:
    """Baseline: the query GLM's term tests with statsmodels' CR1 sandwich and a normal reference."""
    from analysis.methods.query.glm import state_design
    from analysis.stats.corrections import add_corrections
    from analysis.stats.glm import fit_glm

    queries = trace.query_table
    valid = queries["valid"].to_numpy()
    groups = list(trace.schema.group_names)
    y = trace.data.rank1[trace.condition_index(settings.baseline)][valid].astype(float)
    design = state_design(queries.loc[valid, groups], groups, outcome=y)
    table = fit_glm(y, design.X, family="binomial", clusters=queries.loc[valid, "pid"].to_numpy()).table
    return add_corrections(table[table["term"] != "Intercept"], settings.alpha, by=None)


def _families(tables: dict[str, pd.DataFrame], cr1: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame, str]]:
    """``(test, inference, rows, p column)`` for every family of one world."""
    from analysis.stats.corrections import add_corrections

    out = []
    for name in CONFIG_TABLES:
        rows = tables[name][tables[name]["group"] != ""]
        out.append((name, "identities resampled", rows, "p"))
        paper = add_corrections(rows, ALPHA, by=None, p_column="p_conditional")
        out.append((name, "paper (conditional on the test set)", paper, "p_conditional"))
    glm = tables["query_glm"]
    for level in ("term", "group"):
        out.append((f"query_glm {level}s", "CR2, Satterthwaite / HTZ", glm[glm["level"] == level], "p"))
    out.append(("query_glm terms", "CR1, normal reference", cr1, "p"))
    return out


def null_worlds(args, settings, world: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Any-Holm-rejection per family and world, and coverage of 0 by every group's interval."""
    rows, cover = [], []
    effect_sd = args.null_sd if world == "population null" else 0.0
    offset = 40_000 if world == "exact null" else 50_000
    for seed in range(args.n_traces):
        trace = _world(args, offset + seed, effect_sd=effect_sd)
        tables = _tables(trace, settings)
        for test, inference, family, _ in _families(tables, _cr1_query_glm(trace, settings)):
            rows.append({"world": world, "test": test, "inference": inference, "trace": seed,
                         "any_holm": bool(family["reject_holm"].any())})
        for name in CONFIG_TABLES:
            group_rows = tables[name][(tables[name]["group"] != "") & (tables[name]["status"] == "ok")]
            for suffix, inference in (("", "identities resampled"), ("_conditional", "paper (conditional)")):
                low, high = group_rows[f"ci_low{suffix}"], group_rows[f"ci_high{suffix}"]
                for covered in ((low <= 0) & (0 <= high)).to_numpy():
                    cover.append({"world": world, "table": name, "inference": inference, "covered": bool(covered)})
    return pd.DataFrame(rows), pd.DataFrame(cover)


def planted(args, settings, effects: dict) -> pd.DataFrame:
    from analysis.methods.paired import paired_identity

    power = []
    for seed in range(args.n_planted):
        trace = _world(args, 60_000 + seed, effects=effects, effect_sd=args.planted_sd)
        tables = _tables(trace, settings)
        identity = paired_identity(trace, settings)
        tables["paired_identity (sign flip, drop)"] = identity[identity["comparison"] == "drop"]
        for name in (*CONFIG_TABLES, "paired_identity (sign flip, drop)"):
            rows = tables[name][tables[name]["group"] != ""]
            for _, row in rows.iterrows():
                power.append({"test": name, "effect": effects[row["group"]], "reject": bool(row["reject_holm"])})
    return pd.DataFrame(power)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-traces", type=int, default=200, help="simulated worlds per null kind")
    parser.add_argument("--n-planted", type=int, default=50, help="planted worlds for the power table")
    parser.add_argument("--n-ids", type=int, default=80)
    parser.add_argument("--queries-per-id", type=int, default=3)
    parser.add_argument("--groups", type=int, default=6)
    parser.add_argument("--n-subsets", type=int, default=30)
    parser.add_argument("--null-sd", type=float, default=3.0,
                        help="identity spread of every group's effect in population-null worlds")
    parser.add_argument("--planted-sd", type=float, default=1.0, help="identity spread of the planted effects")
    parser.add_argument("--n-bootstrap", type=int, default=500)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from analysis.settings import AnalysisSettings

    args = parse_args(argv)
    settings = AnalysisSettings(alpha=ALPHA, n_bootstrap=args.n_bootstrap, n_permutations=1000, ci_level=0.95)
    start = time.perf_counter()
    fwer, cover = zip(*(null_worlds(args, settings, world) for world in ("exact null", "population null")))
    fwer, cover = pd.concat(fwer), pd.concat(cover)
    print(f"## Configuration-level and query-GLM calibration ({args.n_traces} worlds per null kind, "
          f"{args.n_ids} identities x {args.queries_per_id} queries, {args.groups} groups, "
          f"{args.n_subsets} subsets, {args.n_bootstrap} identity resamples)\n")
    print("### Holm family-wise error (target <= alpha + 2 SE)\n")
    print("| world | test | inference | FWER | 95% CI | alpha + 2 SE | ok |\n|---|---|---|---|---|---|---|")
    for (world, test, inference), block in fwer.groupby(["world", "test", "inference"], sort=False):
        n, k = len(block), int(block["any_holm"].sum())
        bound = ALPHA + 2 * np.sqrt(ALPHA * (1 - ALPHA) / n)
        print(f"| {world} | {test} | {inference} | {k / n:.3f} | {_binomial_ci(k, n)} | {bound:.3f} | "
              f"{'yes' if k / n <= bound else 'NO'} |")
    print("\n### Coverage of the population value (0) by 95% intervals (target 0.92-0.98)\n")
    print("| world | table | inference | coverage | 95% CI | intervals | ok |\n|---|---|---|---|---|---|---|")
    for (world, table, inference), block in cover.groupby(["world", "table", "inference"], sort=False):
        n, k = len(block), int(block["covered"].sum())
        print(f"| {world} | {table} | {inference} | {k / n:.3f} | {_binomial_ci(k, n)} | {n} | "
              f"{'yes' if 0.92 <= k / n <= 0.98 else 'NO'} |")
    if args.n_planted:
        effects = {f"g{i:02d}": 0.3 * i for i in range(args.groups)}
        power = planted(args, settings, effects)
        print(f"\n### Power on planted effects ({args.n_planted} worlds, identity sd {args.planted_sd}; "
              "share of worlds rejecting the group after Holm)\n")
        table = power.pivot_table(index="test", columns="effect", values="reject", aggfunc="mean")
        print("| test | " + " | ".join(f"effect {e:g}" for e in table.columns) + " |")
        print("|---|" + "---|" * len(table.columns))
        for test, row in table.iterrows():
            print(f"| {test} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
