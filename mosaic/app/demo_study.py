"""The demo as a study of several training runs (``mosaic demo --seeds N [--worlds 2]``, :func:`mosaic.api.demo`).

Each world is synthesised once; each seed trains and traces the demo model on it (the same
train and trace stages as the one-run demo, under names of their own in one ledger, so finished
runs are reused); the last stage writes ``OUT/study.html`` and ``OUT/study.json``.

The second world (``--worlds 2``) is the default world with one group made **uninformative**:
every identity gets the same state of :data:`UNINFORMATIVE_GROUP` (the synth ``constant`` knob),
so its route carries no identity information there. That is the planted difference a study must
find: the group's misrouting effect (counterfactual − oracle) is zero on that world and negative
on the default one, a label × group interaction.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

UNINFORMATIVE_GROUP = "downcolour"
WORLD_NAMES = ("default", f"uninformative-{UNINFORMATIVE_GROUP}")
MAX_WORLDS = len(WORLD_NAMES)


def world_configs(world_config, n_worlds: int) -> dict:
    """``{name: WorldConfig}``: the default world, and with two worlds the uninformative one."""
    worlds = {WORLD_NAMES[0]: world_config}
    if n_worlds > 1:
        worlds[WORLD_NAMES[1]] = replace(world_config, constant=tuple(world_config.constant) + (UNINFORMATIVE_GROUP,))
    return worlds


def build_study_stages(out: Path, *, config: Path, seed: int, n_seeds: int, n_worlds: int, progress: bool,
                       world_config, announce=None) -> list:
    """World stages, a train and a trace stage per world and seed, then the study stage."""
    from mosaic import __version__
    from mosaic.app.demo_stages import build_stages
    from mosaic.app.pipeline import Stage

    stages, traces, labels = [], [], {}
    for name, cfg in world_configs(world_config, n_worlds).items():
        labels[name] = str(out / name / "*")
        world_stage = None
        for s in range(n_seeds):
            run_seed = seed + s
            # a study uses each run's world, training and trace (not its own report nor the audit)
            world, trained, traced = build_stages(out / name / f"seed{run_seed}", config=config, seed=run_seed,
                                                  progress=progress, world_config=cfg,
                                                  world_dir=out / name / "world", announce=announce)[:3]
            if world_stage is None:
                world_stage = replace(world, name=f"world:{name}")
                stages.append(world_stage)
            trained = replace(trained, name=f"train:{name}:seed{run_seed}", upstream=[world_stage])
            traced = replace(traced, name=f"trace:{name}:seed{run_seed}", upstream=[trained])
            stages += [trained, traced]
            traces.append(traced)

    paths = [t.outputs[0] for t in traces]
    outputs = [out / "study.html", out / "study.json"]

    def study() -> None:
        from mosaic.app.reporting import write_study

        write_study(paths, outputs, labels=labels, seed=seed,
                    command=f"mosaic demo --seeds {n_seeds} --worlds {n_worlds} --seed {seed}")

    stages.append(Stage("study", {"seed": seed, "version": __version__, "labels": labels}, outputs, study,
                        upstream=traces))
    return stages
