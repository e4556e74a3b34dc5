"""analysis.study and `mosaic study`: planted label × group interactions, seeds as replicates, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.simulation.study import simulate_study
from analysis.simulation.trace import simulate
from analysis.stats.concordance import kendalls_w
from analysis.stats.metaanalysis import between_seed_variance, combination
from analysis.studies.study import study
from mosaic.app.cli import main

EQUAL = dict(gender=0.6, upcolour=0.8, hat=0.2)
KINDS = ("oracle", "drop", "counterfactual")


def _contrasts(results, quantity="drop"):
    c = results.table("contrasts")
    return c[(c.level == "group") & (c.quantity == quantity)].set_index("item")


# Seeds on one test set share its identity error, which cancels in the seeds' scatter; with a fresh
# test set per seed the scatter carries it too, so the contrast needs more seeds for the same power.
@pytest.mark.parametrize("shared, n_seeds, planted", [(True, 3, 1.2), (False, 4, 1.5)])
def test_planted_interaction_is_recovered_with_the_right_sign(shared, n_seeds, planted):
    traces = simulate_study({"A": {**EQUAL, "downcolour": planted}, "B": {**EQUAL, "downcolour": 0.0}}, n_seeds=n_seeds,
                            seed_sd=0.1, effect_sd=0.3, n_ids=120, kinds=KINDS, shared_test_set=shared, seed=3)
    results = study(traces, n_bootstrap=400)
    for quantity in ("drop", "misrouting"):
        row = _contrasts(results, quantity).loc["downcolour"]
        assert row["reject_holm"], (quantity, row.to_dict())
        assert row["estimate"] < 0 and row["ci_high"] < 0  # A loses more: its ΔmAP is more negative
        assert row["unit"] == "identity × seed" and row["seed_valid"]
    pooled = results.table("pooled").set_index(["label", "level", "item", "quantity"])
    assert pooled.loc[("A", "group", "downcolour", "drop"), "estimate"] < pooled.loc[("B", "group", "downcolour", "drop"), "estimate"]
    # the decomposition quantities the traces lack are named, not dropped
    assert set(pooled.xs("information", level="quantity")["status"]) == {"unavailable"}


def test_planted_equal_groups_are_not_flagged_beyond_the_nominal_rate():
    raw, tests, familywise = 0, 0, 0
    reps = 8
    for rep in range(reps):
        traces = simulate_study({"A": {**EQUAL, "downcolour": 1.0}, "B": {**EQUAL, "downcolour": 1.0}}, n_seeds=3,
                                seed_sd=0.1, effect_sd=0.3, n_ids=80, kinds=("oracle", "drop"), seed=100 + rep)
        c = _contrasts(study(traces, n_bootstrap=300, seed=rep))
        raw += int((c["p"] < 0.05).sum())
        tests += len(c)
        familywise += int(c["reject_holm"].any())
    # 96 null tests: a nominal 5 % gives about 5; pseudo-replication would give far more
    assert raw / tests <= 0.10
    assert familywise <= 2


def test_between_seed_variance_interval_covers_its_truth():
    """Q-profile coverage on run estimates with a shared identity error (the full check is the benchmark)."""
    rng = np.random.default_rng(0)
    tau, shared_sd, own_sd, k, reps = 0.02, 0.015, 0.006, 4, 300
    covered = 0
    cov = np.full((k, k), shared_sd ** 2) + np.eye(k) * own_sd ** 2
    for _ in range(reps):
        theta = -0.05 + rng.normal(0, tau, k) + rng.normal(0, shared_sd) + rng.normal(0, own_sd, k)
        t = between_seed_variance(theta, cov, 0.95)
        covered += t["tau2_low"] <= tau ** 2 <= t["tau2_high"]
    assert 0.92 <= covered / reps <= 0.98


def test_shared_identity_error_is_not_averaged_away():
    """Seeds on one test set: the pooled variance keeps the identity error the seeds share."""
    k, shared, own = 4, 0.02 ** 2, 0.001 ** 2
    cov = np.full((k, k), shared) + np.eye(k) * own
    theta = np.array([-0.05, -0.051, -0.049, -0.05])
    c = combination(theta, cov, np.zeros(k, int), {0: 1.0}, 150)
    assert c["var_identity"] == pytest.approx(shared, rel=1e-9)
    assert c["se"] >= np.sqrt(shared)


def test_rank_stability_and_kendall_w():
    assert kendalls_w(np.array([[1, 2, 3, 4], [1, 2, 3, 4]]))["w"] == pytest.approx(1.0)
    assert kendalls_w(np.array([[1, 2, 3, 4], [4, 3, 2, 1]]))["w"] == pytest.approx(0.0)
    assert np.isnan(kendalls_w(np.array([[1, 2, 3, 4]]))["w"])  # one seed: no concordance to measure
    traces = simulate_study({"A": {"downcolour": 2.0, "gender": 1.0, "hat": 0.5}}, n_seeds=3, n_ids=100,
                            kinds=("oracle", "drop"), seed=1)
    results = study(traces, n_bootstrap=200)
    rank = results.table("rank_stability").set_index("group")
    assert rank.loc["downcolour", "rank_low"] == rank.loc["downcolour", "rank_high"] == 1
    assert rank.loc["downcolour", "top3_share"] == 1.0
    assert results.table("concordance")["kendall_w"].iloc[0] > 0.5
    assert results.table("contrasts").empty  # one label: nothing to contrast


def _write(tmp_path, traces, prefix="run"):
    from mosaic.tracefile import write_trace

    paths = []
    for i, t in enumerate(traces):
        paths.append(str(write_trace(t.data, tmp_path / f"{prefix}{i}.h5")))
    return paths


def test_cli_writes_every_format_with_the_same_numbers(tmp_path):
    traces = simulate_study({"A": {**EQUAL, "downcolour": 1.2}, "B": EQUAL}, n_seeds=2, n_ids=60, kinds=KINDS, seed=2)
    paths = _write(tmp_path, traces)
    outputs = {}
    for fmt in ("html", "md", "json"):
        out = tmp_path / f"study.{fmt}"
        assert main(["study", *paths, "--out", str(out), "--bootstrap", "200"]) == 0
        outputs[fmt] = out.read_text(encoding="utf-8")
    document = json.loads(outputs["json"])
    row = next(r for r in document["tables"]["contrasts-group"]["rows"] if r["item"] == "downcolour" and r["quantity"] == "drop")
    for fmt in ("html", "md"):
        assert row["estimate"] in outputs[fmt]  # the cell's text, written once for every format
    assert "<svg" in outputs["html"] and "figure-rank-stability" in outputs["html"]
    assert "http://" not in outputs["html"].replace("http://www.w3.org/2000/svg", "")


def test_labels_from_globs(tmp_path):
    traces = simulate_study({"x": EQUAL}, n_seeds=4, n_ids=40, kinds=("oracle", "drop"), seed=4)
    for t in traces:
        t.data.provenance.pop("label")
    paths = _write(tmp_path, traces[:2], "market") + _write(tmp_path, traces[2:], "duke")
    results = study(paths, labels=["market=*market*", "duke=*duke*"], n_bootstrap=100)
    assert results.settings["labels"] == ["market", "duke"]
    assert list(results.table("pooled").groupby("label")["k"].max()) == [2, 2]


def _one_line_error(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err
    return err


def test_bad_input_is_one_line(tmp_path, capsys):
    a = simulate(tmp_path / "a.h5", n_ids=30, kinds=("oracle", "drop"), seed=1)
    b = simulate(tmp_path / "b.h5", n_ids=30, groups=3, kinds=("oracle", "drop"), seed=2)  # groups g00..g02
    out = tmp_path / "study.html"
    _one_line_error(capsys, ["study", str(a.path), "--out", str(out)], "at least two traces")
    _one_line_error(capsys, ["study", str(a.path), str(b.path), "--out", str(out)], "share no attribute group")
    _one_line_error(capsys, ["study", str(a.path), str(a.path), "--out", str(out)], "one run")
    twin = simulate_study({"x": EQUAL}, n_seeds=2, n_ids=30, kinds=("oracle", "drop"), seed=5)
    twin[1].data.provenance["checkpoint_sha256"] = twin[0].data.provenance["checkpoint_sha256"]
    paths = _write(tmp_path, twin, "twin")
    _one_line_error(capsys, ["study", *paths, "--out", str(out)], "one run", "checkpoint")
    _one_line_error(capsys, ["study", *paths, "--label", "nonsense", "--out", str(out)], "NAME=GLOB")
    assert not out.exists()


def test_labels_from_provenance_where_traces_differ():
    traces = simulate_study({"x": EQUAL}, n_seeds=4, n_ids=40, kinds=("oracle", "drop"), seed=6)
    for i, t in enumerate(traces):
        t.data.provenance.pop("label")
        t.data.dataset = {**t.data.dataset, "root": f"/data/runs/{'market' if i < 2 else 'duke'}/world"}
    results = study(traces, n_bootstrap=100)
    assert results.settings["labels"] == ["market/world", "duke/world"]


def test_conservative_degrees_of_freedom_are_the_seeds():
    cov = np.eye(3) * 1e-6 + 1e-5
    theta = np.array([-0.05, -0.04, -0.06])
    liberal = combination(theta, cov, np.zeros(3, int), {0: 1.0}, 150)
    conservative = combination(theta, cov, np.zeros(3, int), {0: 1.0}, 150, df_method="conservative")
    assert conservative["df"] == 2 and liberal["df"] > 2
    assert conservative["ci_high"] - conservative["ci_low"] > liberal["ci_high"] - liberal["ci_low"]
    with pytest.raises(ValueError, match="df_method"):
        combination(theta, cov, np.zeros(3, int), {0: 1.0}, 150, df_method="kenward")


def test_market_and_duke_are_compared_on_the_groups_they_share():
    market = simulate_study({"market": EQUAL}, n_seeds=2, n_ids=40, kinds=("oracle", "drop"), seed=7)
    duke = simulate_study({"duke": {"gender": 0.6, "upcolour": 0.8}}, n_seeds=2, n_ids=40, kinds=("oracle", "drop"),
                          groups="dukemtmc", seed=8)
    results = study(market + duke, n_bootstrap=100)
    groups = set(results.settings["groups"])
    assert {"gender", "upcolour", "downcolour", "hat"} <= groups
    assert not groups & {"age", "hair", "boots", "top"}
    notes = " ".join(results.notes)
    assert "groups only in market" in notes and "age" in notes and "boots" in notes
    assert "downcolour has different states" in notes


def test_runs_without_any_change_are_not_an_error():
    """A group that carries no information (misrouting exactly 0 for every query) pools to 0, τ² 0."""
    t = between_seed_variance(np.zeros(2), np.zeros((2, 2)))
    assert (t["tau2"], t["tau2_low"], t["tau2_high"]) == (0.0, 0.0, 0.0)
    c = combination(np.zeros(2), np.zeros((2, 2)), np.zeros(2, int), {0: 1.0}, 100)
    assert c["estimate"] == 0 and np.isnan(c["p"])
    t = between_seed_variance(np.array([0.0, 0.01]), np.zeros((2, 2)))
    assert t["tau2"] > 0 and np.isfinite(t["tau2_high"])


def test_decomposition_is_pooled_where_traced_and_adds_up():
    """Traces with fixed:g conditions get information and capacity; information + capacity = drop, per run."""
    traces = simulate_study({"A": {**EQUAL, "downcolour": 1.2}, "B": EQUAL}, n_seeds=2, n_ids=60, kinds=KINDS,
                            drop_cost=0.3, seed=9)
    for t in traces:  # the simulated counterfactual routing stands in for a traced fixed routing
        t.data.condition_name = np.array([n.replace("counterfactual:", "fixed:") for n in t.data.condition_name.tolist()])
    results = study(traces, n_bootstrap=200)
    runs = results.table("run_effects").set_index(["run", "level", "item", "quantity"])["estimate"]
    for run in range(4):
        for g in ("downcolour", "gender", "hat"):
            assert runs[(run, "group", g, "information")] + runs[(run, "group", g, "capacity")] == pytest.approx(
                runs[(run, "group", g, "drop")], abs=1e-12)
    pooled = results.table("pooled").set_index(["label", "level", "item", "quantity"])
    assert pooled.loc[("A", "group", "downcolour", "information"), "ci_high"] < 0
    assert pooled.loc[("A", "group", "downcolour", "misrouting"), "status"] == "unavailable"
    contrast = _contrasts(results, "information").loc["downcolour"]
    assert contrast["estimate"] < 0
