"""Assemble the format-neutral :class:`reports.document.Report` from analysis results and a trace.

The report reads top-down: a summary (the ranking of groups and families with effect sizes and
intervals, and the headline retrieval numbers), then one section per method (in
:data:`reports.methods.METHODS` order, each labelled as the paper's or this project's
extension), example ranked lists, the methods text generated from the settings, the warnings,
and the provenance footer. Sections are a registry (:data:`SECTION_BUILDERS`), so adding one
is adding a function.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd

from reports import decomposition, figures
from reports.document import (
    BulletList,
    Column,
    KeyValues,
    Paragraph,
    Report,
    Section,
    Table,
)
from reports.images import THUMBNAIL_SIZE, ThumbnailCache, dataset_root
from reports.methods import METHODS, METHODS_BY_KEY, settings_items
from reports.numbers import PERCENT
from reports.provenance import provenance_items, report_metadata
from reports.ranked import RankedListSettings, build_ranked_lists


@dataclass(frozen=True)
class ReportOptions:
    """How a report is rendered (not what is analysed: that is :class:`analysis.Results.settings`).

    Attributes
    ----------
    images : embed thumbnails of the ranked-list images (needs the dataset images on disk).
    ranked : which groups / how many queries / how many neighbours the ranked lists show.
    thumbnail_size : (width, height) of each embedded thumbnail in pixels.
    max_table_rows : cut long tables in HTML / Markdown (the JSON keeps every row); None = all.
    command : the command line that produced the report, recorded in the provenance.
    created : creation timestamp (ISO 8601); None = now, or ``SOURCE_DATE_EPOCH`` when set.
    title : report title; None = "Attribute reliance report: <dataset>".
    """

    images: bool = True
    ranked: RankedListSettings = field(default_factory=RankedListSettings)
    thumbnail_size: tuple[int, int] = THUMBNAIL_SIZE
    max_table_rows: int | None = None
    command: str = ""
    created: str | None = None
    title: str | None = None


def creation_time(explicit: str | None = None) -> str:
    """ISO timestamp of now (UTC, seconds), or of ``SOURCE_DATE_EPOCH`` for reproducible builds."""
    if explicit:
        return explicit
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch else _dt.datetime.now(_dt.timezone.utc)
    return moment.replace(microsecond=0).isoformat()


@dataclass
class BuildContext:
    """What every section builder may read, plus the report-level warnings they add."""

    results: Any
    trace: Any
    options: ReportOptions
    group_order: list[str]
    created: str = ""
    notes: list[dict[str, str]] = field(default_factory=list)

    def raw_table(self, name: str) -> pd.DataFrame | None:
        frame = self.results.tables.get(name)
        return frame if frame is not None and len(frame.columns) else None

    def table(self, name: str) -> pd.DataFrame | None:
        """The analysis table ``name``, or None when it is absent or none of its rows was tested."""
        frame = self.raw_table(name)
        if frame is None or not len(frame):
            return None
        if "status" in frame and not (frame["status"].astype(str) == "ok").any():
            return None
        return frame

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.results.settings or {})

    def note(self, method: str, reason: str, group: str = "", comparison: str = "") -> None:
        self.notes.append({"method": method, "group": group, "comparison": comparison, "reason": reason})

    def frame_table(self, name: str, caption: str, *, columns: Sequence[Column | str] | None = None,
                    note: str = "") -> Table | None:
        frame = self.table(name)
        if frame is None:
            return None
        if name in TABLE_TESTS and "test" not in frame:
            # Each row says which test produced its p-value, so a table copied out of context still does.
            frame = frame.assign(test=TABLE_TESTS[name])
        if columns is None and name in TABLE_COLUMNS:
            columns = table_columns(frame, TABLE_COLUMNS[name])
        return Table.from_frame(frame, id=f"table-{name.replace('_', '-')}", caption=caption, columns=columns,
                                note=note, max_rows=self.options.max_table_rows)


# Leading columns (and clearer labels) of the analysis tables shown in method sections; the
# other columns follow in the frame's order, except those in HIDDEN_COLUMNS (repeated on every
# row; the JSON's "analysis" part keeps them).
HIDDEN_COLUMNS = frozenset({"baseline", "condition"})
_KEYS = (Column("group"), Column("family"), Column("comparison"))
_P = (Column("p"), Column("p_holm", "p Holm"), Column("p_bh", "p BH"), Column("test"))
# the unit a configuration-level table resamples, and how many of them
_RESAMPLED = (Column("resampled", "unit resampled"), Column("n_ids", "identities"))

# The test behind each table's p-values.
TABLE_TESTS: dict[str, str] = {
    "paired_mcnemar": "clustered McNemar (Durkalski), identity as unit",
    "paired_wilcoxon": "clustered signed-rank (Datta–Satten), identity as unit",
    "paired_identity": "sign-flip permutation over identities",
    "config_glm_gaussian": "t, identity-resampled SE (Gaussian GLM)",
    "config_glm_binomial": "t, identity-resampled SE (binomial GLM)",
    "config_ttest": "t, identity-resampled SE",
    "config_surrogate": "t of the SHAP direction, identity-resampled SE",
    "query_glm": "CR2 t (Satterthwaite df) / HTZ F, identity clusters",
    "agreement": "Kendall W chi² / Spearman",
}
TABLE_COLUMNS: dict[str, tuple[Column, ...]] = {
    "paired_mcnemar": _KEYS + (
        Column("unit"), Column("n", "queries"), Column("n_ids", "identities"), Column("rank1_baseline", "R-1 oracle"),
        Column("rank1_condition", "R-1 condition"), Column("delta_rank1", "ΔR-1"), Column("ci_low", "ΔR-1 CI low"),
        Column("ci_high", "ΔR-1 CI high"), Column("b", "hits lost"), Column("c", "hits gained"),
        Column("design_effect", "design effect"), Column("chi2", "χ²"),
    ) + _P,
    "paired_wilcoxon": _KEYS + (
        Column("unit"), Column("n", "queries"), Column("n_ids", "identities"), Column("mean_delta_ap", "ΔmAP"),
        Column("ci_low", "CI low"), Column("ci_high", "CI high"), Column("median_delta_ap", "median ΔAP"),
        Column("rbc", "rank-biserial r"), Column("cles", "CLES"), Column("z"),
    ) + _P,
    "paired_identity": _KEYS + (
        Column("unit"), Column("n_ids", "identities"), Column("n_queries", "queries"), Column("delta_map", "ΔmAP"),
        Column("ci_low", "CI low"), Column("ci_high", "CI high"),
    ) + _P,
    "config_glm_gaussian": (Column("term"), Column("family"), Column("coef"), Column("ci_low", "CI low"),
                            Column("ci_high", "CI high"), Column("se")) + _P + _RESAMPLED,
    "config_glm_binomial": (Column("term"), Column("family"), Column("coef", "coef (log-odds)"),
                            Column("ci_low", "CI low"), Column("ci_high", "CI high"), Column("se")) + _P + _RESAMPLED,
    "config_ttest": (Column("group"), Column("family"), Column("diff", "mAP on − off"), Column("ci_low", "CI low"),
                     Column("ci_high", "CI high"), Column("cohens_d", "Cohen's d")) + _P + _RESAMPLED,
    "query_glm": (Column("level"), Column("term"), Column("group"), Column("reference"), Column("coef", "coef (log-odds)"),
                  Column("ci_low", "CI low"), Column("ci_high", "CI high"), Column("odds_ratio", "odds ratio"),
                  Column("t"), Column("F"), Column("df_num", "df (num.)"), Column("df")) + _P
                 + (Column("resampled", "unit"), Column("n_clusters", "identities"), Column("n")),
    "query_surrogate": (Column("level"), Column("group"), Column("family"), Column("mean_abs_shap", "mean |SHAP|"),
                        Column("mean_abs_shap_drop", "|SHAP| of the drop"),
                        Column("mean_abs_shap_state", "|SHAP| of the state"), Column("mean_shap", "mean SHAP when dropped"),
                        Column("share"), Column("rank")),
    "agreement": (Column("statistic"), Column("method_a", "method A"), Column("method_b", "method B"),
                  Column("value", "W or rho"), Column("ci_low", "CI low"), Column("ci_high", "CI high"), Column("p"), Column("test"), Column("chi2"), Column("df"), Column("n_methods", "methods"),
                  Column("n_groups", "groups")),
    "config_surrogate": (Column("model"), Column("group"), Column("family"), Column("mean_abs_shap", "mean |SHAP|"),
                         Column("mean_abs_shap_ci_low", "CI low"), Column("mean_abs_shap_ci_high", "CI high"),
                         Column("perm_importance_mean", "permutation importance"),
                         Column("perm_importance_ci_low", "CI low"), Column("perm_importance_ci_high", "CI high"),
                         Column("shap_direction", "SHAP direction"), Column("shap_direction_ci_low", "CI low"),
                         Column("shap_direction_ci_high", "CI high")) + _P + _RESAMPLED,
}


def table_columns(frame: pd.DataFrame, leading: Sequence[Column]) -> list[Column]:
    keys = {c.source or c.key for c in leading}
    rest = [Column(str(c)) for c in frame.columns if c not in keys and c not in HIDDEN_COLUMNS]
    return list(leading) + rest


# ------------------------------------------------------------------------------------ summary
RETRIEVAL_COLUMNS = (
    Column("condition"),
    Column("kind"),
    Column("group", "acts on"),
    Column("n_enabled", "groups enabled"),
    Column("mAP_pct", "mAP %", PERCENT, source="mAP"),
    Column("mINP_pct", "mINP %", PERCENT, source="mINP"),
    Column("rank1_pct", "R-1 %", PERCENT, source="rank1"),
    Column("rank5_pct", "R-5 %", PERCENT, source="rank5"),
    Column("rank10_pct", "R-10 %", PERCENT, source="rank10"),
    Column("rank20_pct", "R-20 %", PERCENT, source="rank20"),
    Column("n_valid", "valid queries"),
)

SUMMARY_GROUP_COLUMNS = (
    Column("consensus_rank", "rank", help="consensus rank across the identity-valid methods (1 = most relied on; "
                                          "ties averaged)"),
    Column("group"),
    Column("family"),
    Column("rank_low", "rank from", help="lower end of the rank interval over identity resamples"),
    Column("rank_high", "rank to", help="upper end of the rank interval over identity resamples"),
    Column("consensus_score", "score", help="1 = first in every method, 0 = last in every method"),
    Column("n_methods", "methods"),
    Column("delta_map_drop", "ΔmAP drop", help="mAP(drop:<group>) − mAP(oracle)"),
    Column("ci_low_drop", "CI low"),
    Column("ci_high_drop", "CI high"),
    Column("p_holm_drop", "p Holm (drop)", help="identity-level sign-flip test, Holm-adjusted across groups"),
    Column("delta_map_counterfactual", "ΔmAP counterfactual", help="mAP(counterfactual:<group>) − mAP(oracle)"),
    Column("ci_low_counterfactual", "CI low"),
    Column("ci_high_counterfactual", "CI high"),
    Column("p_holm_counterfactual", "p Holm (cf.)"),
    Column("delta_rank1_drop", "ΔR-1 drop", help="rank-1 rate change when the expert is dropped"),
    Column("delta_rank1_counterfactual", "ΔR-1 cf."),
)

SUMMARY_FAMILY_COLUMNS = (
    Column("level"),
    Column("comparison"),
    Column("rank"),
    Column("rank_low", "rank from"),
    Column("rank_high", "rank to"),
    Column("family"),
    Column("effect", "mean ΔmAP"),
    Column("ci_low", "CI low"),
    Column("ci_high", "CI high"),
    Column("n_groups", "groups"),
    Column("groups", "members"),
    Column("status"),
)


def _wide_by_comparison(frame: pd.DataFrame | None, columns: dict[str, str]) -> pd.DataFrame | None:
    """``group x comparison`` rows -> one row per group with ``<name>_<comparison>`` columns."""
    if frame is None or "group" not in frame or "comparison" not in frame:
        return None
    parts = []
    for comparison, sub in frame.groupby("comparison", sort=True):
        present = {src: f"{dst}_{comparison}" for src, dst in columns.items() if src in sub}
        parts.append(sub.drop_duplicates("group").set_index("group")[list(present)].rename(columns=present))
    return pd.concat(parts, axis=1) if parts else None


def summary_groups_frame(ctx: BuildContext) -> pd.DataFrame | None:
    ranking = ctx.table("ranking_groups")
    if ranking is None:
        return None
    frame = ranking.sort_values(["consensus_rank", "group"], kind="stable") if "consensus_rank" in ranking else ranking
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
        intro += " Most relied on (consensus across methods): " + ", ".join(f"**{g}**" for g in top) + "."
    section.add(Paragraph(intro))
    groups = summary_groups_frame(ctx)
    if groups is not None:
        section.add(
            Table.from_frame(
                groups, id="summary-groups", caption="Ranking of attribute groups", columns=SUMMARY_GROUP_COLUMNS,
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
        sort = [c for c in ("level", "comparison", "rank") if c in families]
        section.add(
            Table.from_frame(
                families.sort_values(sort, kind="stable") if sort else families, id="summary-families",
                caption="Ranking of attribute families (rank interval: identity resamples)",
                columns=SUMMARY_FAMILY_COLUMNS,
            )
        )
    for block in decomposition.summary_blocks(ctx):
        section.add(block)
    conditions = ctx.table("conditions")
    if conditions is None:
        conditions = ctx.trace.conditions
    section.add(
        Table.from_frame(conditions, id="summary-retrieval", caption="Retrieval per condition",
                         columns=RETRIEVAL_COLUMNS)
    )
    figure = figures.paired_change(ctx.table("paired_identity"), estimate="delta_map", metric="ΔmAP",
                                   order=ctx.group_order, fig_id="fig-summary-delta-map")
    if figure is not None:
        section.add(figure)
    return section


# ---------------------------------------------------------------------------- method sections
def _method_section(ctx: BuildContext, key: str) -> Section:
    info = METHODS_BY_KEY[key]
    section = Section(f"method-{key.replace('_', '-')}", info.title, origin=info.origin)
    section.add(Paragraph(info.describe(ctx.settings)))
    if not any(ctx.table(t) is not None for t in info.tables):
        reasons = _untested_reasons(ctx, info.tables) or _method_warnings(ctx, (*info.tables, info.analysis_method))
        section.add(Paragraph("**Not run on this trace**" + (f": {reasons}." if reasons else ".")))
        if not reasons:
            ctx.note(key, "method did not run and gave no reason")
    return section


def _untested_reasons(ctx: BuildContext, tables: Sequence[str]) -> str:
    """The reasons recorded on the rows of tables whose every row is untested."""
    reasons = []
    for name in tables:
        frame = ctx.raw_table(name)
        if frame is not None and "reason" in frame:
            reasons += [r for r in frame["reason"].astype(str) if r]
    return "; ".join(dict.fromkeys(reasons))


def _method_warnings(ctx: BuildContext, names: Sequence[str]) -> str:
    warnings = getattr(ctx.results, "warnings", None)
    if warnings is None or not len(warnings) or "method" not in warnings:
        return ""
    mask = warnings["method"].astype(str).isin(names) & (warnings["group"].fillna("").astype(str) == "")
    return "; ".join(dict.fromkeys(warnings.loc[mask, "reason"].astype(str)))


def build_config_glm(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "config_glm")
    figure = figures.coefficient_forest(
        [("mAP (Gaussian GLM)", ctx.table("config_glm_gaussian"), "change in mAP"),
         ("rank-1 hits (binomial GLM)", ctx.table("config_glm_binomial"), "change in log-odds")],
        fig_id="fig-config-glm", title="Configuration-level GLM coefficients",
        caption="Effect of enabling each group's experts on configuration mAP (left) and on the log-odds of a "
                "rank-1 hit (right), with confidence intervals from identity resamples (each configuration's "
                "outcome recomputed and the GLM refitted). Filled markers: the interval excludes 0.",
    )
    for block in (
        figure,
        ctx.frame_table("config_glm_gaussian", "Gaussian GLM of configuration mAP (unit resampled: identity; "
                                               "the paper's numbers, conditional on this test set's identities, "
                                               "in the *_conditional columns)"),
        ctx.frame_table("config_glm_binomial", "Binomial GLM of configuration rank-1 hits (unit resampled: identity; "
                                               "the paper's numbers, conditional on this test set's identities, "
                                               "in the *_conditional columns)"),
    ):
        if block is not None:
            section.add(block)
    return section


def build_config_surrogate(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "config_surrogate")
    frame = ctx.table("config_surrogate")
    if frame is None:
        return section
    models = [(str(m), sub) for m, sub in frame.groupby("model", sort=False)] if "model" in frame else [("", frame)]
    for value, name in (("mean_abs_shap", "mean |SHAP|"), ("perm_importance_mean", "permutation importance")):
        figure = figures.importance_bars(
            [(f"{m} {name}".strip(), sub) for m, sub in models], value=value, label="group",
            fig_id=f"fig-config-surrogate-{value.replace('_', '-')}", title=f"Configuration surrogate: {name} per group",
            xlabel=name, order=ctx.group_order,
            caption=f"{name} of each group's indicator in the configuration-level surrogates (mAP units for SHAP, "
                    "drop in R² for permutation importance); groups in consensus order.",
        )
        if figure is not None:
            section.add(figure)
    families = [(f"{m} mean |SHAP|".strip(), figures.family_totals(sub, "mean_abs_shap")) for m, sub in models]
    figure = figures.importance_bars(
        families, value="mean_abs_shap", label="family", fig_id="fig-config-surrogate-families",
        title="Configuration surrogate: mean |SHAP| per family", xlabel="sum over the family's groups",
        caption="Mean |SHAP| summed over the groups of each family.",
    )
    if figure is not None:
        section.add(figure)
    section.add(ctx.frame_table("config_surrogate", "Configuration-level surrogate importances (intervals: surrogates "
                                                    "refitted on identity resamples; unit resampled: identity)"))
    return section


def build_config_ttest(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "config_ttest")
    frame = ctx.table("config_ttest")
    if frame is not None:
        if "diff" in frame:
            # The interval in the table is the identity-resampled interval of the mAP difference, so
            # that is what the figure draws; Cohen's d (no interval) stays in the table.
            figure = figures.coefficient_forest(
                [("mAP with − without the group", frame[[c for c in frame.columns if c != "coef"]]
                  .rename(columns={"diff": "estimate"}), "difference in mean mAP")],
                fig_id="fig-config-ttest", title="Configuration-level t-tests: mAP difference",
                caption="Mean mAP of configurations with the group's experts enabled minus without, with "
                        "confidence intervals from identity resamples; Cohen's d is in the table.",
            )
            if figure is not None:
                section.add(figure)
        section.add(ctx.frame_table("config_ttest", "mAP with − without each group, with Cohen's d (unit resampled: "
                                                "identity; the paper's Welch test, conditional on this test set's "
                                                "identities, in the *_conditional columns)"))
    return section


def build_paired(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "paired")
    for frame, estimate, metric, fig_id, interval in (
        (ctx.table("paired_identity"), "delta_map", "ΔmAP", "fig-paired-delta-map",
         "identity-cluster bootstrap intervals"),
        (ctx.table("paired_mcnemar"), "delta_rank1", "Δrank-1", "fig-paired-delta-rank1",
         "the McNemar table's intervals (Tango score interval on counts divided by the identity design effect)"),
    ):
        figure = figures.paired_change(frame, estimate=estimate, metric=metric, order=ctx.group_order,
                                       fig_id=fig_id, interval=interval)
        if figure is not None:
            section.add(figure)
    for name, caption in (
        ("paired_identity", "Identity-level test of ΔmAP (sign-flip permutation over identities; unit: identity)"),
        ("paired_wilcoxon", "Clustered signed-rank test on per-query AP (Datta–Satten; unit: identity, interval: "
                            "identity-cluster bootstrap)"),
        ("paired_mcnemar", "Clustered McNemar test on rank-1 hits (Durkalski; unit: identity; Δrank-1 interval: Tango "
                           "score interval with the identity design effect)"),
    ):
        block = ctx.frame_table(name, caption)
        if block is not None:
            section.add(block)
    return section


def build_query_glm(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "query_glm")
    frame = ctx.table("query_glm")
    if frame is not None:
        terms = frame[frame["level"].astype(str) == "term"] if "level" in frame else frame
        figure = figures.coefficient_forest(
            [("rank-1 hit vs the group's reference state", terms, "log-odds ratio")], fig_id="fig-query-glm", title="Query-level GLM coefficients",
            caption="Binomial GLM of the rank-1 hit on the query's attribute states (identity-clustered CR2 "
                    "intervals, Satterthwaite degrees of freedom).",
        )
        if figure is not None:
            section.add(figure)
        section.add(ctx.frame_table("query_glm", "Query-level binomial GLM (unit: identity; CR2 cluster-robust errors, "
                                             "Satterthwaite t per term, HTZ F per group)"))
    return section


def build_query_surrogate(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "query_surrogate")
    frame = ctx.table("query_surrogate")
    if frame is not None:
        value = figures.first_column(frame, ("mean_abs_shap", "shap", "importance", "value"))
        if value is not None:
            panels = [(str(k), sub) for k, sub in frame.groupby("comparison", sort=True)] if "comparison" in frame \
                else [("", frame)]
            for level in ("group", "family"):
                rows = [(t, _level_rows(sub, level)) for t, sub in panels]
                figure = figures.importance_bars(
                    rows, value=value, label=level, fig_id=f"fig-query-surrogate-{level}",
                    title=f"Query-level SHAP summary per {level}", xlabel="mean |SHAP| (AP units)",
                    order=ctx.group_order if level == "group" else None,
                    caption=f"Mean absolute SHAP value per {level} of the XGBoost surrogate of the per-query AP "
                            "change, one panel per comparison.",
                )
                if figure is not None:
                    section.add(figure)
        section.add(ctx.frame_table("query_surrogate", "Query-level surrogate: SHAP summary"))
    fit = ctx.frame_table("query_surrogate_fit", "Surrogate fit (identity-grouped cross-validation)")
    if fit is not None:
        section.add(fit)
    return section


def _level_rows(frame: pd.DataFrame, level: str) -> pd.DataFrame | None:
    """Rows of one summary level: a ``level`` column picks them; else groups as they are and
    families as sums over their groups."""
    if "level" in frame:
        sub = frame[frame["level"].astype(str) == level]
        if len(sub):
            if level == "family" and "family" not in sub and "group" in sub:
                sub = sub.rename(columns={"group": "family"})
            return sub
    if level == "group":
        return frame if "group" in frame else None
    value = figures.first_column(frame, ("mean_abs_shap", "shap", "importance", "value"))
    return figures.family_totals(frame, value) if value else None


def build_ranking(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "ranking")
    for block in (
        ctx.frame_table("ranking_groups", "Per-method ranks and scores of each group (consensus from the "
                                          "identity-valid methods only; rank interval: identity resamples)"),
        ctx.frame_table("agreement", "Agreement between methods (Kendall's W interval: identity resamples)"),
    ):
        if block is not None:
            section.add(block)
    return section


def build_retrieval(ctx: BuildContext) -> Section:
    section = Section("retrieval", "Retrieval under each condition")
    section.add(Paragraph(
        "How retrieval changes with routing: CMC curves per condition, and which experts each condition "
        "switches on (the gate heatmaps show the mean gate weight of every expert)."
    ))
    conditions = ctx.table("conditions")
    if conditions is None:
        conditions = ctx.trace.conditions
    cmc = ctx.table("cmc")
    figure = figures.cmc_curves(cmc if cmc is not None else ctx.trace.cmc_table(), conditions, order=ctx.group_order)
    if figure is not None:
        section.add(figure)
    # Subset configurations repeat the same few gate patterns; the heatmaps show the named
    # conditions first and as many subsets as fit.
    named = [c for c, k in zip(conditions["condition"], conditions["kind"]) if k != "subset"]
    subsets = [c for c, k in zip(conditions["condition"], conditions["kind"]) if k == "subset"]
    gates = ctx.table("gates")
    for fig in figures.gate_heatmaps(gates if gates is not None else ctx.trace.gates_mean(),
                                     conditions_order=named + subsets):
        section.add(fig)
    return section


def build_ranked_lists_section(ctx: BuildContext) -> Section:
    section = Section("ranked-lists", "Ranked lists", origin="extension")
    cache = None
    if ctx.options.images:
        cache = ThumbnailCache(dataset_root(ctx.trace.dataset, ctx.trace.path), size=ctx.options.thumbnail_size)
    lists = build_ranked_lists(ctx.trace, ctx.group_order, ctx.options.ranked, cache)
    if not ctx.options.images:
        section.add(Paragraph("Images were not embedded (`--no-images`): identities only."))
    elif cache is not None and cache.missing:
        shown = ", ".join(cache.missing[:3]) + (" ..." if len(cache.missing) > 3 else "")
        reason = (f"{len(cache.missing)} image(s) not readable under {cache.root} (e.g. {shown}): "
                  "identities shown instead")
        section.add(Paragraph(reason[0].upper() + reason[1:] + "."))
        ctx.note("ranked lists", reason)
    section.add(lists)
    return section


def build_methods(ctx: BuildContext) -> Section:
    section = Section("methods", "Methods")
    settings = ctx.settings
    section.add(Paragraph(
        "Generated from the settings of this analysis run. Analyses labelled **paper** follow MoSAIC-ReID "
        "(Psalta, Tsironis, Karantzalos, arXiv 2512.08697): configuration-level GLMs, random-forest/SHAP "
        "surrogates and t-tests with Cohen's d. Those labelled **extension** are this project's additions: "
        "paired clustered McNemar and signed-rank tests, the identity-level test, the query-level GLM and the XGBoost "
        "query surrogate."
    ))
    section.add(BulletList([
        f"**{m.title}** ({'paper' if m.origin == 'paper' else 'extension' if m.origin == 'extension' else 'paper and extension'}"
        f"{'' if any(ctx.table(t) is not None for t in m.tables) else '; not run on this trace'}): {m.describe(settings)}"
        for m in METHODS
    ]))
    section.add(KeyValues("methods-settings", "Analysis settings", settings_items(settings)))
    return section


WARNING_COLUMNS = (Column("method"), Column("group"), Column("comparison"), Column("reason"))


def build_warnings(ctx: BuildContext) -> Section:
    section = Section("warnings", "Warnings")
    warnings = getattr(ctx.results, "warnings", None)
    frames = [w for w in (warnings, pd.DataFrame(ctx.notes, columns=[c.key for c in WARNING_COLUMNS])) if
              w is not None and len(w)]
    if not frames:
        section.add(Paragraph("No warnings: every test was run and every model was estimable."))
        return section
    frame = pd.concat([f.reindex(columns=[c.key for c in WARNING_COLUMNS]) for f in frames], ignore_index=True)
    section.add(Paragraph(
        "Rows that could not be tested or estimated, and why. They keep no p-value and do not enter any "
        "multiple-testing correction."
    ))
    section.add(Table.from_frame(frame.fillna(""), id="table-warnings", caption=f"{len(frame)} warnings",
                                 columns=WARNING_COLUMNS))
    return section


def build_provenance(ctx: BuildContext) -> Section:
    section = Section("provenance", "Provenance")
    section.add(KeyValues("provenance-items", "", provenance_items(ctx.trace, ctx.options.command, ctx.created)))
    return section


# Order is the order in the report. The warnings section is built after every other section
# (they add notes to it) and placed where this list puts it.
SECTION_BUILDERS: tuple[tuple[str, Callable[[BuildContext], Section]], ...] = (
    ("summary", build_summary),
    ("method-config-glm", build_config_glm),
    ("method-config-surrogate", build_config_surrogate),
    ("method-config-ttest", build_config_ttest),
    ("method-paired", build_paired),
    ("method-query-glm", build_query_glm),
    ("method-query-surrogate", build_query_surrogate),
    (decomposition.SECTION_ID, decomposition.build_decomposition),
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
    order = figures.group_order(results.tables.get("ranking_groups"), trace.schema.group_names)
    created = creation_time(options.created)
    ctx = BuildContext(results=results, trace=trace, options=options, group_order=order, created=created)
    built: dict[str, Section] = {}
    for key, builder in SECTION_BUILDERS:
        if key != "warnings":
            built[key] = builder(ctx)
    built["warnings"] = build_warnings(ctx)
    sections = [built[key] for key, _ in SECTION_BUILDERS]
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
