"""The whole pipeline on a tiny world: mosaic demo's stages, their outputs and their reuse."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

import analysis
from mosaic.app.cli import main
from mosaic.configs import shipped_config
from mosaic.core.schema import load_schema

GROUPS = load_schema("market1501").group_names


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One demo on 16 identities and a one-epoch training config; returns (out, config, stderr)."""
    folder = tmp_path_factory.mktemp("demo")
    config = yaml.safe_load(shipped_config("synthetic_micro").path.read_text())
    config["optim"]["epochs"] = 1
    config["optim"]["warmup_epochs"] = 0
    config["eval"]["every"] = 1
    config["sampler"]["p"] = 4  # the world has 8 train identities
    config["run"]["checkpoint_every"] = 1
    config_path = folder / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = folder / "out"
    args = ["demo", "--out", str(out), "--config", str(config_path), "--ids", "16", "--images-per-id", "8", "--no-progress"]
    assert main(args) == 0
    return out, args


def test_the_trace_holds_every_default_condition_and_matches_training_evaluation(demo_run):
    out, _ = demo_run
    trace = analysis.read_trace(out / "trace.h5")
    names = set(trace.conditions.condition)
    assert {"oracle", "none", "learned"} <= names
    for kind in ("drop", "only", "counterfactual"):
        assert {f"{kind}:{g}" for g in GROUPS} <= names
    assert sum(n.startswith("subset:") for n in names) >= 1
    # the tracer scores the checkpoint exactly as training's last evaluation did
    evals = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    last = {e["router"]: e for e in evals if e["kind"] == "eval"}
    conditions = trace.conditions.set_index("condition")
    for router in ("oracle", "none", "learned"):
        assert conditions.loc[router, "mAP"] == pytest.approx(last[router]["mAP"], abs=1e-6)
    # the oracle routes one expert per annotated group; 'none' routes nothing
    gates = trace.data.gates
    oracle, none = trace.condition_index("oracle"), trace.condition_index("none")
    annotated = (trace.data.query_states >= 0).sum(axis=1)
    np.testing.assert_allclose(gates[oracle, :, 0, :].sum(axis=1), annotated)
    assert not gates[none].any()


def test_the_report_shows_the_analysis_ranking_and_is_self_contained(demo_run):
    out, _ = demo_run
    html = (out / "report.html").read_text(encoding="utf-8")
    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    ranking = analysis.Results.from_dict(document["analysis"]).table("ranking_groups")
    assert sorted(ranking.group) == sorted(GROUPS)
    # the only URLs are the SVG namespace, which names a vocabulary and is never fetched
    assert set(re.findall(r"https?://[^\"' )>]*", html)) <= {"http://www.w3.org/2000/svg"}
    # the summary table's first row is the analysis' most relied-on group, in the HTML and the JSON
    first = ranking.sort_values(["consensus_rank", "group"], kind="stable").group.iloc[0]
    assert document["tables"]["summary-groups"]["rows"][0]["group"] == first
    table = html[html.index('<table id="summary-groups"') :]
    first_row = table[table.index("<tbody><tr>") : table.index("</tr>", table.index("<tbody><tr>"))]
    assert re.findall(r"<td[^>]*>([^<]*)</td>", first_row)[1] == first  # columns: rank, group, ...
    assert document["metadata"]["trace"]["sha256"] == analysis.read_trace(out / "trace.h5").sha256


def test_a_rerun_reuses_finished_stages_and_redoes_what_changed(demo_run, capsys):
    out, args = demo_run
    before = {p: p.stat().st_mtime_ns for p in (out / "trace.h5", out / "report.html", out / "run" / "checkpoints" / "last.pt")}
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("up to date") == 5  # world, train, trace, report, audit
    assert {p: p.stat().st_mtime_ns for p in before} == before
    # damage the trace: its content no longer matches the ledger, so it and the report are redone
    with open(out / "trace.h5", "ab") as handle:
        handle.write(b"\0")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "[world] up to date" in err and "[train] up to date" in err
    assert "[trace] running" in err and "[report] running" in err
    analysis.read_trace(out / "trace.h5")  # a valid trace again


def test_the_demo_audits_its_network_exported_with_every_expert_off(demo_run):
    """The embedding audit end to end on a real trained network: the demo's model, exported with every
    expert off and audited as an external model's features (docs/audit.md)."""
    demo_out, _ = demo_run
    audit = demo_out / "audit"
    features = np.load(audit / "features_none.npz")
    assert str(features["model"]) == "demo_none"
    traced = analysis.read_trace(audit / "trace.h5")
    assert traced.data.condition_name.tolist() == ["embedding:demo_none"]
    # the exported network is the checkpoint's `none` condition: the same retrieval as in the demo's trace
    full = analysis.read_trace(demo_out / "trace.h5")
    none = full.condition_index("none")
    assert traced.data.mAP[0] == pytest.approx(full.data.mAP[none], abs=1e-5)
    np.testing.assert_array_equal(traced.data.first_match_rank[0], full.data.first_match_rank[none])
    document = json.loads((audit / "report.json").read_text(encoding="utf-8"))
    tables = document["analysis"]["tables"]
    assert {"attribute_confusion", "distance_sharing", "query_glm"} <= set(tables)
    html = (audit / "report.html").read_text(encoding="utf-8")
    assert "embedding:demo_none" in html and "than chance" in html
