"""`mosaic demo --seeds N --worlds 2`: the stage graph (training itself is covered by the demo tests)."""

from __future__ import annotations

from pathlib import Path

from mosaic.configs import shipped_config
from mosaic.app.demo_study import UNINFORMATIVE_GROUP, build_study_stages
from mosaic.synth import WorldConfig


def test_each_world_is_built_once_and_each_seed_trains_and_traces(tmp_path: Path):
    stages = build_study_stages(tmp_path, config=shipped_config("synthetic_micro").path, seed=5, n_seeds=3, n_worlds=2,
                                progress=False, world_config=WorldConfig(seed=5))
    names = [s.name for s in stages]
    assert names.count("study") == 1 and names[-1] == "study"
    worlds = [s for s in stages if s.name.startswith("world:")]
    assert len(worlds) == 2
    assert worlds[0].settings["config"]["constant"] == []
    assert worlds[1].settings["config"]["constant"] == [UNINFORMATIVE_GROUP]
    trains = [s for s in stages if s.name.startswith("train:")]
    assert len(trains) == 6 and {s.settings["seed"] for s in trains} == {5, 6, 7}
    assert all(len(s.upstream) == 1 and s.upstream[0].name.startswith("world:") for s in trains)
    study = stages[-1]
    assert len(study.upstream) == 6 and [o.name for o in study.outputs] == ["study.html", "study.json"]
    # one world folder per world, shared by its seeds
    assert len({s.outputs[0] for s in worlds}) == 2


def test_bad_seed_or_world_counts_are_one_line(tmp_path, capsys):
    from mosaic.app.cli import main

    assert main(["demo", "--out", str(tmp_path), "--seeds", "2", "--worlds", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--worlds" in err
