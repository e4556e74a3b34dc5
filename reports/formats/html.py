"""One self-contained HTML file: inline CSS, inline SVG figures, a few lines of inline JS.

Nothing in the page refers to the network or to another file (no external stylesheet,
script, font or image; thumbnails and the CSV downloads are ``data:`` URIs), so the report can
be mailed, archived or opened offline and shows exactly what was rendered. It reads without
JavaScript: long tables fold in ``<details>`` (row count in the summary line), rows that could
not be estimated are one line with the reason, and every table has a CSV link; the only script
makes long tables sortable by clicking a header.

Tables are written here, not by a table library. great_tables 1.1.0 (the Python port of R's gt;
``pip download`` reaches it here) was weighed for its number formats, merged interval columns,
spanners and footnotes, and not adopted: (1) the report's cells must read the same in HTML,
Markdown and JSON, so they are written once as text by :mod:`reports.numbers`; with
great_tables the HTML would be formatted a second way and the formats could drift; (2) it has
no folding (``<details>`` with a row count) and no CSV link, the two things a long table here
needs, so the wrapping code would stay; (3) every table carries its own generated ``<style>``
block, and its font helper writes an ``@import`` of fonts.googleapis.com, which the
no-network rule forbids and a test would have to police; (4) it adds eight runtime
dependencies (htmltools, Babel, faicons, multimark, nokap, ...) to the torch-free analysis
install, to pin in ``constraints/cpu.txt``, in exchange for the ~60 lines of ``<table>``
writing below.
"""

from __future__ import annotations

import re
from html import escape
from typing import Callable
from urllib.parse import quote

from reports.document import (
    NUMERIC_KINDS,
    ORIGIN_LABELS,
    BulletList,
    Figure,
    Findings,
    KeyValues,
    Paragraph,
    RankedLists,
    Report,
    Section,
    Table,
)
from reports.numbers import value_text

FOOTER_SECTIONS = ("provenance",)
FIRST_SECTIONS = ("findings",)
WRAPPED_COLUMNS = frozenset({"reason", "groups", "description"})

# Tables with more rows than this get sortable headers (short ones read fine as they are).
SORTABLE_MIN_ROWS = 6

CSS = """
:root{--fg:#1d1d1f;--muted:#666;--line:#ddd;--accent:#0072B2;--paper:#e8f1f8;--ext:#fbeee0}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--fg);margin:0 auto;max-width:1180px;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:36px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}.subtitle{color:var(--muted);margin:0 0 16px}
nav.toc{font-size:13px;margin:12px 0 8px}nav.toc ol{columns:3}nav.toc a{color:var(--accent);text-decoration:none}
.origin{display:inline-block;font-size:11px;font-weight:600;border-radius:3px;padding:1px 6px;margin-left:8px;vertical-align:middle}
.origin-paper{background:var(--paper)}.origin-extension,.origin-mixed{background:var(--ext)}
table{border-collapse:collapse;margin:6px 0 4px;font-size:12.5px}
th,td{border-bottom:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
td.wrap{white-space:normal;min-width:12em}
th{background:#f4f4f4;font-weight:600;white-space:normal;max-width:10em;vertical-align:bottom}
td.collapsed{color:var(--muted);font-style:italic;white-space:normal}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.interval{font-variant-numeric:tabular-nums;white-space:nowrap}
table.sortable th{cursor:pointer}table.sortable th[aria-sort=ascending]::after{content:" \\25B4"}
table.sortable th[aria-sort=descending]::after{content:" \\25BE"}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
.note{color:var(--muted);font-size:12px;margin:2px 0 10px}
.table-wrap{overflow-x:auto;margin-bottom:6px;max-width:100%}
details.table{margin:8px 0}details.table>summary{cursor:pointer;font-weight:600;padding:4px 0}
.csv{font-size:11px;font-weight:400;margin-left:8px;color:var(--accent)}
.findings{display:grid;grid-template-columns:minmax(0,1fr) auto;gap:20px;align-items:start}
.findings ol{margin:0;padding-left:20px}.findings li{margin:0 0 8px}.findings a.src{font-size:12px;color:var(--accent)}
.findings figure{margin:0;max-width:600px}.findings svg.figure{max-width:100%;height:auto}
figure{margin:10px 0 16px;overflow-x:auto}figcaption{color:var(--muted);font-size:12px}
svg.figure{max-width:none;background:#fff}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;font-size:12.5px}
dl.kv dt{font-weight:600}dl.kv dd{margin:0;word-break:break-all}
.ranked{margin:8px 0 14px}.ranked .row{display:flex;align-items:center;gap:4px;margin:2px 0}
.ranked .cond{width:150px;font-size:12px}.ranked img{width:32px;height:64px;display:block}
.ranked .cell{display:flex;flex-direction:column;align-items:center;font-size:10px;border:2px solid transparent;padding:1px}
.ranked .hit{border-color:#009E73}.ranked .miss{border-color:#D55E00}.ranked .ignored{border-color:#bbb}
.ranked .qcell{border-color:#0072B2;margin-right:10px}.ranked .id{min-width:34px;text-align:center}
footer{margin-top:40px;border-top:1px solid var(--line);padding-top:8px;color:var(--muted);font-size:12px}
"""

# Sort by a cell's data-v (numbers) or its text; blanks last either way.
SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function(h){ h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row){
        var cell = row.cells[col];
        if (!cell) return null;
        var v = cell.getAttribute('data-v');
        if (v !== null) return v === '' ? null : parseFloat(v);
        var t = cell.textContent.trim();
        return t === '' || t === '\\u2013' ? null : t;
      }
      rows.sort(function(a, b){
        var x = key(a), y = key(b);
        if (x === null) return y === null ? 0 : 1;
        if (y === null) return -1;
        var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def _inline(text: str) -> str:
    """Escape, then turn ``**bold**`` into <strong> and ```code``` into <code>."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escape(text, quote=False))
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def csv_link(table: Table) -> str:
    """A link that downloads the table's full-precision rows as CSV, from the page itself (``data:`` URI)."""
    if not table.csv:
        return ""
    uri = "data:text/csv;charset=utf-8," + quote(table.csv, safe="")
    name = escape(table.id) + ".csv"
    return f'<a class="csv" download="{name}" href="{uri}" title="every column at full precision">CSV</a>'


def render_table(table: Table) -> str:
    sortable = len(table.rows) >= SORTABLE_MIN_ROWS
    cls = ' class="sortable"' if sortable else ""
    head = "".join(
        f'<th scope="col"{_title_attr(c.help)}>{escape(c.title)}</th>' for c in table.columns
    )
    body = []
    for row, line, sort in zip(table.rows, table.collapsed, table.sort_keys):
        if line is not None:
            body.append(f'<tr><td class="collapsed" colspan="{len(table.columns)}">{escape(line)}</td></tr>')
            continue
        cells = []
        for c in table.columns:
            value = row.get(c.key)
            text = escape(value_text(value))
            number = sort.get(c.key)
            data = f' data-v="{"" if number is None else repr(float(number))}"'
            kind = c.cell_kind
            if kind == "interval":
                cells.append(f'<td class="interval"{data}>{text}</td>')
            elif kind in NUMERIC_KINDS and (number is not None or value is None):
                cells.append(f'<td class="num"{data}>{text}</td>')
            elif c.key in WRAPPED_COLUMNS:
                cells.append(f'<td class="wrap">{text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = f'<p class="note">{_inline(table.note)}</p>' if table.note else ""
    # a folded table's caption is its summary line; the caption keeps the CSV link
    caption = ("" if table.fold else escape(table.caption)) + csv_link(table)
    html = (f'<div class="table-wrap"><table id="{escape(table.id)}"{cls} aria-label="{escape(table.caption)}">'
            f"<caption>{caption}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{note}")
    if table.fold:
        rows = table.n_rows or len(table.rows)
        return (f'<details class="table"><summary>{escape(table.caption)} ({rows} rows)</summary>{html}</details>')
    return html


def render_findings(block: Findings) -> str:
    items = "".join(
        f'<li>{_inline(f.text)}'
        + (f' <a class="src" href="#{escape(f.table)}">(table)</a>' if f.table else "") + "</li>"
        for f in block.items
    )
    figure = render_figure(block.figure) if block.figure is not None else ""
    return f'<div class="findings" id="{escape(block.id)}"><ol>{items}</ol>{figure}</div>'


def _title_attr(text: str) -> str:
    return f' title="{escape(text)}"' if text else ""


def render_figure(figure: Figure) -> str:
    return f'<figure id="{escape(figure.id)}">{figure.svg}<figcaption>{_inline(figure.caption)}</figcaption></figure>'


def render_paragraph(block: Paragraph) -> str:
    return f"<p>{_inline(block.text)}</p>"


def render_bullets(block: BulletList) -> str:
    return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"


def render_key_values(block: KeyValues) -> str:
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in block.items)
    caption = f"<h3>{escape(block.caption)}</h3>" if block.caption else ""
    return f'{caption}<dl class="kv" id="{escape(block.id)}">{items}</dl>'


def _thumb(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{escape(alt)}">' if uri else ""


def render_ranked(block: RankedLists) -> str:
    parts = [f'<div id="{escape(block.id)}">']
    if block.caption:
        parts.append(f'<p class="note">{_inline(block.caption)}</p>')
    for q in block.queries:
        loss = "–" if q.ap_loss is None else value_text(q.ap_loss)
        parts.append(
            f'<div class="ranked"><h3>{escape(q.group)}: query {q.query_index} (id {q.pid}, camera {q.camid}), '
            f"AP loss {escape(loss)}</h3>"
        )
        for r in q.rows:
            ap = "–" if r.ap is None else value_text(r.ap)
            cells = [
                f'<div class="cell qcell">{_thumb(q.thumbnail, f"query {q.pid}")}<span class="id">{q.pid}</span></div>'
            ]
            for item in r.items:
                tip = f"rank {item.index + 1}: id {item.pid}, camera {item.camid}, {item.outcome}"
                if item.distance is not None:
                    tip += f", distance {item.distance:.4g}"
                cells.append(
                    f'<div class="cell {item.outcome}" title="{escape(tip)}">'
                    f'{_thumb(item.thumbnail, f"id {item.pid}")}<span class="id">{item.pid}</span></div>'
                )
            parts.append(
                f'<div class="row"><span class="cond">{escape(r.condition)}<br>AP {escape(ap)}</span>{"".join(cells)}</div>'
            )
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


BLOCK_RENDERERS: dict[type, Callable] = {
    Paragraph: render_paragraph,
    BulletList: render_bullets,
    KeyValues: render_key_values,
    Table: render_table,
    Figure: render_figure,
    RankedLists: render_ranked,
    Findings: render_findings,
}


def render_section(section: Section, tag: str = "section") -> str:
    origin = ""
    if section.origin:
        origin = f'<span class="origin origin-{section.origin}">{escape(ORIGIN_LABELS[section.origin])}</span>'
    body = "".join(BLOCK_RENDERERS[type(b)](b) for b in section.blocks)
    return f'<{tag} id="{escape(section.id)}"><h2>{escape(section.title)}{origin}</h2>{body}</{tag}>'


def render_html(report: Report) -> str:
    """The report as one self-contained HTML document."""
    toc = "".join(f'<li><a href="#{escape(s.id)}">{escape(s.title)}</a></li>' for s in report.sections)
    # the findings come first, before the contents: the first screen answers the question
    first = "".join(render_section(s) for s in report.sections if s.id in FIRST_SECTIONS)
    sections = "".join(render_section(s) for s in report.sections
                       if s.id not in FOOTER_SECTIONS and s.id not in FIRST_SECTIONS)
    footer = "".join(render_section(s, "footer") for s in report.sections if s.id in FOOTER_SECTIONS)
    created = escape(str(report.metadata.get("created", "")))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Forbid every network fetch; data: images only. The page needs nothing else.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f'<meta name="generator" content="mosaic {escape(str(report.metadata.get("mosaic_version", "")))}">'
        f'<meta name="created" content="{created}">'
        f"<title>{escape(report.title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(report.title)}</h1><p class=\"subtitle\">{_inline(report.subtitle)}</p></header>"
        f'<main>{first}<nav class="toc"><h2>Contents</h2><ol>{toc}</ol></nav>{sections}</main>{footer}'
        f"<script>{SORT_JS}</script></body></html>\n"
    )
