"""The report as a reader meets it: findings first, numbers in units, tables that fit 1280 px, details on
demand, no field names for headers, a population-null trace reported as one; and Results in a notebook.

The Chromium checks run at 1280×800 with Debian's chromium (``make browser``) and skip without it.
"""

from __future__ import annotations

import html
import json
import re

import pytest

import reports
from reports.build import ReportOptions, build_report
from reports.numbers import interval_text, parse_number
from tests.test_report import browser, rendered, results, sim_trace  # noqa: F401 (fixtures)

FIELD_NAME = re.compile(r"^[A-Za-z0-9]+([_:][A-Za-z0-9]+)+$")
WIDTH, HEIGHT = 1280, 800


@pytest.fixture(scope="module")
def null_world():
    """Every planted effect zero, dropping an expert free: no group differs from zero."""
    from analysis import analyze, simulate

    trace = simulate(n_ids=30, groups=4, effects={}, drop_cost=0.0, n_subsets=0,
                     kinds=("oracle", "none", "drop", "counterfactual"), seed=5)
    result = analyze(trace, methods=["paired"], n_bootstrap=100, n_permutations=500, seed=0)
    document = build_report(result, trace, ReportOptions(images=False, created="2026-01-01T00:00:00+00:00"))
    return result, {name: fmt.render(document) for name, fmt in reports.FORMATS.items()}


def _plain(text: str) -> str:
    return text.replace("**", "")


# ------------------------------------------------------------------------------- findings
def test_findings_open_the_report_and_quote_the_analysis_numbers(rendered):
    data = json.loads(rendered["json"])
    assert data["sections"][0]["id"] == "findings" and data["sections"][0]["figures"] == ["fig-ranking"]
    findings = {f["key"]: f for f in data["findings"]}
    assert 4 <= len(findings) <= 6 and list(findings)[0] == "reliance"
    tables = data["analysis"]["tables"]
    rows = [dict(zip(tables["paired_identity"]["columns"], r)) for r in tables["paired_identity"]["data"]]
    paired = {(r["group"], r["comparison"]): r for r in rows}
    reliance = findings["reliance"]

    def quotes(text: str, estimate: float, low: float, high: float, unit: str = "") -> bool:
        """``text`` holds the interval of these numbers, each within half a unit of its last shown decimal
        (the JSON keeps 12 digits, so a value at a rounding edge may round the other way)."""
        shown = interval_text(estimate, low, high, unit=unit)
        decimals = len(shown.split(" ")[0].partition(".")[2])
        pattern = re.escape(shown)
        for number in re.findall(r"[\u2212-]?\d+(?:\.\d+)?", shown):
            pattern = pattern.replace(re.escape(number), r"([\u2212-]?\d+(?:\.\d+)?)", 1)
        found = re.search(pattern, text)
        return found is not None and all(
            abs(parse_number(a) - parse_number(b)) <= 10 ** -decimals * 1.0001
            for a, b in zip(found.groups(), re.findall(r"[\u2212-]?\d+(?:\.\d+)?", shown)))

    assert reliance["numbers"]["top"], reliance
    for group, quoted in reliance["numbers"]["top"].items():
        row = paired[(group, "drop")]
        assert quoted["delta_map"] == row["delta_map"]  # the numbers behind the sentence are the JSON's
        assert quotes(reliance["text"], row["delta_map"], row["ci_low"], row["ci_high"], unit="pp")
        assert f"**{group}**" in reliance["text"]
    agreement = tables["agreement"]
    w = dict(zip(agreement["columns"], next(r for r in agreement["data"] if r[agreement["columns"].index("statistic")] == "kendall_w")))
    assert quotes(findings["agreement"]["text"].partition("Kendall's W = ")[2], w["value"], w["ci_low"], w["ci_high"])
    # every sentence links to a table or section that exists, in every format
    ids = set(data["tables"]) | {s["id"] for s in data["sections"]}
    for finding in findings.values():
        assert finding["table"] in ids
        assert f'href="#{finding["table"]}"' in rendered["html"] and f"(#{finding['table']})" in rendered["md"]
        assert _plain(finding["text"]) in html.unescape(re.sub(r"<[^>]+>", "", rendered["html"]))


def test_a_population_null_trace_says_so_first_and_never_calls_the_order_a_ranking(null_world):
    result, texts = null_world
    data = json.loads(texts["json"])
    first = data["findings"][0]
    assert first["key"] == "reliance" and first["numbers"]["distinguishable"] == 0
    assert first["text"].startswith("**No group's effect is distinguishable from zero**")
    assert "not a ranking" in first["text"]
    assert all("relies most" not in f["text"] and "on the ranking" not in f["text"] for f in data["findings"])
    assert "not a ranking" in data["tables"]["summary-groups"]["caption"]
    summary = result.summary()
    assert "order" in summary.columns and "rank" not in summary.columns and not summary["differs from zero"].any()
    assert summary.attrs["headline"].startswith("No group's effect is distinguishable from zero")
    assert "No group's effect is distinguishable from zero" in repr(result) and "Most relied on" not in repr(result)
    assert result.headline() in result._repr_html_().replace("&#x27;", "'")


def test_results_summary_and_figures_in_a_notebook(results, sim_trace):
    summary = results.summary()
    ranking = results.tables["ranking_groups"].sort_values(["consensus_rank", "group"], kind="stable")
    assert summary["group"].tolist() == ranking["group"].tolist()
    paired = results.tables["paired_identity"].set_index(["group", "comparison"])
    first = summary.iloc[0]
    assert first["ΔmAP drop (pp)"] == paired.loc[(first["group"], "drop"), "delta_map"]
    assert summary.attrs["units"]["ΔmAP drop (pp)"] == "pp" and "p Holm" in summary.attrs["meanings"]
    for text in (repr(results), results._repr_html_()):
        assert len(text) < 5000 and first["group"] in text
    figure = results.plot_ranking()
    assert figure._repr_svg_().startswith("<svg") and "consensus rank" in figure._repr_svg_()
    assert "<figcaption>" in figure._repr_html_()
    assert results.plot("paired")._repr_svg_().startswith("<svg")
    # the notebook figure is the report's figure
    assert figure.svg in reports.render(results, sim_trace, "html", ReportOptions(images=False))
    units = results.columns("paired_identity").set_index("column")["unit"]
    assert units["delta_map"] == "pp" and results.table("paired_identity").attrs["units"]["delta_map"] == "pp"


@pytest.mark.parametrize("name, metric", [("paired", "mAP"), ("paired", "rank5"), ("decomposition", "map")])
def test_a_figure_of_an_unknown_metric_is_refused_in_one_line(results, name, metric):
    from mosaic.core.errors import MosaicError

    with pytest.raises(MosaicError, match=f"metric must be one of .*, got '{metric}'") as caught:
        results.plot(name, metric=metric)
    assert "\n" not in str(caught.value)


# -------------------------------------------------------------------------------- browser
def _measure(browser, html: str, tmp_path, *, javascript: bool = True) -> dict:
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, java_script_enabled=javascript)
    page = context.new_page()
    page.goto(path.as_uri())
    page.eval_on_selector_all("details", "ds => ds.forEach(d => d.open = true)")
    found = page.evaluate("""() => {
      const tables = Array.from(document.querySelectorAll('table'));
      return {
        tables: tables.length,
        wider: tables.filter(t => t.getBoundingClientRect().width > t.parentElement.clientWidth + 1
                                  || t.parentElement.scrollWidth > t.parentElement.clientWidth + 1).map(t => t.id),
        headers: Array.from(document.querySelectorAll('thead th')).map(th => th.textContent.trim()),
        csv: tables.filter(t => t.querySelector('caption a.csv[href^="data:text/csv"]')).length,
        findingsTop: document.querySelector('#findings-list').getBoundingClientRect().top,
        findingsText: document.querySelector('#findings-list ol').innerText,
        pageWidth: document.documentElement.scrollWidth,
      }; }""")
    context.close()
    return found


def test_every_table_fits_1280px_with_word_headers_and_a_csv_link(browser, rendered, tmp_path):
    found = _measure(browser, rendered["html"], tmp_path)
    assert found["tables"] >= 15
    assert found["wider"] == [], "tables wider than their box at 1280 px"
    assert found["pageWidth"] <= WIDTH
    field_names = [h for h in found["headers"] if FIELD_NAME.match(h) or "_" in h]
    assert field_names == [], "headers that are field names"
    assert found["csv"] == found["tables"]
    assert found["findingsTop"] < HEIGHT / 3  # the findings are on the first screen
    data = json.loads(rendered["json"])
    for finding in data["findings"]:
        assert _plain(finding["text"]) in found["findingsText"]


def test_the_page_reads_without_javascript(browser, rendered, tmp_path):
    found = _measure(browser, rendered["html"], tmp_path, javascript=False)
    assert found["wider"] == [] and found["csv"] == found["tables"]
    folded = re.findall(r'<details class="table"><summary>([^<]*)</summary>', rendered["html"])
    assert folded and all(re.search(r"\(\d+ rows\)$", s) for s in folded)
    data = json.loads(rendered["json"])
    # the CSV link downloads the table's rows at full precision, with no script
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, java_script_enabled=False)
    page = context.new_page()
    page.goto((tmp_path / "report.html").as_uri())
    with page.expect_download() as download:
        page.click("#summary-groups caption a.csv")
    rows = download.value.path().read_text(encoding="utf-8").splitlines()
    context.close()
    assert download.value.suggested_filename == "summary-groups.csv"
    assert rows[0].startswith("group,family") and len(rows) == 1 + data["tables"]["summary-groups"]["rows_total"]
    long = [t for t in data["tables"].values() if t["rows_total"] > 12]
    assert long and all(f"{html.escape(t['caption'])} ({t['rows_total']} rows)" in folded for t in long)


def test_the_null_report_fits_and_says_so_on_screen(browser, null_world, tmp_path):
    _, texts = null_world
    found = _measure(browser, texts["html"], tmp_path)
    assert found["wider"] == []
    assert found["findingsText"].startswith("No group's effect is distinguishable from zero")


def test_a_method_added_from_outside_opens_the_report_with_its_own_sentence(results, sim_trace, monkeypatch):
    from reports.sections import findings

    monkeypatch.setattr(findings, "FINDING_BUILDERS", dict(findings.FINDING_BUILDERS))
    seen = []

    def audit(ctx):
        seen.append(ctx.results is results)
        return findings.Finding("audit", "The audit finds **nothing** to add.", table="summary-groups", numbers={"x": 1.5})

    findings.register_finding("audit", audit, before="warnings")
    assert list(findings.FINDING_BUILDERS)[-2:] == ["audit", "warnings"]
    with pytest.raises(ValueError):
        findings.register_finding("audit", audit)
    data = json.loads(reports.render(results, sim_trace, "json", ReportOptions(images=False)))
    keys = [f["key"] for f in data["findings"]]
    assert seen == [True] and "audit" in keys and keys.index("audit") > keys.index("reliance")
    assert next(f for f in data["findings"] if f["key"] == "audit")["numbers"] == {"x": 1.5}


def test_only_methods_that_feed_the_consensus_are_warned_about_when_they_cannot_run(results, sim_trace):
    import dataclasses

    import pandas as pd

    # the simulated trace has no sampled pairs and one model: the audit's distance_sharing and
    # model_comparison cannot run on it, which is no caveat on a ranking they never feed
    not_run = results.warnings[results.warnings["reason"].astype(str).str.startswith("not run")]
    assert {"distance_sharing", "model_comparison"} <= set(not_run["method"])
    data = json.loads(reports.render(results, sim_trace, "json", ReportOptions(images=False)))
    warned = next((f for f in data["findings"] if f["key"] == "warnings"), None)
    assert warned is None or not set(warned["numbers"].get("methods_not_run", [])) & {"distance_sharing", "model_comparison"}
    # a consensus method that could not run still opens the report with its warning
    paired = pd.DataFrame([{"method": "paired", "group": "", "comparison": "", "reason": "not run: no drop conditions"}])
    changed = dataclasses.replace(results, warnings=pd.concat([results.warnings, paired], ignore_index=True))
    data = json.loads(reports.render(changed, sim_trace, "json", ReportOptions(images=False)))
    warned = next(f for f in data["findings"] if f["key"] == "warnings")
    assert warned["numbers"]["methods_not_run"] == ["paired"] and "paired did not run" in warned["text"]
