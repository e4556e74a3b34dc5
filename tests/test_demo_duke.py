"""The whole pipeline on a DukeMTMC-reID-layout world: train -> trace -> report on the dukemtmc
schema (10 groups, no age or hair, one intrinsic group), as ``mosaic demo --layout dukemtmc`` runs it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

import analysis
from mosaic.app.cli import main
from mosaic.configs import shipped_config
from mosaic.data import load_dataset
from mosaic.core.schema import load_schema

SCHEMA = load_schema("dukemtmc")
GROUPS = SCHEMA.group_names


@pytest.fixture(scope="module")
def duke_demo(tmp_path_factory):
    """One Duke-layout demo on 16 identities (plus gallery-only ones) and a one-epoch config."""
    folder = tmp_path_factory.mktemp("duke_demo")
    config = yaml.safe_load(shipped_config("synthetic_micro_duke").path.read_text())
    assert config["data"]["format"] == "dukemtmc"
    config["optim"].update(epochs=1, warmup_epochs=0)
    config["eval"]["every"] = 1
    config["sampler"]["p"] = 4  # the world has 8 train identities
    config["run"]["checkpoint_every"] = 1
    config_path = folder / "tiny_duke.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = folder / "out"
    args = ["demo", "--layout", "dukemtmc", "--out", str(out), "--config", str(config_path),
            "--ids", "16", "--images-per-id", "8", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    return out


def test_the_world_is_in_the_duke_layout(duke_demo):
    sidecar = json.loads((duke_demo / "world" / "world.json").read_text())
    assert sidecar["layout"] == "dukemtmc" and (duke_demo / "world" / "duke_attribute.mat").is_file()
    assert re.fullmatch(r"\d{4}_c\d_f\d{7}\.jpg", next((duke_demo / "world" / "query").iterdir()).name)


def test_the_trace_is_on_the_duke_schema_with_every_condition(duke_demo):
    trace = analysis.read_trace(duke_demo / "trace.h5")
    assert trace.schema.name == "dukemtmc" and trace.schema.group_names == GROUPS and len(GROUPS) == 10
    names = set(trace.conditions.condition)
    assert {"oracle", "none", "learned"} <= names
    for kind in ("drop", "only", "counterfactual"):
        assert {f"{kind}:{g}" for g in GROUPS} == {n for n in names if n.startswith(f"{kind}:")}
    # the query and gallery states are the attribute file's, gallery-only identities included
    ds = load_dataset(duke_demo / "world")
    for split, states, pids in (("query", trace.data.query_states, trace.data.query_pid),
                                ("gallery", trace.data.gallery_states, trace.data.gallery_pid)):  # fmt: skip
        frame = ds.split(split)
        expected = frame.groupby("pid")[list(GROUPS)].first()
        np.testing.assert_array_equal(states, expected.loc[pids].to_numpy())
    assert (trace.data.gallery_states >= 0).all()  # Duke's gallery-only identities are annotated
    # the oracle routes one expert per annotated group, 'none' routes nothing
    gates = trace.data.gates
    oracle, none = trace.condition_index("oracle"), trace.condition_index("none")
    np.testing.assert_allclose(gates[oracle, :, 0, :].sum(axis=1), (trace.data.query_states >= 0).sum(axis=1))
    assert not gates[none].any()


def test_the_report_ranks_the_ten_groups_and_the_duke_families(duke_demo):
    document = json.loads((duke_demo / "report.json").read_text(encoding="utf-8"))
    results = analysis.Results.from_dict(document["analysis"])
    ranking = results.table("ranking_groups")
    assert sorted(set(ranking.group)) == sorted(GROUPS)
    families = results.table("ranking_families")
    fine = set(families.loc[families.level == "fine", "family"])
    assert fine == set(SCHEMA.families)  # intrinsic is gender alone: no age, no hair
    html = (duke_demo / "report.html").read_text(encoding="utf-8")
    for group in GROUPS:
        assert f">{group}<" in html  # every group is named in the tables and figures
    for market_only in ("hair", "age", "clothes"):
        assert f">{market_only}<" not in html
