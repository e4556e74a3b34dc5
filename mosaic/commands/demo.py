"""``mosaic demo``: the whole mission on the built-in synthetic world, in one command."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from mosaic.errors import MosaicError
from mosaic.synth.layouts import DEFAULT_LAYOUT, WORLD_LAYOUTS

HELP = """Synthesise a world, train the micro model with attribute experts and a learned router, trace the default routing conditions, analyse them and write report.html.

Stages, each reused on the next run when its settings, inputs and outputs are unchanged (content hashes in OUT/stages.json; --fresh redoes everything):

* world: OUT/world/, the default synthetic world in the Market-1501 layout (--layout dukemtmc: DukeMTMC-reID's)

* train: OUT/run/, configs/synthetic_micro.yaml on that world (2-3 minutes on 2 CPU cores; DukeMTMC-reID: configs/synthetic_micro_duke.yaml)

* trace: OUT/trace.h5, oracle, none, drop/only/counterfactual per group, subsets, learned

* report: OUT/report.html, plus OUT/report.json with the same numbers

With --seeds N (N > 1) or --worlds 2 the demo is a study: each world is built once (OUT/<world>/world), every seed trains and traces in OUT/<world>/seed<S>/, and OUT/study.html and OUT/study.json compare them (mosaic study; docs/study.md). The second world makes downcolour uninformative (every identity the same lower-body colour).

Example: mosaic demo --out runs/demo, then open runs/demo/report.html in a browser.
"""

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEMO_CONFIG = CONFIG_DIR / "synthetic_micro.yaml"


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
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars on stderr."),
    seeds: int = typer.Option(1, "--seeds", help="Training seeds per world; more than one writes OUT/study.html (mosaic study)."),
    worlds: int = typer.Option(1, "--worlds", help="1: the default world; 2: also a world whose downcolour is uninformative, compared in OUT/study.html."),
) -> None:
    from mosaic.fileio import ensure_writable_dir
    from mosaic.pipeline import Ledger, run_stages
    from mosaic.synth import WorldConfig
    from mosaic.synth.layouts import get_layout

    world_layout = get_layout(layout)
    config = config if config is not None else CONFIG_DIR / world_layout.demo_config
    if not config.is_file():
        raise MosaicError(f"training config {config} not found: pass --config configs/{world_layout.demo_config} from a clone")
    check_config_reads_layout(config, world_layout)
    out = ensure_writable_dir(out, create=True)
    size = {k: v for k, v in (("n_ids", ids), ("images_per_id", images_per_id)) if v is not None}
    world_config = WorldConfig(seed=seed, layout=world_layout.name, **size)
    if seeds > 1 or worlds > 1:
        _study_demo(out, config=config, seed=seed, seeds=seeds, worlds=worlds, progress=progress,
                    world_config=world_config, fresh=fresh)
        return
    stages = build_stages(out, config=config, seed=seed, progress=progress, world_config=world_config)
    started = time.perf_counter()
    run_stages(stages, Ledger(out), fresh=fresh, announce=lambda line: typer.echo(line, err=True))
    minutes = (time.perf_counter() - started) / 60
    typer.echo(f"demo finished in {minutes:.1f} min; report: {out / 'report.html'}")
    _print_headline(out / "report.json")


def build_stages(out: Path, *, config: Path, seed: int, progress: bool, world_config=None, world_dir: Path | None = None) -> list:
    """The demo's four stages, each a call of the same command a user would type.

    ``world_config`` (a :class:`mosaic.synth.WorldConfig`) replaces the default world; the
    validation worlds of ``benchmarks/validation.py`` go through the same stages.
    """
    from mosaic import __version__
    from mosaic.pipeline import Stage
    from mosaic.synth import WorldConfig

    world_dir = world_dir or out / "world"  # several seeds of a study share one world
    run_dir, trace_path, report_path = out / "run", out / "trace.h5", out / "report.html"
    world_config = world_config or WorldConfig(seed=seed)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    quiet = [] if progress else ["--quiet"]

    def make_world() -> None:
        from mosaic.synth import synthesize

        synthesize(world_dir, world_config, overwrite=True, progress=progress)

    def train() -> None:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)  # a stale run of the demo's own folder
        _invoke(
            ["train", "--config", str(config), "--out", str(run_dir),
             "--set", f"data.root={world_dir}", "--set", f"run.seed={seed}"]
            + ([] if progress else ["--no-progress"]),
            stage="train",
        )

    def trace() -> None:
        _invoke(["trace", "--ckpt", str(checkpoint), "--out", str(trace_path), "--seed", str(seed)] + quiet, stage="trace")

    def report() -> None:
        _write_reports(trace_path, out, seed=seed, progress=progress)

    world = Stage("world", {"config": world_config.to_dict(), "version": __version__}, [world_dir], make_world)
    trained = Stage(
        "train", {"config": config.read_text(encoding="utf-8"), "seed": seed}, [checkpoint], train, upstream=[world]
    )
    traced = Stage("trace", {"seed": seed, "conditions": "default"}, [trace_path], trace, upstream=[trained])
    reported = Stage(
        "report", {"seed": seed, "version": __version__}, [report_path, out / "report.json"], report, upstream=[traced]
    )
    return [world, trained, traced, reported]


def _study_demo(out: Path, *, config: Path, seed: int, seeds: int, worlds: int, progress: bool, world_config,
                fresh: bool) -> None:
    from mosaic.commands.demo_study import MAX_WORLDS, build_study_stages, print_study_headline
    from mosaic.pipeline import Ledger, run_stages

    if seeds < 1 or not 1 <= worlds <= MAX_WORLDS:
        raise MosaicError(f"--seeds must be at least 1 and --worlds 1 or {MAX_WORLDS}, got --seeds {seeds} --worlds {worlds}")
    stages = build_study_stages(out, config=config, seed=seed, n_seeds=seeds, n_worlds=worlds, progress=progress,
                                world_config=world_config)
    started = time.perf_counter()
    run_stages(stages, Ledger(out), fresh=fresh, announce=lambda line: typer.echo(line, err=True))
    typer.echo(f"demo study finished in {(time.perf_counter() - started) / 60:.1f} min; report: {out / 'study.html'}")
    print_study_headline(out / "study.json", typer.echo)


def check_config_reads_layout(config: Path, world_layout) -> None:
    """A training config that names another dataset format or schema than the world's is a one-line error."""
    import yaml


    try:
        data = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data") or {}
    except (yaml.YAMLError, AttributeError):
        return  # the train stage reports a malformed config in its own words
    if not isinstance(data, dict):
        return
    for key, expected in (("format", world_layout.name), ("schema", world_layout.schema_name)):
        value = data.get(key)
        if value is not None and value != expected:
            raise MosaicError(
                f"training config {config} reads data.{key}={value} but the world is in the {world_layout.name} layout: "
                f"pass --config configs/{world_layout.demo_config}"
                + (f", or --layout {value}" if key == "format" and value in WORLD_LAYOUTS else "")
            )


def _invoke(args: list[str], *, stage: str) -> None:
    from mosaic.cli import main

    code = main(args)
    if code != 0:
        raise MosaicError(
            f"demo stopped in stage {stage!r} (exit {code}); fix what it reported above and run the demo again: "
            "finished stages are reused"
        )


def _write_reports(trace_path: Path, out: Path, *, seed: int, progress: bool) -> None:
    """One analysis, rendered as HTML and as JSON."""
    from mosaic.commands.report import StageProgress, analyse_trace
    from mosaic.fileio import write_text_atomic
    from reports import get_format

    stages = StageProgress(enabled=progress)
    document = analyse_trace(trace_path, stages, command=f"mosaic demo --seed {seed}", seed=seed)
    for name in ("html", "json"):
        fmt = get_format(name)
        stages(f"writing report{fmt.suffix}")
        write_text_atomic(out / f"report{fmt.suffix}", fmt.render(document))
    stages.finish()


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
    typer.echo("attribute groups the model relies on most (consensus rank; ΔmAP when dropped | counterfactual):")
    for row in ranking.itertuples():
        drop, counterfactual = effects.get((row.group, "drop")), effects.get((row.group, "counterfactual"))
        delta = "" if drop is None else f"  {100 * drop:+6.2f} | {100 * counterfactual:+6.2f}"
        typer.echo(f"  {row.consensus_rank:>4g}  {row.group:<12} {row.family:<20}{delta}")
    _print_decomposition(results, [str(g) for g in ranking["group"]])


def _print_decomposition(results, order: list[str]) -> None:
    """The five quantities of the report's summary: four per group with their intervals, and the code share."""
    from analysis.decomposition import QUANTITIES, unavailable_quantities

    table, code = results.tables.get("decomposition"), results.tables.get("decomposition_code")
    if table is None:
        return
    level = 100 * float(results.settings.get("ci_level", 0.95))
    mAP = table[(table["metric"] == "mAP") & (table["status"] == "ok")]
    shown = [q for q in QUANTITIES if q in set(mAP["quantity"])]
    if shown:
        typer.echo(f"what each group's routing is worth, ΔmAP in points [{level:g}% identity-cluster interval]: "
                   + "; ".join(QUANTITIES[q].meaning.split(":")[0] + f" = {q}" for q in shown))
        cells = {(r.group, r.quantity): f"{100 * r.estimate:+6.2f} [{100 * r.ci_low:+6.2f}, {100 * r.ci_high:+6.2f}]"
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
