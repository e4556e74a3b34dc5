"""Reports: rounding rule, SVG figures, the three formats, numbers identical across formats,
determinism, thumbnails, and the HTML in a headless Chromium (no console errors, no network)."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import reports
import reports.formats.html
import reports.formats.markdown
from reports.build import ReportOptions, build_report
from reports.document import Column, Table
from reports.figures import charts, svg
from reports.numbers import P_VALUE, PERCENT, display_value, fixed, interval_text, p_text, rule_for, value_text

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
CREATED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")

# Small models: the tests check the rendering, not the statistics.
FAST_OPTIONS = {
    "configuration": dict(rf_n_estimators=20, xgb_n_estimators=20, permutation_repeats=2, cv_folds=3),
    "explanatory": dict(n_estimators=30, n_folds=3),
}
SETTINGS = dict(n_bootstrap=100, n_permutations=100, seed=0, options=FAST_OPTIONS)


@pytest.fixture(scope="module")
def sim_trace(tmp_path_factory):
    from analysis import read_trace, simulate

    path = tmp_path_factory.mktemp("report") / "trace.h5"
    simulate(path, n_ids=30, groups=5, effects={"g00": 1.2, "g01": 0.6}, n_subsets=14, drop_cost=0.3, seed=3)
    return read_trace(path)


@pytest.fixture(scope="module")
def results(sim_trace):
    from analysis import analyze

    return analyze(sim_trace, **SETTINGS)


@pytest.fixture(scope="module")
def rendered(results, sim_trace):
    options = ReportOptions(images=False, command="test", created="2026-01-01T00:00:00+00:00")
    document = build_report(results, sim_trace, options)
    return {name: fmt.render(document) for name, fmt in reports.FORMATS.items()}


# ------------------------------------------------------------------------------ numbers
def test_rounding_rules_by_column():
    assert rule_for("p") is P_VALUE and rule_for("p_holm") is P_VALUE
    assert display_value(0.000123456, column="p") == 0.000123
    assert display_value(3.14159e-9, column="p_bh") == 3.14e-09
    assert display_value(0.8765432, PERCENT) == 87.65
    assert display_value(12.0, column="n_ids") == 12 and isinstance(display_value(12.0, column="n_ids"), int)
    assert display_value(2.5, column="consensus_rank") == 2.5
    assert display_value(3.0, column="rank") == 3 and isinstance(display_value(3.0, column="rank"), int)
    assert display_value(-0.0123456, column="delta_map") == -0.01235
    assert display_value(float("nan"), column="coef") is None
    assert display_value(np.float32(0.5), column="coef") == 0.5
    assert display_value(np.int64(7), column="coef") == 7
    assert value_text(None) == "–" and value_text(1e-05) == "1e-05" and value_text(True) == "yes"


def test_table_from_frame_rounds_and_orders_columns():
    frame = pd.DataFrame({"p": [0.0123456, np.nan], "group": ["a", "b"], "coef": [1.23456789, -2.0]})
    table = Table.from_frame(frame, id="t", caption="c")
    assert [c.key for c in table.columns] == ["group", "coef", "p"]
    assert table.rows == [{"group": "a", "coef": "1.23", "p": "0.012"}, {"group": "b", "coef": "\u22122.00", "p": None}]
    cut = Table.from_frame(frame, id="t", caption="c", columns=[Column("group")], max_rows=1)
    assert cut.rows == [{"group": "a"}] and "1 of 2" in cut.note
    assert cut.csv.splitlines() == ["p,group,coef", "0.0123456,a,1.23456789", ",b,-2"]  # every row, full precision


def test_numbers_carry_the_precision_their_interval_supports():
    assert interval_text(-0.03983, -0.055, -0.025) == "\u22120.040 [\u22120.055, \u22120.025]"
    assert interval_text(-4.0, -5.5, -2.5, unit="pp") == "\u22124.0 pp [\u22125.5, \u22122.5]"
    assert interval_text(-22.16, -28.7, -16.6) == "\u221222 [\u221229, \u221217]"
    assert interval_text(0.004, -0.0004, 0.0001) == "0.0040 [\u22120.0004, 0.0001]"  # at most 4 decimals
    assert interval_text(-6.0, -12.2, -0.04) == "\u22126 [\u221212, \u22120.04]"  # a bound near 0 keeps its side
    assert p_text(1.06e-09) == "< 0.001" and p_text(0.0391) == "0.039" and p_text(0.594) == "0.59"
    assert p_text(float("nan")) is None and p_text(1.0) == "1.00"
    assert fixed(-0.0001, 2) == "0.00"  # no negative zero
    interval = Column("d", "Δ", kind="interval", low="lo", high="hi")
    assert interval.text({"d": -4.04, "lo": -5.5, "hi": -2.5}) == "\u22124.0 [\u22125.5, \u22122.5]"
    assert interval.text({"d": float("nan"), "lo": float("nan"), "hi": float("nan")}) is None


def test_unestimable_rows_collapse_to_one_line_with_the_reason():
    frame = pd.DataFrame({"group": ["a", "b", "c"], "coef": [1.0, np.nan, 0.5], "p": [0.01, np.nan, np.nan],
                          "status": ["ok", "not estimable", "not tested"], "reason": ["", "separation", "no pairs"]})
    table = Table.from_frame(frame, id="t", caption="c")
    assert [c.key for c in table.columns] == ["group", "coef", "p"]  # status and reason are not columns
    assert table.collapsed == [None, "b — not estimable: separation", None]
    assert table.rows[2]["p"] == "not tested"
    html = reports.formats.html.render_table(table)
    assert html.count('class="collapsed" colspan="3"') == 1 and "separation" in html
    md = reports.formats.markdown.render_table(table)
    assert "| b — not estimable: separation |  |  |" in md


# -------------------------------------------------------------------------------- SVG
def test_svg_figures_are_deterministic_and_well_formed():
    import xml.etree.ElementTree as ET

    panels = [charts.ForestPanel("drop", [-0.2, 0.01, float("nan")], [-0.3, -0.05, float("nan")], [-0.1, 0.07, float("nan")])]
    figures = [
        charts.forest_plot(["a", "b<&>", "c"], panels, title="forest"),
        charts.bar_chart(["a", "b"], [charts.BarPanel("x", [0.3, -0.1])], title="bars"),
        charts.heatmap(["r1", "r2"], ["c1", "c2", "c3"], [[0, 0.5, 1], [float("nan"), 0.2, 0]], title="heat"),
        charts.line_chart([charts.LinePanel("p", (charts.Series("s", [1, 2, 3], [0.5, 0.7, 0.9]),))], title="lines"),
    ]
    for text in figures:
        root = ET.fromstring(text)  # raises on malformed markup (e.g. an unescaped label)
        assert root.tag.endswith("svg") and "http" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "b&lt;&amp;&gt;" in figures[0] and "n/a" in figures[0]
    assert figures[0] == charts.forest_plot(["a", "b<&>", "c"], panels, title="forest")
    # a significant interval is drawn filled, a non-significant one hollow
    assert 'fill="#0072B2" stroke="#0072B2"' in figures[0] and 'fill="#fff" stroke="#0072B2"' in figures[0]
    # the heatmap leaves cells at vmin undrawn (sparse gates stay small)
    assert figures[2].count("<rect") == 1 + 3 + 1 + 10  # background, 3 coloured cells, 1 n/a cell, colour bar


def test_nice_ticks_cover_the_range():
    ticks = svg.nice_ticks(-0.23, 0.07)
    assert ticks[0] >= -0.23 and ticks[-1] <= 0.07 and 0 in ticks and len(ticks) >= 3


# ------------------------------------------------------------------------- renderers
def test_formats_registry_and_unknown_format(results, sim_trace):
    from mosaic.core.errors import MosaicError

    assert set(reports.FORMATS) == {"html", "md", "json"}
    with pytest.raises(MosaicError, match="html, md, json"):
        reports.render(results, sim_trace, "pdf")


def test_html_is_self_contained(rendered):
    html = rendered["html"]
    assert html.startswith("<!DOCTYPE html>")
    # no reference to anything outside the file
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", html)
    assert "@import" not in html and "url(" not in html
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)
    for section in ("summary", "method-config-glm", "method-paired", "method-query-surrogate", "retrieval",
                    "ranked-lists", "methods", "warnings", "provenance"):
        assert f'id="{section}"' in html
    for figure in ("fig-paired-delta-map", "fig-paired-delta-rank1", "fig-config-glm", "fig-cmc", "fig-gates-",
                   "fig-config-surrogate-mean-abs-shap", "fig-query-surrogate-group", "fig-query-surrogate-family"):
        assert f'id="{figure}' in html
    assert "as in the MoSAIC-ReID paper" in html and "this project&#x27;s extension" in html


def test_html_ids_are_unique(rendered):
    ids = re.findall(r'\sid="([^"]+)"', rendered["html"])
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_methods_section_states_the_settings(rendered):
    md = rendered["md"]
    methods = md[md.index("## Methods"):md.index("## Warnings")]
    assert "100 permutations" in methods and "100 resamples" in methods and "alpha = 0.05" in methods
    assert "- **seed**: `0`" in methods and "- **bootstrap resamples**: `100`" in methods
    assert "Holm and Benjamini–Hochberg" in methods


def test_provenance_footer(rendered, sim_trace):
    html = rendered["html"]
    footer = html[html.index('<footer id="provenance"'):]
    assert sim_trace.sha256 in footer and sim_trace.schema_version in footer
    assert "numpy" in footer and "report command</dt><dd>test" in footer
    meta = json.loads(rendered["json"])["metadata"]
    assert meta["trace"]["sha256"] == sim_trace.sha256 and meta["analysis_settings"]["n_bootstrap"] == 100


def test_warnings_section_lists_untestable_rows(results, rendered):
    data = json.loads(rendered["json"])
    rows = data["tables"]["table-warnings"]["rows"]
    assert len(rows) >= len(results.warnings)
    reasons = {r["reason"] for r in rows}
    assert set(results.warnings["reason"].astype(str)) <= reasons


class _Tables(HTMLParser):
    """Collect every <table id=...>: header texts and cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self._table = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), {"head": [], "rows": []})
        elif self._table is not None and tag == "tr":
            self._row = []
        elif self._table is not None and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif self._table is not None and tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif self._table is not None and tag == "tr":
            (self._table["head"] if not self._table["head"] else self._table["rows"]).append(self._row)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse_tables(html: str) -> dict[str, dict]:
    parser = _Tables()
    parser.feed(html)
    return {k: {"head": v["head"][0], "rows": v["rows"]} for k, v in parser.tables.items()}


def test_every_summary_number_appears_identically_in_json(rendered):
    tables = parse_tables(rendered["html"])
    data = json.loads(rendered["json"])
    summary = next(s for s in data["sections"] if s["id"] == "summary")
    assert summary["tables"] == ["summary-groups", "summary-families", "summary-decomposition", "summary-retrieval"]
    checked = 0
    for table_id in data["tables"]:
        html_table, json_table = tables[table_id], data["tables"][table_id]
        assert html_table["head"] == [c["label"] for c in json_table["columns"]]
        assert len(html_table["rows"]) == len(json_table["rows"])
        keys = [c["key"] for c in json_table["columns"]]
        for html_row, json_row in zip(html_table["rows"], json_table["rows"]):
            if "collapsed" in json_row:
                assert html_row == [json_row["collapsed"]]
                continue
            assert html_row == [value_text(json_row[key]) for key in keys], table_id
            checked += sum(isinstance(json_row[key], str) and any(ch.isdigit() for ch in json_row[key]) for key in keys)
    assert checked > 300
    # the JSON keeps every number at full precision, with its unit
    paired = data["analysis"]["tables"]["paired_identity"]
    units = dict(zip(paired["columns"], paired["units"]))
    assert units["delta_map"] == units["ci_low"] == "pp" and units["p"] == ""


def test_markdown_shows_the_same_numbers(rendered):
    """HTML and Markdown show the same rounded text, cell for cell, in every table."""
    data = json.loads(rendered["json"])
    md = rendered["md"].splitlines()
    html_tables = parse_tables(rendered["html"])
    for table_id, table in data["tables"].items():
        for row, html_row in zip(table["rows"], html_tables[table_id]["rows"]):
            cells = [row["collapsed"]] + [""] * (len(table["columns"]) - 1) if "collapsed" in row else html_row
            line = "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
            assert line in md, (table_id, line)


def test_summary_table_follows_the_consensus_ranking(results, rendered):
    data = json.loads(rendered["json"])
    shown = [r["group"] for r in data["tables"]["summary-groups"]["rows"]]
    ranking = results.tables["ranking_groups"].sort_values(["consensus_rank", "group"], kind="stable")
    assert shown == ranking["group"].tolist()
    full = data["analysis"]["tables"]["ranking_groups"]
    assert full["columns"] == list(results.tables["ranking_groups"].columns)


def test_same_inputs_give_the_same_bytes_apart_from_the_timestamp(results, sim_trace):
    for name in reports.FORMATS:
        a = reports.render(results, sim_trace, name, ReportOptions(images=False, command="x"))
        b = reports.render(results, sim_trace, name, ReportOptions(images=False, command="x",
                                                                   created="1999-12-31T23:59:59+00:00"))
        assert len(CREATED.findall(a)) >= 1
        assert a != b and CREATED.sub("T", a) == CREATED.sub("T", b)


def test_source_date_epoch_fixes_the_timestamp(results, sim_trace, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "946684800")
    html = reports.render(results, sim_trace, "html", ReportOptions(images=False))
    assert "2000-01-01T00:00:00+00:00" in html


@pytest.mark.slow
def test_an_independent_analysis_run_gives_the_same_report(results, sim_trace):
    from analysis import analyze

    again = analyze(sim_trace, **SETTINGS)
    fixed = ReportOptions(images=False, command="x", created="2000-01-01T00:00:00+00:00")
    for name in reports.FORMATS:
        assert reports.render(results, sim_trace, name, fixed) == reports.render(again, sim_trace, name, fixed)


# ------------------------------------------------------------------------ ranked lists
def _write_images(root: Path, paths, colour) -> None:
    from PIL import Image

    for p in paths:
        target = root / p
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 128), colour).save(target)


def test_ranked_lists_embed_thumbnails_and_survive_missing_images(results, sim_trace, tmp_path):
    from analysis.trace import Trace

    data = sim_trace.data
    _write_images(tmp_path, data.query_path.tolist(), (200, 30, 30))
    gallery = data.gallery_path.tolist()
    _write_images(tmp_path, gallery[: len(gallery) // 2], (30, 30, 200))  # the rest stay missing
    (tmp_path / str(data.query_path[0])).write_bytes(b"not a jpeg")  # unreadable, must not crash
    # a copy of the arrays' container with its own dataset record: the module's trace stays untouched
    local_data = dataclasses.replace(data, dataset={**data.dataset, "root": str(tmp_path)})
    local = Trace(local_data, path=sim_trace.path, schema_version=sim_trace.schema_version)
    document = build_report(results, local, ReportOptions(images=True, created="x"))
    assert "root" not in sim_trace.data.dataset
    ranked = document.section("ranked-lists").blocks[-1]
    assert ranked.queries and all(len(q.rows) == 3 for q in ranked.queries)  # oracle, drop, counterfactual
    assert ranked.queries[0].group == results.tables["ranking_groups"].sort_values("consensus_rank")["group"].iloc[0]
    items = [i for q in ranked.queries for r in q.rows for i in r.items]
    assert any(i.thumbnail and i.thumbnail.startswith("data:image/jpeg;base64,") for i in items)
    assert any(i.thumbnail is None for i in items)
    assert {i.outcome for i in items} <= {"hit", "miss", "ignored"}
    warnings = json.loads(reports.FORMATS["json"].render(document))["tables"]["table-warnings"]["rows"]
    assert any(w["method"] == "ranked lists" and "not readable" in w["reason"] for w in warnings)
    html = reports.FORMATS["html"].render(document)
    assert '<img src="data:image/jpeg;base64,' in html


def test_ranked_lists_pick_the_largest_ap_losses(results, sim_trace):
    from reports.figures.ranked import RankedListSettings, build_ranked_lists

    lists = build_ranked_lists(sim_trace, ["g01"], RankedListSettings(n_groups=1, n_queries=3, top_k=4))
    d = sim_trace.data
    names = d.condition_name.tolist()
    loss = np.where(d.valid, d.ap[names.index("oracle")] - d.ap[names.index("drop:g01")], -np.inf)
    assert [q.query_index for q in lists.queries] == np.argsort(-loss, kind="stable")[:3].tolist()
    assert all(len(r.items) == 4 for q in lists.queries for r in q.rows)


# ---------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's /usr/bin/chromium is not installed (`make browser` installs it)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def test_html_in_headless_chromium(browser, rendered, results, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(rendered["html"], encoding="utf-8")
    page = browser.new_page()
    console, requests = [], []
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
    page.on("requestfailed", lambda r: requests.append(("failed", r.url)))
    page.on("request", lambda r: requests.append(("request", r.url)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    assert [m for m in console if m[0] in ("error", "pageerror", "warning")] == []
    assert requests == [("request", path.as_uri())]

    # the ranking the reader sees is analyze()'s ranking
    shown = page.eval_on_selector_all("#summary-groups tbody tr", "rows => rows.map(r => r.cells[1].textContent)")
    expected = results.tables["ranking_groups"].sort_values(["consensus_rank", "group"], kind="stable")["group"]
    assert shown == expected.tolist()
    assert page.locator("svg.figure").count() >= 8

    # long tables sort by clicking a header (numerically, both directions); long tables are folded
    page.eval_on_selector_all("details", "ds => ds.forEach(d => d.open = true)")
    header = page.locator("#summary-retrieval th", has_text="mAP (%)")
    header.click()
    values = page.eval_on_selector_all("#summary-retrieval tbody tr", "rows => rows.map(r => parseFloat(r.cells[4].dataset.v))")
    assert values == sorted(values)
    header.click()
    values = page.eval_on_selector_all("#summary-retrieval tbody tr", "rows => rows.map(r => parseFloat(r.cells[4].dataset.v))")
    assert values == sorted(values, reverse=True)
    assert [m for m in console if m[0] in ("error", "pageerror")] == []
    page.close()


def test_report_of_a_trace_where_methods_cannot_run():
    """No subsets and no counterfactuals: configuration-level methods do not run; the report says why."""
    from analysis import analyze, simulate

    trace = simulate(n_ids=12, groups=3, effects={"g00": 1.0}, kinds=("oracle", "none", "drop"), n_subsets=0, seed=2)
    results = analyze(trace, **SETTINGS)
    document = build_report(results, trace, ReportOptions(images=True, created="x"))
    texts = {name: fmt.render(document) for name, fmt in reports.FORMATS.items()}
    data = json.loads(texts["json"])
    glm = next(s for s in data["sections"] if s["id"] == "method-config-glm")
    assert glm["tables"] == [] and glm["figures"] == []
    md_glm = texts["md"][texts["md"].index("## Configuration-level GLMs"):texts["md"].index("## Configuration-level surrogate")]
    assert "**Not run on this trace**: no subset:* conditions" in md_glm
    warned = {w["method"] for w in data["tables"]["table-warnings"]["rows"]}
    assert {"config_glm_gaussian", "config_ttest"} <= warned
    # in-memory trace: no file, no hash; the footer says so instead of failing
    assert data["metadata"]["trace"]["file"] == "(in memory)" and "(in memory)" in texts["html"]
    assert "counterfactual" not in {r["condition"].split(":")[0] for q in data["ranked_lists"] for r in q["rows"]}
