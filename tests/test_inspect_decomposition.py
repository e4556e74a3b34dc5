"""`mosaic inspect` prints the decomposition per group and the code share, or why they are unavailable."""

from __future__ import annotations

import json

import h5py
import pytest

from mosaic.app.cli import main


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the printed tables are checked as text: no wrapping


def test_inspect_prints_the_decomposition_from_stored_metrics(tmp_path, capsys):
    from analysis.simulation.decomposition import simulate_decomposition

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
    with h5py.File(path, "r+") as h5:  # as a mosaic of schema 1.0 wrote it
        h5.attrs["schema_version"] = h5.attrs["encoding_version"] = "1.0.0"
    assert main(["inspect", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["decomposition"]
    assert set(summary["unavailable"]) == {"information", "capacity", "semantics", "code_share"}
    assert all("'fixed:<group>'" in summary["unavailable"][q] for q in ("information", "capacity"))
    assert all("schema 1.0.0 predates" in reason for reason in summary["unavailable"].values())
    assert [set(r) for r in summary["groups"]] == [{"group", "misrouting_mAP", "misrouting_rank1"}] * 2
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "unavailable: semantics: the trace has no 'relabel:<group>' condition" in out.replace("\n", " ")


def test_a_traced_model_is_decomposed_end_to_end(tmp_path, capsys):
    """trace (every kind) -> inspect -> analysis: every quantity measured, the same numbers in both."""
    pytest.importorskip("torch")
    from tests.test_trace_cli import GROUPS, one_torch_thread, toy_run

    from analysis import read_trace
    from analysis.methods.decomposition import decomposition_tables
    from analysis.settings import AnalysisSettings

    with one_torch_thread():
        ckpt = toy_run(tmp_path, seed=0, learned=False)[1]
        out = tmp_path / "trace.h5"
        assert main(["trace", "--ckpt", str(ckpt), "--out", str(out), "-c", "oracle,none,drop:*,fixed:*,counterfactual:*,"
                     "relabel:*,code", "--top-k", "3", "--max-rank", "5", "--device", "cpu", "--seed", "3", "-q"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["decomposition"]
    assert printed["unavailable"] == {} and len(printed["groups"]) == len(GROUPS)
    tables = decomposition_tables(read_trace(out), AnalysisSettings(n_bootstrap=200))
    assert (tables["decomposition"]["status"] == "ok").all() and (tables["decomposition_code"]["status"] == "ok").all()
    for row in tables["decomposition"].itertuples():
        shown = next(g for g in printed["groups"] if g["group"] == row.group)[f"{row.quantity}_{row.metric}"]
        assert shown == pytest.approx(row.estimate, abs=1e-6)
