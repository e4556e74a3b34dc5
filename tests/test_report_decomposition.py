"""The decomposition in the report: same numbers in HTML, Markdown and JSON; unavailable parts named."""

from __future__ import annotations

import json

import pytest

import reports
from reports.build import ReportOptions, build_report
from reports.numbers import interval_text, value_text
from tests.test_report import parse_tables

PLANTED = {"g00": {"information": -0.1, "capacity": -0.04, "misrouting": -0.2, "semantics": -0.05},
           "g01": {"semantics": 0.03}}


def _render(trace):
    from analysis import analyze

    results = analyze(trace, methods=["paired", "decomposition"], n_bootstrap=200, n_permutations=200, seed=1)
    document = build_report(results, trace, ReportOptions(images=False, created="2026-01-01T00:00:00+00:00"))
    return results, {name: fmt.render(document) for name, fmt in reports.FORMATS.items()}


def test_summary_shows_the_five_quantities_identically_in_every_format():
    from analysis.simulation.decomposition import simulate_decomposition

    trace = simulate_decomposition(groups=3, planted=PLANTED, n_ids=80, seed=2)
    results, texts = _render(trace)
    data = json.loads(texts["json"])
    summary = next(s for s in data["sections"] if s["id"] == "summary")
    assert {"summary-decomposition", "summary-code-share"} <= set(summary["tables"])
    section = next(s for s in data["sections"] if s["id"] == "method-decomposition")
    assert section["tables"] == ["table-decomposition", "table-decomposition-code"]
    assert section["figures"] == ["fig-decomposition"] and 'id="fig-decomposition"' in texts["html"]

    html_tables = parse_tables(texts["html"])
    checked = 0
    for table_id in ("summary-decomposition", "summary-code-share", "table-decomposition"):
        json_table = data["tables"][table_id]
        keys = [c["key"] for c in json_table["columns"]]
        assert html_tables[table_id]["head"] == [c["label"] for c in json_table["columns"]]
        for html_row, json_row in zip(html_tables[table_id]["rows"], json_table["rows"]):
            assert html_row == ([json_row["collapsed"]] if "collapsed" in json_row else
                                [value_text(json_row[k]) for k in keys])
            checked += len(keys)
    assert checked > 100
    # Markdown: every summary row, cell for cell
    for table_id in ("summary-decomposition", "summary-code-share"):
        json_table = data["tables"][table_id]
        for row in json_table["rows"]:
            expected = "| " + " | ".join(value_text(row[c["key"]]) for c in json_table["columns"]) + " |"
            assert expected in texts["md"].splitlines()

    # the shown numbers are the analysis' numbers (pp), rounded as their intervals allow
    full = results.tables["decomposition"]
    shown = {r["group"]: r for r in data["tables"]["summary-decomposition"]["rows"]}
    for row in full[full["metric"] == "mAP"].itertuples():
        assert shown[row.group][row.quantity] == interval_text(row.estimate, row.ci_low, row.ci_high)
    mAP = full[full["metric"] == "mAP"].set_index(["group", "quantity"])["estimate"]
    assert mAP[("g00", "misrouting")] < mAP[("g00", "information")] < 0
    assert mAP[("g00", "misrouting")] == pytest.approx(100 * PLANTED["g00"]["misrouting"], abs=5)  # in pp
    code = data["tables"]["summary-code-share"]["rows"]
    share = results.tables["decomposition_code"].set_index("metric").loc["mAP"]
    assert [r["metric"] for r in code] == ["mAP", "rank1"]
    assert code[0]["share_pct"] == interval_text(100 * share["estimate"], 100 * share["ci_low"], 100 * share["ci_high"])
    assert "Unavailable on this trace" not in texts["md"]


def test_report_on_a_schema_1_0_trace_names_the_unavailable_quantities():
    from analysis import simulate
    from analysis.trace import Trace

    data = simulate(n_ids=20, groups=3, effects={"g00": 1.0}, kinds=("oracle", "none", "drop", "counterfactual"),
                    seed=4).data
    trace = Trace(data, schema_version="1.0.0")
    _, texts = _render(trace)
    doc = json.loads(texts["json"])
    summary = next(s for s in doc["sections"] if s["id"] == "summary")
    assert "summary-decomposition" in summary["tables"]          # misrouting is measurable
    assert "summary-code-share" not in summary["tables"]
    for fmt in ("md", "html"):
        text = texts[fmt]
        assert "Unavailable on this trace" in text
        for quantity in ("information (fixed − oracle)", "capacity (drop − fixed)", "semantics (relabel − oracle)",
                         "code share"):
            assert quantity in text
        assert "schema 1.0.0 predates the fixed, relabel and code conditions" in text
    rows = {r["group"]: r for r in doc["tables"]["summary-decomposition"]["rows"]}
    assert rows["g00"]["information"] is None and rows["g00"]["misrouting"] is not None


def test_demo_prints_the_five_quantities_with_intervals(tmp_path, capsys):
    from analysis.simulation.decomposition import simulate_decomposition
    from mosaic.app.commands.demo import _print_headline

    trace = simulate_decomposition(groups=3, planted=PLANTED, n_ids=60, seed=6)
    results, texts = _render(trace)
    (tmp_path / "report.json").write_text(texts["json"], encoding="utf-8")
    _print_headline(tmp_path / "report.json")
    out = capsys.readouterr().out
    assert "95% identity-cluster interval" in out
    row = results.tables["decomposition"]
    row = row[(row["group"] == "g00") & (row["quantity"] == "misrouting") & (row["metric"] == "mAP")].iloc[0]
    line = next(l for l in out.splitlines() if l.strip().startswith("g00") and "[" in l)
    assert f"{row.estimate:+6.2f} [{row.ci_low:+6.2f}, {row.ci_high:+6.2f}]" in line  # the results hold pp
    assert line.count("[") == 4                                  # information, capacity, misrouting, semantics
    assert "code share of the oracle's gain over none (mAP)" in out


def test_report_json_doc_lists_every_decomposition_column():
    from pathlib import Path

    from analysis.tables.registry import table_spec
    from reports.sections.decomposition import CODE_COLUMNS, QUANTITY_LABELS, SUMMARY_COLUMNS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "report-json.md").read_text(encoding="utf-8")
    keys = {c.name for t in ("decomposition", "decomposition_code") for c in table_spec(t).columns}
    keys |= {c.key for c in CODE_COLUMNS}
    for column in SUMMARY_COLUMNS:
        generic = column.key
        for quantity in QUANTITY_LABELS:
            generic = generic.replace(f"_{quantity}", "_q") if generic != quantity else generic
        keys.add(generic)
    for key in sorted(keys):
        assert f"`{key}`" in doc, key
    for table_id in ("summary-decomposition", "summary-code-share", "table-decomposition", "table-decomposition-code",
                     "method-decomposition"):
        assert f"`{table_id}`" in doc, table_id
