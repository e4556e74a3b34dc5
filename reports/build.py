"""Assemble the format-neutral :class:`reports.document.Report` from analysis results and a trace.

The report reads top-down: a summary (the ranking of groups and families with effect sizes and
intervals, and the headline retrieval numbers), then one section per method (in
:data:`reports.methods.METHODS` order, each labelled as the paper's or this project's
extension), example ranked lists, the methods text generated from the settings, the warnings,
and the provenance footer. Sections are a registry (:data:`SECTION_BUILDERS`), so adding one
is adding a function.
"""

from __future__ import annotations

from typing import Callable

from reports.context import BuildContext, ReportOptions, creation_time
from reports.document import Report, Section
from reports.figures import builders
from reports.provenance import report_metadata
from reports.sections import decomposition
from reports.sections.appendix import (
    build_methods,
    build_provenance,
    build_ranked_lists_section,
    build_retrieval,
    build_warnings,
)
from reports.sections.method_sections import (
    build_config_glm,
    build_config_surrogate,
    build_config_ttest,
    build_paired,
    build_query_glm,
    build_query_surrogate,
    build_ranking,
    other_method_sections,
)
from reports.sections import audit  # registers the audit's finding sentences
from reports.sections.summary import build_findings_section, build_summary


# Order is the order in the report; a builder returns one section or a list of them (possibly
# empty). The warnings section is built after every other section (they add notes to it) and
# placed where this list puts it.
SECTION_BUILDERS: tuple[tuple[str, Callable[[BuildContext], Section | list[Section]]], ...] = (
    ("findings", build_findings_section),
    ("summary", build_summary),
    ("method-config-glm", build_config_glm),
    ("method-config-surrogate", build_config_surrogate),
    ("method-config-ttest", build_config_ttest),
    ("method-paired", build_paired),
    ("method-query-glm", build_query_glm),
    ("method-query-surrogate", build_query_surrogate),
    (decomposition.SECTION_ID, decomposition.build_decomposition),
    ("method-other", other_method_sections),
    ("method-ranking", build_ranking),
    ("retrieval", build_retrieval),
    ("ranked-lists", build_ranked_lists_section),
    ("methods", build_methods),
    ("warnings", build_warnings),
    ("provenance", build_provenance),
)


def build_report(results, trace, options: ReportOptions | None = None) -> Report:
    """The report of ``results`` (from :func:`analysis.analyze`) on ``trace``, ready to render."""
    options = options or ReportOptions()
    order = builders.group_order(results.tables.get("ranking_groups"), trace.schema.group_names)
    created = creation_time(options.created)
    ctx = BuildContext(results=results, trace=trace, options=options, group_order=order, created=created)
    built: dict[str, Section | list[Section]] = {}
    for key, builder in SECTION_BUILDERS:
        if key != "warnings":
            built[key] = builder(ctx)
    built["warnings"] = build_warnings(ctx)
    sections = [s for key, _ in SECTION_BUILDERS for s in
                (built[key] if isinstance(built[key], list) else [built[key]])]
    sections = audit.leave_out_expert_sections(ctx, sections)
    dataset = (trace.dataset or {}).get("name") or "unnamed dataset"
    metadata = report_metadata(trace, results, options.command, created)
    return Report(
        title=options.title or f"Attribute reliance report: {dataset}",
        subtitle=(f"Which semantic attributes the model relies on, from trace `{metadata['trace']['file']}` "
                  f"(sha256 {str(metadata['trace']['sha256'])[:12]}…)."),
        sections=sections,
        metadata=metadata,
        analysis_json=results.to_json(),
    )
