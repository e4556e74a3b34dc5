"""The report as JSON: the displayed tables (rounded exactly as shown) plus the full analysis.

Layout (documented for users in ``docs/report-json.md``)::

    {
      "format": "mosaic-report", "version": 1,
      "title": ..., "metadata": {created, command, versions, trace {...}, analysis_settings},
      "sections": [{"id", "title", "origin", "tables": [table ids], "figures": [figure ids]}],
      "findings": [{"key", "text", "table", "numbers"}],
      "tables": {id: {"caption", "columns": [{"key", "label", "unit", "meaning"}],
                      "rows": [{key: text, "collapsed": line of a row that could not be estimated}],
                      "note", "rows_total"}},
      "ranked_lists": [...],
      "analysis": <analysis.Results.to_dict(): every table at full precision>
    }

Every cell in ``tables`` is the text the HTML and Markdown reports show, character for
character (see :mod:`reports.numbers`); the ``analysis`` part holds the same tables at full
precision, each with its columns' units. ``findings[].numbers`` are the full-precision values
each opening sentence rounds.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from mosaic.core.jsonsafe import jsonable
from reports.document import Figure, Findings, RankedLists, Report, Table

FORMAT_NAME = "mosaic-report"
FORMAT_VERSION = 2  # 2: cells are display text (intervals merged), findings, units


def table_dict(table: Table) -> dict[str, Any]:
    return {
        "caption": table.caption,
        "columns": [{"key": c.key, "label": c.title, "unit": c.unit, "meaning": c.help} for c in table.columns],
        "rows": table.to_records(),
        "rows_total": table.n_rows or len(table.rows),
        "note": table.note,
    }


def report_dict(report: Report) -> dict[str, Any]:
    sections, tables, ranked, findings = [], {}, [], []
    for section in report.sections:
        entry = {"id": section.id, "title": section.title, "origin": section.origin, "tables": [], "figures": []}
        for block in section.blocks:
            if isinstance(block, Table):
                tables[block.id] = table_dict(block)
                entry["tables"].append(block.id)
            elif isinstance(block, Figure):
                entry["figures"].append(block.id)
            elif isinstance(block, RankedLists):
                ranked.extend(asdict(q) for q in block.queries)
            elif isinstance(block, Findings):
                findings.extend({"key": f.key, "text": f.text, "table": f.table,
                                 "numbers": jsonable(f.numbers, float_digits=12)} for f in block.items)
                if block.figure is not None:
                    entry["figures"].append(block.figure.id)
        sections.append(entry)
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "title": report.title,
        "metadata": report.metadata,
        "sections": sections,
        "findings": findings,
        "tables": tables,
        "ranked_lists": ranked,
        "analysis": json.loads(report.analysis_json) if report.analysis_json else None,
    }


def render_json(report: Report) -> str:
    """The report as indented, key-sorted JSON text (deterministic apart from ``metadata.created``)."""
    return json.dumps(report_dict(report), indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
