"""``mosaic demo``: the whole mission on the built-in synthetic world, in one command (:func:`mosaic.api.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mosaic.app.commands.options import progress_option
from mosaic.synth.layouts import DEFAULT_LAYOUT, WORLD_LAYOUTS

HELP = """Synthesise a world, train the micro model with attribute experts and a learned router, trace the default routing conditions, analyse them and write report.html.

Stages, each reused on the next run when its settings, inputs and outputs are unchanged (content hashes in OUT/stages.json; --fresh redoes everything):

* world: OUT/world/, the default synthetic world in the Market-1501 layout (--layout dukemtmc: DukeMTMC-reID's)

* train: OUT/run/, the shipped config synthetic_micro on that world (2-3 minutes on 2 CPU cores; DukeMTMC-reID: synthetic_micro_duke)

* trace: OUT/trace.h5, oracle, none, drop/only/counterfactual per group, subsets, learned

* report: OUT/report.html, plus OUT/report.json with the same numbers

* audit: OUT/audit/, the trained network with every expert off exported as features (features_none.npz), traced as an external model's (trace.h5) and audited from its embeddings alone (report.html, report.json; docs/audit.md)

With --seeds N (N > 1) or --worlds 2 the demo is a study: each world is built once (OUT/<world>/world), every seed trains and traces in OUT/<world>/seed<S>/, and OUT/study.html and OUT/study.json compare them (mosaic study; docs/study.md). The second world makes downcolour uninformative (every identity the same lower-body colour).

Example: mosaic demo --out runs/demo, then open runs/demo/report.html in a browser.
"""



def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Folder for every stage's outputs."),
    fresh: bool = typer.Option(False, "--fresh", help="Redo every stage, even those that are up to date."),
    seed: int = typer.Option(0, "--seed", help="Seed of the world, the training run, the conditions and the analysis."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="Training config; data.root and run.out are set by the demo [default: the layout's micro config].",
        show_default=False,
    ),
    layout: str = typer.Option(DEFAULT_LAYOUT, "--layout", help=f"Dataset layout of the world: {', '.join(WORLD_LAYOUTS)}."),
    ids: Optional[int] = typer.Option(None, "--ids", help="Identities of the world (default: the default world's).", show_default=False),
    images_per_id: Optional[int] = typer.Option(
        None, "--images-per-id", help="Images per identity (default: the default world's).", show_default=False
    ),
    progress: bool = progress_option(),
    seeds: int = typer.Option(1, "--seeds", help="Training seeds per world; more than one writes OUT/study.html (mosaic study)."),
    worlds: int = typer.Option(1, "--worlds", help="1: the default world; 2: also a world whose downcolour is uninformative, compared in OUT/study.html."),
) -> None:
    from mosaic import api

    result = api.demo(out, seed=seed, config=config, layout=layout, ids=ids, images_per_id=images_per_id, fresh=fresh,
                      progress=progress, seeds=seeds, worlds=worlds, announce=lambda line: typer.echo(line, err=True))
    if result.study_json is not None:
        from mosaic.app.commands.demo_study import print_study_headline

        typer.echo(f"demo study finished in {result.minutes:.1f} min; report: {result.study_html}")
        print_study_headline(result.study_json, typer.echo)
        return
    typer.echo(f"demo finished in {result.minutes:.1f} min; report: {result.report_html}")
    _print_headline(result.report_json)


def _print_headline(report_json: Path) -> None:
    """The ranking of groups as the report's summary shows it, with the two paired effects."""
    import json

    from analysis import Results

    results = Results.from_dict(json.loads(report_json.read_text(encoding="utf-8"))["analysis"])
    if "ranking_groups" not in results.tables:
        return
    ranking = results.table("ranking_groups").sort_values("consensus_rank")
    effects = {}
    if "paired_identity" in results.tables:
        paired = results.table("paired_identity")
        effects = {(r.group, r.comparison): r.delta_map for r in paired.itertuples()}
    typer.echo(results.headline())  # says so when no group's effect differs from zero
    typer.echo("attribute groups in consensus order (consensus rank; ΔmAP in pp when dropped | counterfactual):")
    for row in ranking.itertuples():
        drop, counterfactual = effects.get((row.group, "drop")), effects.get((row.group, "counterfactual"))
        delta = "" if drop is None else f"  {drop:+6.2f} | {counterfactual:+6.2f}"  # pp
        typer.echo(f"  {row.consensus_rank:>4g}  {row.group:<12} {row.family:<20}{delta}")
    _print_decomposition(results, [str(g) for g in ranking["group"]])


def _print_decomposition(results, order: list[str]) -> None:
    """The five quantities of the report's summary: four per group with their intervals, and the code share."""
    from analysis.methods.decomposition import QUANTITIES, unavailable_quantities

    table, code = results.tables.get("decomposition"), results.tables.get("decomposition_code")
    if table is None:
        return
    level = 100 * float(results.settings.get("ci_level", 0.95))
    mAP = table[(table["metric"] == "mAP") & (table["status"] == "ok")]
    shown = [q for q in QUANTITIES if q in set(mAP["quantity"])]
    if shown:
        typer.echo(f"what each group's routing is worth, ΔmAP in points [{level:g}% identity-cluster interval]: "
                   + "; ".join(QUANTITIES[q].meaning.split(":")[0] + f" = {q}" for q in shown))
        cells = {(r.group, r.quantity): f"{r.estimate:+6.2f} [{r.ci_low:+6.2f}, {r.ci_high:+6.2f}]"
                 for r in mAP.itertuples()}
        typer.echo((f"  {'group':<12}" + "".join(f"{q:<27}" for q in shown)).rstrip())
        for group in order:
            typer.echo((f"  {group:<12}" + "".join(f"{cells.get((group, q), '-'):<27}" for q in shown)).rstrip())
    if code is not None:
        for row in code[code["status"] == "ok"].itertuples():
            typer.echo(f"code share of the oracle's gain over none ({row.metric}): {100 * row.estimate:.1f}% "
                       f"[{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]")
    for quantity, reason in {**unavailable_quantities(table), **unavailable_quantities(code)}.items():
        typer.echo(f"unavailable: {quantity.replace('_', ' ')}: {reason}")


def register(app: typer.Typer) -> None:
    app.command(name="demo", help=HELP)(demo)
