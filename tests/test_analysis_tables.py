"""Result tables as data: the specs, the check of every frame against them, the generated docs, and an
analysis method added from outside the package with its own table spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
import reports
from analysis.analyze import METHODS, Method, register_method
from analysis.stats.corrections import CORRECTIONS
from analysis.tables.docs import DOC_BEGIN, DOC_END, with_column_docs
from analysis.tables.registry import TABLES, ColumnSpec, TableContractError, TableSpec, validate_table
from reports.formats.columns import words

DOC = Path(__file__).resolve().parents[1] / "docs" / "report-json.md"


@pytest.fixture(scope="module")
def small_trace():
    return analysis.simulate(n_ids=16, groups=3, effects={"g00": 1.0}, kinds=("oracle", "none", "drop", "counterfactual"),
                             n_subsets=0, seed=4)


def test_docs_column_reference_is_generated_from_the_specs():
    text = DOC.read_text(encoding="utf-8")
    assert DOC_BEGIN in text and DOC_END in text
    assert with_column_docs(text) == text, "docs/report-json.md is stale: run python -m analysis.tables.docs docs/report-json.md"
    for name, spec in TABLES.items():
        assert f"### `{name}`" in text
        for column in spec.columns:
            assert f"| `{column.name}` | {column.dtype} |" in text, (name, column.name)


def test_every_test_table_names_its_test_unit_corrections_and_decisions():
    for spec in TABLES.values():
        names = {c.name for c in spec.columns}
        if "p_holm" in names:
            assert spec.resamples in ("identity", "identity × seed"), spec.name
            assert set(spec.corrections) == {f"p_{c}" for c in CORRECTIONS}, spec.name
            assert set(spec.decisions) == {f"reject_{c}" for c in CORRECTIONS}, spec.name
        if spec.test:
            assert "p" in names, spec.name
        assert set(spec.shown_first) - names <= {"test"}, spec.name
        assert set(spec.family_keys) <= names, spec.name


def test_analyze_output_matches_the_specs(small_trace):
    results = analysis.analyze(small_trace, seed=0, n_bootstrap=100, n_permutations=100,
                               methods=("paired", "decomposition"))
    assert {"paired_identity", "paired_mcnemar", "decomposition", "ranking_groups", "conditions"} <= set(results.tables)
    for name, frame in results.tables.items():
        validate_table(name, frame)  # analyze() checked them already; this states it
    assert TABLES["paired_identity"].hidden == {"condition", "baseline"}


@pytest.fixture(scope="module")
def full_results():
    trace = analysis.simulate(n_ids=24, groups=4, effects={"g00": 1.0, "g01": 0.5}, n_subsets=12, seed=5)
    options = {"configuration": {"rf_n_estimators": 20, "xgb_n_estimators": 20, "permutation_repeats": 2,
                                 "surrogate_resamples": 10},
               "explanatory": {"n_estimators": 20, "n_folds": 2}}
    return analysis.analyze(trace, seed=0, n_bootstrap=100, n_permutations=100, options=options)


def test_the_family_keys_of_each_spec_are_the_families_its_corrections_used(full_results):
    """Recompute every correction within the families the spec names: the method's columns must agree."""
    checked = 0
    for name, frame in full_results.tables.items():
        spec = TABLES[name]
        if not spec.corrections:
            continue
        p = frame["p"].to_numpy(dtype=float)
        tested = frame["status"].astype(str).eq("ok").to_numpy() & np.isfinite(p)
        for column, value in spec.outside_families:
            tested &= frame[column].astype(str).ne(value).to_numpy()
        p = np.where(tested, p, np.nan)
        keys = list(spec.family_keys)
        families = frame.groupby(keys, sort=False).indices.values() if keys else [np.arange(len(frame))]
        for correction, adjust in CORRECTIONS.items():
            expected = np.full(len(frame), np.nan)
            for index in families:
                expected[index] = adjust(p[index])
            np.testing.assert_allclose(frame[f"p_{correction}"].to_numpy(dtype=float), expected, equal_nan=True,
                                       err_msg=f"{name}: p_{correction} not adjusted within {keys or 'the table'}")
        checked += 1
    assert checked >= 7  # three paired tables, four configuration tables, the query GLM


def _frame():
    return pd.DataFrame({"group": ["a", "b"], "delta_map": [0.1, -0.2], "p": [0.5, 0.01],
                         "status": ["ok", "ok"], "reason": ["", ""]})


def test_a_frame_that_breaks_its_spec_is_an_internal_error_naming_table_method_and_columns():
    spec = TableSpec("paired_identity_copy", "paired", "test only", TABLES["paired_identity"].columns)
    with pytest.raises(TableContractError, match=r"'nope' .*method 'mine'.*has no TableSpec"):
        validate_table("nope", _frame(), method="mine")
    TABLES[spec.name] = spec
    try:
        frame = validate_table("paired_identity", pd.DataFrame(
            {c.name: pd.Series([], dtype=object) for c in spec.columns}))
        assert len(frame) == 0
        extra = _frame().assign(surprise=1)
        with pytest.raises(TableContractError) as err:
            validate_table(spec.name, extra, method="paired")
        message = str(err.value)
        assert "'surprise'" in message and "required columns missing" in message and "'n_ids'" in message
    finally:
        del TABLES[spec.name]


def test_a_column_of_the_wrong_dtype_is_named():
    spec = TableSpec("typed", "mine", "test only", (ColumnSpec("n", "int", "count"), ColumnSpec("x", "float", "value")))
    TABLES[spec.name] = spec
    try:
        validate_table("typed", pd.DataFrame({"n": [1, 2], "x": [0.5, 1.0]}))
        validate_table("typed", pd.DataFrame({"n": [1.0, np.nan], "x": [0.5, 1.0]}))  # a count with a gap
        with pytest.raises(TableContractError, match=r"wrong dtypes: x is \w+, spec says float"):
            validate_table("typed", pd.DataFrame({"n": [1, 2], "x": ["a", "b"]}))
    finally:
        del TABLES[spec.name]


def test_pattern_columns_cover_a_family_of_names():
    column = ColumnSpec("rank:<method>", "float", "rank by one method")
    assert column.matches("rank:identity:drop") and not column.matches("rank") and not column.matches("score:x")


# ---------------------------------------------------------------------- a method from outside mosaic
MEAN_DROP = TableSpec(
    "user_mean_drop", "user_mean_drop",
    "Mean AP under each drop condition minus under oracle, per group (a user's method).",
    (
        ColumnSpec("group", "str", "attribute group", role="key"),
        ColumnSpec("delta_ap", "float", "mean AP under drop:<group> minus under oracle", label="mean ΔAP", unit="AP",
                   role="estimate"),
        ColumnSpec("n_queries", "int", "valid queries", label="queries", role="count"),
        ColumnSpec("status", "str", "ok or not estimable", role="status"),
        ColumnSpec("reason", "str", "why not ok", role="status"),
    ),
    shown_first=("group", "delta_ap"),
    caption="Mean ΔAP per dropped group (user method)",
)


def mean_drop(trace, settings):
    """A user's analysis: plain pandas on the trace's per-query AP."""
    data = trace.data
    names = list(data.condition_name)
    base = data.ap[names.index(settings.baseline)][data.valid]
    rows = []
    for group in trace.group_names:
        condition = f"drop:{group}"
        if condition not in names:
            continue
        delta = float(np.mean(data.ap[names.index(condition)][data.valid] - base))
        rows.append({"group": group, "delta_ap": delta, "n_queries": int(data.valid.sum()), "status": "ok",
                     "reason": ""})
    return {"user_mean_drop": pd.DataFrame(rows)}


@pytest.fixture
def user_method(monkeypatch):
    method = Method("user_mean_drop", mean_drop, ("user_mean_drop",), "mean ΔAP per dropped group")
    # monkeypatch notes that neither registry held these entries and removes them afterwards, after
    # undoing any later replacement by a test
    monkeypatch.setitem(METHODS, method.name, method)
    monkeypatch.setitem(TABLES, MEAN_DROP.name, MEAN_DROP)
    register_method(method, MEAN_DROP)
    yield


def test_a_user_registered_method_runs_is_checked_and_is_reported(user_method, small_trace):
    results = analysis.analyze(small_trace, seed=0, n_bootstrap=100, n_permutations=100,
                               methods=("paired", "user_mean_drop"))
    table = results.table("user_mean_drop")
    assert list(table["group"]) == list(small_trace.group_names)
    # the planted effect on g00 makes its drop cost AP
    assert table.set_index("group").loc["g00", "delta_ap"] < table.set_index("group").loc["g02", "delta_ap"]

    doc = json.loads(reports.render(results, small_trace, "json"))
    section = next(s for s in doc["sections"] if s["id"] == "method-user-mean-drop")
    assert section["tables"] == ["table-user-mean-drop"] and section["title"] == "Method: user_mean_drop"
    shown = doc["tables"]["table-user-mean-drop"]
    assert shown["caption"] == MEAN_DROP.caption
    assert [c["label"] for c in shown["columns"]][:3] == ["group", "mean ΔAP", "queries"]
    assert doc["analysis"]["tables"]["user_mean_drop"]["columns"] == [c.name for c in MEAN_DROP.columns]
    markdown = reports.render(results, small_trace, "md")
    assert "Mean ΔAP per dropped group" in markdown and "Mean ΔAP per dropped group." in markdown


def test_a_user_method_whose_frame_breaks_its_spec_fails_loudly(user_method, small_trace, monkeypatch):
    def sloppy(trace, settings):
        return {"user_mean_drop": mean_drop(trace, settings)["user_mean_drop"].rename(columns={"delta_ap": "delta"})}

    monkeypatch.setitem(METHODS, "user_mean_drop", Method("user_mean_drop", sloppy, ("user_mean_drop",), "sloppy"))
    with pytest.raises(TableContractError, match=r"user_mean_drop.*\['delta'\].*\['delta_ap'\]"):
        analysis.analyze(small_trace, seed=0, n_bootstrap=100, n_permutations=100, methods=("user_mean_drop",))


def test_the_report_shows_each_method_table_as_its_spec_describes(full_results):
    trace = analysis.simulate(n_ids=24, groups=4, effects={"g00": 1.0, "g01": 0.5}, n_subsets=12, seed=5)
    doc = json.loads(reports.render(full_results, trace, "json", reports.ReportOptions(images=False)))
    shown = 0
    for name, spec in TABLES.items():
        table = doc["tables"].get(f"table-{name.replace('_', '-')}")
        if table is None:
            continue
        keys = [c["key"] for c in table["columns"]]
        assert table["caption"] == spec.caption, name
        assert keys[:len([c for c in spec.shown_first if c in keys])] == [c for c in spec.shown_first if c in keys]
        assert not set(keys) & spec.hidden, name
        if spec.test:
            assert f"Test: {spec.test}." in table["note"], name  # the test behind the p-values, named once
        for column in table["columns"]:
            c = spec.column(column["key"])
            # the spec's label (or the name in words), then its unit; an estimate's cell also holds its interval
            assert column["label"].startswith(c.label or ("rank:" if c.is_pattern else words(c.name))), (name, column)
            if c.unit and c.unit != "fraction":
                assert c.unit in column["label"], (name, column)
            assert "_" not in column["label"], (name, column)
        shown += 1
    assert shown >= 12
