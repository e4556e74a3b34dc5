"""The report as GitHub-flavoured Markdown: the same sections and numbers as the HTML.

Figures are not embedded (Markdown viewers do not render inline SVG reliably); each figure
leaves its caption and a pointer to the HTML report, and the numbers it draws are in the
tables next to it.
"""

from __future__ import annotations

from typing import Callable

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


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(table: Table) -> str:
    header = "| " + " | ".join(_cell(c.title) for c in table.columns) + " |"
    align = "|" + "|".join("---:" if c.cell_kind in NUMERIC_KINDS else "---" for c in table.columns) + "|"
    rows = []
    for r, line in zip(table.rows, table.collapsed):
        cells = [_cell(value_text(r.get(c.key))) for c in table.columns] if line is None else \
            [_cell(line)] + [""] * (len(table.columns) - 1)
        rows.append("| " + " | ".join(cells) + " |")
    out = [f'<a id="{table.id}"></a>', "", f"**{table.caption}**", "", header, align, *rows]
    if table.note:
        out += ["", f"_{table.note}_"]
    if table.fold:
        rows_count = table.n_rows or len(table.rows)
        out = [f"<details><summary>{table.caption} ({rows_count} rows)</summary>", "", *out, "", "</details>"]
    return "\n".join(out)


def render_findings(block: Findings) -> str:
    lines = [f"{i}. {f.text}" + (f" ([table](#{f.table}))" if f.table else "") for i, f in enumerate(block.items, 1)]
    if block.figure is not None:
        lines += ["", render_figure(block.figure)]
    return "\n".join(lines)


def render_figure(figure: Figure) -> str:
    return f"_Figure: {figure.caption} (drawn in the HTML report)._"


def render_paragraph(block: Paragraph) -> str:
    return block.text


def render_bullets(block: BulletList) -> str:
    return "\n".join(f"- {item}" for item in block.items)


def render_key_values(block: KeyValues) -> str:
    lines = [f"**{block.caption}**", ""] if block.caption else []
    lines += [f"- **{k}**: `{v}`" if "\n" not in v else f"- **{k}**:\n\n```\n{v}\n```" for k, v in block.items]
    return "\n".join(lines)


def render_ranked(block: RankedLists) -> str:
    lines = [block.caption, ""] if block.caption else []
    marks = {"hit": "✓", "miss": "✗", "ignored": "·"}
    for q in block.queries:
        loss = value_text(q.ap_loss)
        lines.append(f"- **{q.group}**, query {q.query_index} (id {q.pid}, camera {q.camid}, `{q.path}`), AP loss {loss}")
        for r in q.rows:
            ranked = " ".join(f"{marks[i.outcome]}{i.pid}" for i in r.items)
            lines.append(f"  - `{r.condition}` (AP {value_text(r.ap)}): {ranked}")
    return "\n".join(lines)


BLOCK_RENDERERS: dict[type, Callable] = {
    Paragraph: render_paragraph,
    BulletList: render_bullets,
    KeyValues: render_key_values,
    Table: render_table,
    Figure: render_figure,
    RankedLists: render_ranked,
    Findings: render_findings,
}


def render_section(section: Section) -> str:
    title = f'<a id="{section.id}"></a>\n\n## {section.title}'
    if section.origin:
        title += f" ({ORIGIN_LABELS[section.origin]})"
    return "\n\n".join([title, *(BLOCK_RENDERERS[type(b)](b) for b in section.blocks)])


def render_markdown(report: Report) -> str:
    """The report as Markdown text."""
    head = f"# {report.title}\n\n{report.subtitle}"
    toc = "\n".join(f"{i}. [{s.title}](#{s.id})" for i, s in enumerate(report.sections, 1))
    body = "\n\n".join(render_section(s) for s in report.sections)
    return f"{head}\n\n{toc}\n\n{body}\n"
