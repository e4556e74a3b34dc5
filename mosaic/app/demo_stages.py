"""The demo's stages for one run: world -> training run -> trace -> report (-> audit of the network's
exported features, docs/audit.md), each the call behind the
command a user would type (:func:`mosaic.train.launch.train`, :func:`mosaic.tracing.checkpoint.trace`,
:func:`mosaic.app.reporting.write_reports`), which :mod:`mosaic.api` also exposes.

``mosaic demo`` (:mod:`mosaic.app.demo`), its study (:mod:`mosaic.app.demo_study`) and
``benchmarks/validation.py`` run these stages; each is reused when its settings, inputs and outputs
are unchanged (:mod:`mosaic.app.pipeline`).
"""

from __future__ import annotations

from pathlib import Path

from mosaic.core.errors import MosaicError

__all__ = ["build_stages", "check_config_reads_layout"]


def build_stages(out: Path, *, config: Path, seed: int, progress: bool, world_config=None,
                 world_dir: Path | None = None, announce=None) -> list:
    """The demo's five stages, each the library call behind the command a user would type (the fifth,
    ``audit``, exports the trained network's features with every expert off and audits them).

    ``world_config`` (a :class:`mosaic.synth.WorldConfig`) replaces the default world; the
    validation worlds of ``benchmarks/validation.py`` go through the same stages; ``world_dir``
    replaces ``out/world`` (several seeds of a study share one world). ``announce``
    receives one line per finished step (the training and trace summaries).
    """
    from mosaic import __version__
    from mosaic.app.pipeline import Stage
    from mosaic.app.reporting import write_reports
    from mosaic.tracing.checkpoint import trace as trace_checkpoint
    from mosaic.train.launch import train as train_run
    from mosaic.synth import WorldConfig

    world_dir = world_dir or out / "world"
    run_dir, trace_path, report_path = out / "run", out / "trace.h5", out / "report.html"
    audit_dir = out / "audit"
    features_path = audit_dir / "features_none.npz"
    world_config = world_config or WorldConfig(seed=seed)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    say = announce or (lambda line: None)

    def make_world() -> None:
        from mosaic.synth import synthesize

        synthesize(world_dir, world_config, overwrite=True, progress=progress)

    def train() -> None:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)  # a stale run of the demo's own folder
        result = train_run(config, out=run_dir, overrides=[f"data.root={world_dir}", f"run.seed={seed}"], progress=progress)
        say(result.summary())

    def trace() -> None:
        result = trace_checkpoint(checkpoint, trace_path, seed=seed, progress=progress)
        say(result.summary())

    def report() -> None:
        write_reports(trace_path, out, ("html", "json"), command=f"mosaic demo --seed {seed}", seed=seed,
                          progress=progress)

    def audit() -> None:
        # the trained network with every expert off, exported and audited as any external model's features
        # (docs/audit.md): the embedding audit end to end on a real network, at the cost of one trunk pass
        from mosaic.app.audit import export_features
        from mosaic.tracing.embeddings import trace_features

        audit_dir.mkdir(parents=True, exist_ok=True)
        export_features(checkpoint, features_path, condition="none", model_name="demo_none")
        result = trace_features(features_path, audit_dir / "trace.h5", data=world_dir, seed=seed)
        say(result.summary())
        write_reports(audit_dir / "trace.h5", audit_dir, ("html", "json"), seed=seed, progress=progress,
                      command=f"mosaic demo --seed {seed} (audit of the exported features)")

    world = Stage("world", {"config": world_config.to_dict(), "version": __version__}, [world_dir], _named("world", make_world))
    trained = Stage(
        "train", {"config": config.read_text(encoding="utf-8"), "seed": seed}, [checkpoint], _named("train", train),
        upstream=[world],
    )
    traced = Stage("trace", {"seed": seed, "conditions": "default"}, [trace_path], _named("trace", trace), upstream=[trained])
    reported = Stage(
        "report", {"seed": seed, "version": __version__}, [report_path, out / "report.json"], _named("report", report),
        upstream=[traced],
    )
    audited = Stage(
        "audit", {"seed": seed, "version": __version__, "condition": "none"},
        [features_path, audit_dir / "trace.h5", audit_dir / "report.html"], _named("audit", audit), upstream=[trained],
    )
    return [world, trained, traced, reported, audited]


def _named(stage: str, run):
    """``run`` with its user errors prefixed by the stage they stopped (the status is kept)."""

    def run_stage() -> None:
        try:
            run()
        except MosaicError as exc:
            error = MosaicError(f"demo stopped in stage {stage!r}: {exc} (finished stages are reused on the next run)")
            error.exit_code = exc.exit_code
            raise error from exc

    return run_stage


def check_config_reads_layout(config: Path, world_layout) -> None:
    """A training config that names another dataset format or schema than the world's is a one-line error."""
    import yaml

    from mosaic.synth.layouts import WORLD_LAYOUTS

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
                f"pass --config {world_layout.demo_config}"
                + (f", or --layout {value}" if key == "format" and value in WORLD_LAYOUTS else "")
            )
