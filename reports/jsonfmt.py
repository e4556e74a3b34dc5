"""The report as JSON: the displayed tables (rounded exactly as shown) plus the full analysis.

Layout (documented for users in ``docs/report-json.md``)::

    {
      "format": "mosaic-report", "version": 1,
      "title": ..., "metadata": {created, command, versions, trace {...}, analysis_settings},
      "sections": [{"id", "title", "origin", "tables": [table ids], "figures": [figure ids]}],
      "tables": {id: {"caption", "columns": [{"key", "label"}], "rows": [{key: value}], "note"}},
      "ranked_lists": [...],
      "analysis": <analysis.Results.to_dict(): every table at full precision>
    }

Every number in ``tables`` is the number the HTML and Markdown reports show, character for
character (see :mod:`reports.numbers`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from reports.document import Figure, RankedLists, Report, Table

FORMAT_NAME = "mosaic-report"
FORMAT_VERSION = 1


def table_dict(table: Table) -> dict[str, Any]:
    return {
        "caption": table.caption,
        "columns": [{"key": c.key, "label": c.title} for c in table.columns],
        "rows": table.to_records(),
        "note": table.note,
    }


def report_dict(report: Report) -> dict[str, Any]:
    sections, tables, ranked = [], {}, []
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
        sections.append(entry)
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "title": report.title,
        "metadata": report.metadata,
        "sections": sections,
        "tables": tables,
        "ranked_lists": ranked,
        "analysis": json.loads(report.analysis_json) if report.analysis_json else None,
    }


def render_json(report: Report) -> str:
    """The report as indented, key-sorted JSON text (deterministic apart from ``metadata.created``)."""
    return json.dumps(report_dict(report), indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
