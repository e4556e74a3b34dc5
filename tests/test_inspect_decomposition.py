"""`mosaic inspect` prints the decomposition per group and the code share, or why they are unavailable."""

from __future__ import annotations

import json

import pytest

import mosaic.traceio
from mosaic.cli import main

NEW_KINDS = ("fixed", "relabel", "code")


@pytest.fixture(autouse=True)
def trace_kinds(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the tables are checked as text: no wrapping
    known = tuple(mosaic.traceio.CONDITION_KINDS)
    if not set(NEW_KINDS) <= set(known):
        monkeypatch.setattr(mosaic.traceio, "CONDITION_KINDS", known + tuple(k for k in NEW_KINDS if k not in known))


def test_inspect_prints_the_decomposition_from_stored_metrics(tmp_path, capsys):
    from analysis.simulate_decomposition import simulate_decomposition

    trace = simulate_decomposition(tmp_path / "t.h5", groups=2, n_ids=40, seed=3,
                                   planted={"g00": {"information": -0.1, "capacity": -0.05, "misrouting": -0.2}})
    assert main(["inspect", str(trace.path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["decomposition"]
    mAP = trace.conditions.set_index("condition")["mAP"]
    rank1 = trace.conditions.set_index("condition")["rank1"]
    g00 = next(r for r in summary["groups"] if r["group"] == "g00")
    assert g00["information_mAP"] == pytest.approx(mAP["fixed:g00"] - mAP["oracle"])
    assert g00["capacity_mAP"] == pytest.approx(mAP["drop:g00"] - mAP["fixed:g00"])
    assert g00["misrouting_rank1"] == pytest.approx(rank1["counterfactual:g00"] - rank1["oracle"])
    assert g00["semantics_mAP"] == pytest.approx(mAP["relabel:g00"] - mAP["oracle"])
    assert summary["code_share"]["mAP"] == pytest.approx((mAP["code"] - mAP["none"]) / (mAP["oracle"] - mAP["none"]))
    assert summary["unavailable"] == {}

    assert main(["inspect", str(trace.path)]) == 0
    out = capsys.readouterr().out
    assert "decomposition per group" in out and "fixed − oracle" in out and "code share" in out
    assert f"{100 * (mAP['fixed:g00'] - mAP['oracle']):.1f} /" in out


def test_inspect_says_what_a_1_0_trace_cannot_decompose(tmp_path, capsys):
    from analysis import simulate

    path = tmp_path / "old.h5"
    simulate(path, n_ids=10, groups=2, kinds=("oracle", "none", "drop", "counterfactual"), seed=1)
    assert main(["inspect", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["decomposition"]
    assert set(summary["unavailable"]) == {"information", "capacity", "semantics", "code_share"}
    assert all("'fixed:<group>'" in summary["unavailable"][q] for q in ("information", "capacity"))
    assert [set(r) for r in summary["groups"]] == [{"group", "misrouting_mAP", "misrouting_rank1"}] * 2
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "unavailable: semantics: the trace has no 'relabel:<group>' condition" in out.replace("\n", " ")
