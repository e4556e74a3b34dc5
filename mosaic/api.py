"""The library API: everything the ``mosaic`` commands do, as Python functions.

Each function validates its inputs before any heavy work, raises :class:`mosaic.errors.MosaicError`
(one line naming the problem and the fix) for anything the caller can correct, and returns a typed
result. The command line (:mod:`mosaic.commands`) only parses options, calls these and prints.

Example::

    from mosaic import api

    run = api.train("synthetic_micro", out="runs/micro", overrides=["data.root=worlds/default"])
    traced = api.trace(run.checkpoint, "runs/micro/trace.h5", conditions="oracle,none,drop:*")
    report = api.report(traced.path, "runs/micro/report.html")

Importing this module loads neither torch nor the analysis stack; each function loads what it needs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from mosaic.errors import MosaicError
from mosaic.train.run import TrainResult

__all__ = ["DemoResult", "ReportResult", "StudyResult", "TraceResult", "TrainResult", "configs", "copy_config", "demo",
           "report", "report_output", "study", "trace", "train", "write_reports"]

PathLike = str | os.PathLike


@dataclass
class TraceResult:
    """A traced checkpoint: the file written (``None`` when not asked to write) and its contents
    (a :class:`mosaic.traceio.TraceData`)."""

    path: Optional[Path]
    data: Any

    @property
    def headline(self) -> dict[str, float]:
        """mAP of the ``oracle`` and ``none`` conditions, where traced."""
        names = self.data.condition_name.tolist()
        return {n: float(self.data.mAP[names.index(n)]) for n in ("oracle", "none") if n in names}

    def summary(self) -> str:
        data = self.data
        headline = ", ".join(f"{n} mAP {100 * v:.1f}" for n, v in self.headline.items())
        return (f"wrote {self.path}: {data.n_conditions} conditions x {data.n_queries} queries "
                f"({int(data.valid.sum())} valid) x {data.n_gallery} gallery" + (f"; {headline}" if headline else ""))


@dataclass
class ReportResult:
    """A written report: its path(s), the analysis (:class:`analysis.Results`) and the document."""

    path: Path
    results: Any
    document: Any
    paths: list[Path] = field(default_factory=list)

    @property
    def n_warnings(self) -> int:
        return sum(len(b.rows) for b in self.document.section("warnings").tables())


@dataclass
class DemoResult:
    """The demo's outputs: its folder, the stages that ran (the others were reused) and the analysis.

    A one-run demo fills ``report_html`` / ``report_json`` and ``results`` (:class:`analysis.Results`);
    a study demo (several seeds or worlds) fills ``study_html`` / ``study_json`` and ``results``
    (the study's results).
    """

    out: Path
    stages_run: list[str]
    minutes: float
    results: Any
    report_html: Optional[Path] = None
    report_json: Optional[Path] = None
    study_html: Optional[Path] = None
    study_json: Optional[Path] = None


@dataclass
class StudyResult:
    """A written study report (``paths``, one per format) and the study's results."""

    paths: list[Path]
    results: Any


def configs() -> list:
    """The training configs shipped with mosaic (:class:`mosaic.configs.ShippedConfig`), sorted by name.

    Any of their names works wherever a config file does (``train("synthetic_micro", ...)``).
    """
    from mosaic.configs import shipped_configs

    return shipped_configs()


def copy_config(name: str, dest: PathLike, *, overwrite: bool = False) -> Path:
    """Write the shipped config ``name`` to ``dest`` (a file, or a folder for ``NAME.yaml``) to edit it."""
    from mosaic.configs import copy_config as copy

    return copy(name, dest, overwrite=overwrite)


def train(
    config: Optional[PathLike] = None,
    out: Optional[PathLike] = None,
    *,
    resume: Optional[PathLike] = None,
    overrides: Sequence[str] = (),
    stop_at: Optional[int] = None,
    progress: bool = True,
) -> TrainResult:
    """Train a model from a YAML config (or continue the run in ``resume``).

    ``overrides`` are ``"dotted.key=value"`` strings (values parsed as YAML), as ``mosaic train --set``.
    Ctrl-C raises :class:`mosaic.train.TrainingInterrupted` after writing a checkpoint; a NaN loss
    raises :class:`mosaic.train.TrainingDiverged`. Both are :class:`MosaicError`\\ s.
    """
    from mosaic.train.distributed import shutdown_distributed
    from mosaic.train.loop import Trainer
    from mosaic.train.run import resolve_run

    cfg, run_dir, resuming = resolve_run(config, tuple(overrides or ()), resume=resume, out=out)
    trainer = Trainer(cfg, run_dir, resume=resuming, progress=progress)
    try:
        result = trainer.fit(stop_at=stop_at)
    finally:
        shutdown_distributed(trainer.dist)
    result.is_main = bool(trainer.main)
    return result


def trace(
    checkpoint: PathLike,
    out: Optional[PathLike] = None,
    *,
    conditions: Optional[str] = None,
    settings=None,
    data: Optional[PathLike] = None,
    format: Optional[str] = None,
    attributes: Optional[PathLike] = None,
    schema: Optional[str] = None,
    subsets: Optional[int] = None,
    seed: int = 0,
    fixed_gates: str = "shares",
    device: str = "auto",
    image_cache: Optional[PathLike] = None,
    threads: Optional[int] = None,
    progress: bool = True,
    command: Optional[str] = None,
) -> TraceResult:
    """Trace a checkpoint (a ``.pt`` file or a run folder) under routing conditions, into ``out`` (HDF5).

    ``conditions``: comma-separated name patterns (``"oracle,drop:*"``; default: all kinds).
    ``settings``: a :class:`mosaic.trace.TraceSettings` (its ``feature=None`` means the checkpoint's
    ``eval.feature``; its ``progress`` is replaced by ``progress``). ``out=None`` returns the trace
    without writing it. ``command`` is recorded in the provenance (default: the equivalent
    ``mosaic trace`` command line).
    """
    import dataclasses

    from mosaic.trace import TraceSettings
    from mosaic.trace_checkpoint import check_output, trace_checkpoint, trace_command_line
    from mosaic.traceio import write_trace

    out = check_output(Path(out)) if out is not None else None
    settings = dataclasses.replace(settings or TraceSettings(feature=None), progress=progress)
    if command is None:
        command = trace_command_line({
            "ckpt": checkpoint, "data": data, "format": format, "attributes": attributes, "schema": schema,
            "out": out, "conditions": conditions, "subsets": subsets, "top_k": settings.top_k,
            "max_rank": settings.max_rank, "batch_size": settings.batch_size, "device": device, "seed": seed,
            "fixed_gates": fixed_gates, "distance": settings.distance, "feature": settings.feature,
            "cache_budget": settings.cache_budget_mb, "spill_dir": settings.spill_dir, "image_cache": image_cache,
            "threads": threads, "quiet": not progress,
        })
    result = trace_checkpoint(
        Path(checkpoint), settings=settings, data=data, format=format, attributes=attributes, schema=schema,
        conditions=conditions, subsets=subsets, seed=seed, fixed_gates=fixed_gates, device=device,
        image_cache=image_cache, threads=threads, command=command, out=out,
    )
    if out is not None:
        write_trace(result, out)
    return TraceResult(path=out, data=result)


def report(
    trace: PathLike,
    out: Optional[PathLike] = None,
    format: Optional[str] = None,
    *,
    images: bool = True,
    alpha: float = 0.05,
    ci_level: float = 0.95,
    bootstrap: int = 1000,
    permutations: int = 2000,
    seed: int = 0,
    progress: Callable[[str], None] | bool = False,
    command: Optional[str] = None,
) -> ReportResult:
    """Analyse a trace and write its report (``format``: html, md or json; default from ``out``'s suffix).

    ``out`` is a file or an existing folder (default: ``report.<ext>`` next to the trace).
    ``progress``: ``True`` for one line per stage on stderr, or a callable receiving each stage's name.
    """
    from mosaic.reporting import StageProgress, analyse_trace, canonical_command, render_report, resolve_output

    trace = Path(trace)
    fmt, path = resolve_output(trace, Path(out) if out is not None else None, format)
    stages = progress if callable(progress) else StageProgress(enabled=bool(progress))
    try:
        results, document = analyse_trace(
            trace, stages, images=images,
            command=command or canonical_command(trace, fmt.name, path, images, alpha, bootstrap, permutations, seed, ci_level),
            alpha=alpha, n_bootstrap=bootstrap, n_permutations=permutations, seed=seed, ci_level=ci_level,
        )
        render_report(document, fmt, path, stages)
    except BaseException:
        if isinstance(stages, StageProgress):
            stages.finish(failed=True)
        raise
    if isinstance(stages, StageProgress):
        stages.finish()
    return ReportResult(path=path, results=results, document=document, paths=[path])


def report_output(trace: PathLike, out: Optional[PathLike] = None, format: Optional[str] = None) -> Path:
    """The file :func:`report` writes for these arguments (an unknown format or missing folder is a MosaicError)."""
    from mosaic.reporting import resolve_output

    return resolve_output(Path(trace), Path(out) if out is not None else None, format)[1]


def write_reports(trace: PathLike, out: PathLike, formats: Sequence[str] = ("html", "json"), *, images: bool = True,
                  command: str = "", progress: bool = False, **settings) -> ReportResult:
    """One analysis of ``trace`` rendered in several formats, as ``out/report.<ext>``.

    ``settings`` go to :func:`analysis.analyze` (alpha, ci_level, n_bootstrap, n_permutations, seed).
    """
    from mosaic.reporting import StageProgress, analyse_trace, render_report
    from reports import get_format

    out = Path(out)
    formats_ = [get_format(name) for name in formats]  # an unknown format fails before the analysis
    stages = StageProgress(enabled=progress)
    try:
        results, document = analyse_trace(Path(trace), stages, images=images, command=command, **settings)
        paths = []
        for fmt in formats_:
            paths.append(out / f"report{fmt.suffix}")
            render_report(document, fmt, paths[-1], stages)
    finally:
        stages.finish()
    return ReportResult(path=paths[0], results=results, document=document, paths=paths)


def demo(
    out: PathLike = "runs/demo",
    *,
    seed: int = 0,
    config: Optional[PathLike] = None,
    layout: Optional[str] = None,
    ids: Optional[int] = None,
    images_per_id: Optional[int] = None,
    world_config=None,
    fresh: bool = False,
    progress: bool = True,
    seeds: int = 1,
    worlds: int = 1,
    announce: Callable[[str], None] | None = None,
) -> DemoResult:
    """The whole mission on a synthetic world: world -> training run -> trace -> HTML and JSON report.

    Stages whose settings, inputs and outputs are unchanged are reused (``fresh=True`` redoes all).
    ``world_config`` (a :class:`mosaic.synth.WorldConfig`) replaces the layout's default world;
    ``ids`` / ``images_per_id`` resize it. ``announce`` receives one line per stage. With
    ``seeds > 1`` or ``worlds == 2`` the demo is a study (:mod:`mosaic.demo_study`): every seed
    trains and traces on every world, and ``OUT/study.html`` / ``OUT/study.json`` compare them.
    """
    import json

    from analysis import Results
    from mosaic.configs import config_path
    from mosaic.demo import build_stages, check_config_reads_layout
    from mosaic.demo_study import MAX_WORLDS, build_study_stages
    from mosaic.fileio import ensure_writable_dir
    from mosaic.pipeline import Ledger, run_stages
    from mosaic.synth import WorldConfig
    from mosaic.synth.layouts import DEFAULT_LAYOUT, get_layout

    if seeds < 1 or not 1 <= worlds <= MAX_WORLDS:
        raise MosaicError(f"--seeds must be at least 1 and --worlds 1 or {MAX_WORLDS}, got --seeds {seeds} --worlds {worlds}")
    world_layout = get_layout(layout or (world_config.layout if world_config is not None else DEFAULT_LAYOUT))
    config = config_path(config if config is not None else world_layout.demo_config)
    check_config_reads_layout(config, world_layout)
    out = ensure_writable_dir(Path(out), create=True)
    if world_config is None:
        size = {k: v for k, v in (("n_ids", ids), ("images_per_id", images_per_id)) if v is not None}
        world_config = WorldConfig(seed=seed, layout=world_layout.name, **size)
    say = announce or (lambda line: None)
    is_study = seeds > 1 or worlds > 1
    if is_study:
        stages = build_study_stages(out, config=config, seed=seed, n_seeds=seeds, n_worlds=worlds, progress=progress,
                                    world_config=world_config, announce=say)
    else:
        stages = build_stages(out, config=config, seed=seed, progress=progress, world_config=world_config, announce=say)
    started = time.perf_counter()
    ran = run_stages(stages, Ledger(out), fresh=fresh, announce=say)
    minutes = (time.perf_counter() - started) / 60
    if is_study:
        study_json = out / "study.json"
        results = json.loads(study_json.read_text(encoding="utf-8"))["analysis"]
        return DemoResult(out=out, stages_run=ran, minutes=minutes, results=results, study_html=out / "study.html",
                          study_json=study_json)
    report_json = out / "report.json"
    results = Results.from_dict(json.loads(report_json.read_text(encoding="utf-8"))["analysis"])
    return DemoResult(out=out, stages_run=ran, minutes=minutes, results=results, report_html=out / "report.html",
                      report_json=report_json)


def study(
    traces: Sequence[PathLike],
    out: PathLike = "study.html",
    format: Optional[str] = None,
    *,
    labels: Optional[Sequence[str] | Mapping[str, str]] = None,
    rank_by: str = "drop",
    alpha: float = 0.05,
    ci_level: float = 0.95,
    bootstrap: int = 1000,
    seed: int = 0,
    df: str = "satterthwaite",
    command: Optional[str] = None,
) -> StudyResult:
    """Compare several traces: seeds of one label as replicates, labels side by side (:func:`analysis.study`).

    ``labels``: ``["NAME=GLOB", ...]`` (or ``{NAME: GLOB}``) over the trace paths; default: the labels
    the traces record. ``out``'s suffix picks the format unless ``format`` is given.
    """
    import shlex

    from analysis.metaanalysis import DF_METHODS
    from analysis.study_runs import STUDY_QUANTITIES
    from mosaic.fileio import ensure_writable_dir
    from mosaic.reporting import write_study
    from mosaic.settings import check_bounds, check_choice

    for path in traces:
        if not Path(path).is_file():
            raise MosaicError(f"trace {path} does not exist: check the path")
    check_bounds(ci_level, (0, 1, "()"), "--ci-level")
    check_bounds(alpha, (0, 1, "()"), "--alpha")
    check_bounds(bootstrap, (100, None), "--bootstrap")
    check_choice(df, DF_METHODS, "--df")
    check_choice(rank_by, STUDY_QUANTITIES, "--rank-by")
    out = Path(out)
    ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    if isinstance(labels, Mapping):
        labels = [f"{name}={pattern}" for name, pattern in labels.items()]
    if command is None:
        command = shlex.join(["mosaic", "study", *map(str, traces), "--out", str(out)]
                             + [a for lab in (labels or []) for a in ("--label", lab)])
    results, paths = write_study([Path(t) for t in traces], out, fmt_name=format, labels=list(labels) if labels else None,
                                 command=command, rank_by=rank_by, alpha=alpha, ci_level=ci_level, n_bootstrap=bootstrap,
                                 seed=seed, df_method=df)
    return StudyResult(paths=paths, results=results)

