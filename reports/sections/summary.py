"""The summary section: the ranking of groups and families with effect sizes and intervals, the
decomposition's headline, and the retrieval numbers per condition."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from analysis.methods.ranking import headline
from analysis.tables.registry import table_spec
from reports.document import Column, Paragraph, Section, Table
from reports.document import Findings
from reports.figures import builders
from reports.numbers import PERCENT
from reports.sections import decomposition
from reports.sections.findings import build_findings, is_population_null

if TYPE_CHECKING:
    from reports.context import BuildContext


RETRIEVAL_COLUMNS = (
    Column("condition"),
    Column("kind"),
    Column("group", "acts on"),
    Column("n_enabled", "groups enabled", kind="count"),
    Column("mAP_pct", "mAP (%)", PERCENT, source="mAP"),
    Column("mINP_pct", "mINP (%)", PERCENT, source="mINP"),
    Column("rank1_pct", "R-1 (%)", PERCENT, source="rank1"),
    Column("rank5_pct", "R-5 (%)", PERCENT, source="rank5"),
    Column("rank10_pct", "R-10 (%)", PERCENT, source="rank10"),
    Column("rank20_pct", "R-20 (%)", PERCENT, source="rank20"),
    Column("n_valid", "valid queries", kind="count"),
)

SUMMARY_GROUP_COLUMNS = (
    Column("consensus_rank", "rank [interval]", kind="rank_interval", low="rank_low", high="rank_high",
           help="consensus rank across the identity-valid methods (1 = most relied on; ties averaged), with its "
                "interval over identity resamples"),
    Column("group"),
    Column("family"),
    Column("n_methods", "methods", kind="count", help="identity-valid methods in the consensus"),
    Column("delta_map_drop", "ΔmAP drop, pp [CI]", kind="interval", low="ci_low_drop", high="ci_high_drop",
           help="mAP(drop:<group>) − mAP(oracle) in percentage points, identity-cluster bootstrap interval"),
    Column("p_holm_drop", "p Holm (drop)", kind="p",
           help="identity-level sign-flip test, Holm-adjusted across groups"),
    Column("delta_map_counterfactual", "ΔmAP counterfactual, pp [CI]", kind="interval", low="ci_low_counterfactual",
           high="ci_high_counterfactual",
           help="mAP(counterfactual:<group>) − mAP(oracle) in percentage points, identity-cluster bootstrap interval"),
    Column("p_holm_counterfactual", "p Holm (cf.)", kind="p"),
    Column("delta_rank1_drop", "ΔR-1 drop (pp)", decimals=1, help="rank-1 rate change when the expert is dropped, pp"),
    Column("delta_rank1_counterfactual", "ΔR-1 cf. (pp)", decimals=1,
           help="rank-1 rate change under counterfactual routing, pp"),
)

SUMMARY_FAMILY_COLUMNS = (
    Column("level"),
    Column("comparison"),
    Column("family"),
    Column("rank", "rank [interval]", kind="rank_interval", low="rank_low", high="rank_high"),
    Column("effect", "mean ΔmAP, pp [CI]", kind="interval", low="ci_low", high="ci_high"),
    Column("n_groups", "groups", kind="count"),
    Column("groups", "members"),
)


def _wide_by_comparison(frame: pd.DataFrame | None, columns: dict[str, str]) -> pd.DataFrame | None:
    """``group x comparison`` rows -> one row per group with ``<name>_<comparison>`` columns."""
    if frame is None:
        return None
    parts = []
    for comparison, sub in frame.groupby("comparison", sort=True):
        present = {src: f"{dst}_{comparison}" for src, dst in columns.items()}
        parts.append(sub.drop_duplicates("group").set_index("group")[list(present)].rename(columns=present))
    return pd.concat(parts, axis=1) if parts else None


def summary_groups_frame(ctx: BuildContext) -> pd.DataFrame | None:
    ranking = ctx.table("ranking_groups")
    if ranking is None:
        return None
    frame = ranking.sort_values(["consensus_rank", "group"], kind="stable")
    frame = frame.set_index("group", drop=False)
    for name, cols in (
        ("paired_identity", {"delta_map": "delta_map", "ci_low": "ci_low", "ci_high": "ci_high", "p_holm": "p_holm"}),
        ("paired_mcnemar", {"delta_rank1": "delta_rank1"}),
    ):
        wide = _wide_by_comparison(ctx.table(name), cols)
        if wide is not None:
            frame = frame.join(wide, how="left")
    return frame.reset_index(drop=True)


def build_summary(ctx: BuildContext) -> Section:
    section = Section("summary", "Summary", origin="mixed")
    d = ctx.trace.data
    dataset = (d.dataset or {}).get("name") or "unnamed dataset"
    top = ctx.group_order[:3]
    intro = (
        f"Trace of **{dataset}**: {d.n_queries} queries ({int(d.valid.sum())} with a true match), {d.n_gallery} gallery "
        f"images, {d.n_conditions} routing conditions, {len(ctx.trace.schema.groups)} attribute groups."
    )
    if ctx.table("ranking_groups") is not None and top:
        intro += " " + headline(ctx.results.tables)
    section.add(Paragraph(intro))
    groups = summary_groups_frame(ctx)
    if groups is not None:
        section.add(
            Table.from_frame(
                groups, id="summary-groups",
                caption=("Attribute groups in estimated order (no effect differs from zero: not a ranking)"
                         if is_population_null(ctx) else "Ranking of attribute groups"),
                columns=SUMMARY_GROUP_COLUMNS,
                note="Negative Δ = retrieval gets worse without the group's expert (drop) or when the queries are "
                     "misrouted to another identity's state (counterfactual). ΔmAP intervals: identity-cluster "
                     "bootstrap; p Holm: identity-level sign-flip permutation test, Holm-adjusted across groups "
                     "within each comparison. Rank from–to: the consensus rank's interval over identity resamples, "
                     "every identity-valid method recomputed on each resample (unit resampled: identity).",
            )
        )
    else:
        ctx.note("ranking", "no ranking_groups table in the results: the summary ranking is missing")
    families = ctx.table("ranking_families")
    if families is not None:
        section.add(
            Table.from_frame(
                families.sort_values(["level", "comparison", "rank"], kind="stable"), id="summary-families",
                caption=table_spec("ranking_families").caption, columns=SUMMARY_FAMILY_COLUMNS, fold=False,
            )
        )
    section.add_all(*decomposition.summary_blocks(ctx))
    conditions = ctx.table("conditions")
    if conditions is None:
        conditions = ctx.trace.conditions
    section.add(
        Table.from_frame(conditions, id="summary-retrieval", caption="Retrieval per condition",
                         columns=RETRIEVAL_COLUMNS, note="mAP, mINP and CMC (R-k) in percent of the valid queries.")
    )
    return section.add_all(builders.paired_change(ctx.table("paired_identity"), estimate="delta_map", metric="ΔmAP (pp)",
                                                 order=ctx.group_order, fig_id="fig-summary-delta-map"))


def build_findings_section(ctx: BuildContext) -> Section:
    """The report's first screen: the findings in sentences, beside the groups by consensus rank."""
    section = Section("findings", "Findings")
    figure = builders.ranking_figure(ctx.table("ranking_groups"), ctx.table("paired_identity"),
                                    null=is_population_null(ctx), ci_level=ctx.settings.get("ci_level", 0.95))
    findings = build_findings(ctx)
    if not findings and figure is None:
        return section.add(Paragraph("No finding: the analysis produced no ranking on this trace (see the warnings)."))
    return section.add(Findings("findings-list", findings, figure))
