"""Validation of the whole pipeline on two contrasting synthetic worlds.

Both worlds are the demo's default world except for three groups (``VALIDATION_GROUPS``):

* ``constant``: every identity shares one state of each of them, so they carry no identity
  information. Routing them by another identity's state (``counterfactual:<group>``, misrouting)
  changes nothing, since every donor has the same state; dropping their experts still removes
  capacity.
* ``uniform``: each identity draws their states uniformly, the most identity information they
  can carry, so misrouting the queries must mislead retrieval and their rank must rise.

Each world goes through the demo's stages (synth -> train -> trace -> analyse/report) with the
same training config and seed. Run from the repository root::

    python -m benchmarks.validation            # about 2 x 8 minutes on a 2-core CPU
    python -m benchmarks.validation --fresh    # redo every stage

Prints, per world and group, the drop and counterfactual ΔmAP with their identity-bootstrap CIs
and Holm-adjusted identity-level p-values, and the consensus rank; then checks the claims listed
in docs/validation.md and exits non-zero if one fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

VALIDATION_GROUPS = ("downcolour", "hat", "backpack")
OUT = Path("benchmarks/out/validation")


def worlds():
    from mosaic.synth import WorldConfig

    return {
        "constant": WorldConfig(seed=0, constant=VALIDATION_GROUPS),
        "uniform": WorldConfig(seed=0, uniform=VALIDATION_GROUPS),
    }


def run_world(name: str, world_config, *, fresh: bool) -> "analysis.Results":  # noqa: F821
    from analysis import Results
    from mosaic.commands.demo import DEMO_CONFIG, build_stages
    from mosaic.pipeline import Ledger, run_stages

    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    stages = build_stages(out, config=DEMO_CONFIG, seed=0, progress=False, world_config=world_config)
    run_stages(stages, Ledger(out), fresh=fresh, announce=lambda line: print(f"[{name}] {line}", file=sys.stderr))
    return Results.from_dict(json.loads((out / "report.json").read_text(encoding="utf-8"))["analysis"])


def summary_table(results_by_world: dict) -> "pd.DataFrame":  # noqa: F821
    import pandas as pd

    rows = []
    for world, results in results_by_world.items():
        paired = results.table("paired_identity").set_index(["group", "comparison"])
        ranking = results.table("ranking_groups").set_index("group")
        conditions = results.table("conditions").set_index("condition")
        for group in ranking.index:
            row = {"world": world, "group": group, "knob": group in VALIDATION_GROUPS,
                   "consensus_rank": ranking.loc[group, "consensus_rank"]}
            for comparison in ("drop", "counterfactual"):
                entry = paired.loc[(group, comparison)]
                row[f"{comparison}_dmap"] = entry["delta_map"]
                row[f"{comparison}_ci"] = (entry["ci_low"], entry["ci_high"])
                row[f"{comparison}_p_holm"] = entry["p_holm"]
                row[f"{comparison}_significant"] = bool(entry["reject_holm"])
            row["oracle_mAP"] = conditions.loc["oracle", "mAP"]
            row["none_mAP"] = conditions.loc["none", "mAP"]
            rows.append(row)
    return pd.DataFrame(rows)


def check_claims(table) -> list[tuple[str, bool]]:
    knob = table[table.knob]
    constant, uniform = knob[knob.world == "constant"], knob[knob.world == "uniform"]
    mean_rank = table[table.knob].groupby("world")["consensus_rank"].mean()
    return [
        ("constant world: no validation group has a significant counterfactual effect",
         not constant.counterfactual_significant.any()),
        ("uniform world: every validation group has a significant counterfactual effect (loss)",
         bool((uniform.counterfactual_significant & (uniform.counterfactual_dmap < 0)).all())),
        ("the validation groups rank higher (smaller consensus rank) in the uniform world",
         bool(mean_rank["uniform"] < mean_rank["constant"])),
    ]


def format_table(table) -> str:
    lines = ["| world | group | rank | drop ΔmAP [95% CI] | p (Holm) | counterfactual ΔmAP [95% CI] | p (Holm) |",
             "|---|---|---:|---|---:|---|---:|"]
    for row in table.sort_values(["world", "consensus_rank"]).itertuples():
        def effect(prefix):
            low, high = getattr(row, f"{prefix}_ci")
            value = getattr(row, f"{prefix}_dmap")
            return f"{100 * value:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"

        def p(prefix):
            value = getattr(row, f"{prefix}_p_holm")
            star = " *" if getattr(row, f"{prefix}_significant") else ""
            return ("not tested" if value != value else f"{value:.3g}") + star

        name = f"**{row.group}**" if row.knob else row.group
        lines.append(f"| {row.world} | {name} | {row.consensus_rank:g} | {effect('drop')} | {p('drop')} | "
                     f"{effect('counterfactual')} | {p('counterfactual')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="redo every stage of both worlds")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = {name: run_world(name, config, fresh=args.fresh) for name, config in worlds().items()}
    table = summary_table(results)
    print(format_table(table))
    for world, frame in table.groupby("world"):
        print(f"{world}: oracle mAP {100 * frame.oracle_mAP.iloc[0]:.1f}, none mAP {100 * frame.none_mAP.iloc[0]:.1f}")
    claims = check_claims(table)
    for text, ok in claims:
        print(f"[{'ok' if ok else 'FAILED'}] {text}")
    print(f"validation took {(time.perf_counter() - started) / 60:.1f} min")
    return 0 if all(ok for _, ok in claims) else 1


if __name__ == "__main__":
    sys.exit(main())
