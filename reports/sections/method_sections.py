"""One section per analysis method: what it does (from :mod:`reports.methods`), its figures and its
tables, whose columns, labels and captions come from the tables' specs (:mod:`analysis.tables.registry`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from analysis.tables.registry import table_spec
from reports.document import Paragraph, Section
from reports.figures import builders
from reports.methods import METHODS_BY_KEY

if TYPE_CHECKING:
    from reports.context import BuildContext


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
    figure = builders.coefficient_forest(
        [("mAP (Gaussian GLM)", ctx.table("config_glm_gaussian"), "change in mAP (pp)"),
         ("rank-1 hits (binomial GLM)", ctx.table("config_glm_binomial"), "change in log-odds")],
        fig_id="fig-config-glm", title="Configuration-level GLM coefficients",
        caption="Effect of enabling each group's experts on configuration mAP (left) and on the log-odds of a "
                "rank-1 hit (right), with confidence intervals from identity resamples (each configuration's "
                "outcome recomputed and the GLM refitted). Filled markers: the interval excludes 0.",
    )
    section.add_all(figure, ctx.frame_table("config_glm_gaussian"), ctx.frame_table("config_glm_binomial"))
    return section


def build_config_surrogate(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "config_surrogate")
    frame = ctx.table("config_surrogate")
    if frame is None:
        return section
    models = [(str(m), sub) for m, sub in frame.groupby("model", sort=False)]
    for value, name in (("mean_abs_shap", "mean |SHAP|"), ("perm_importance_mean", "permutation importance")):
        figure = builders.importance_bars(
            [(f"{m} {name}".strip(), sub) for m, sub in models], value=value, label="group",
            fig_id=f"fig-config-surrogate-{value.replace('_', '-')}", title=f"Configuration surrogate: {name} per group",
            xlabel=name, order=ctx.group_order,
            caption=f"{name} of each group's indicator in the configuration-level surrogates (pp of mAP for SHAP, "
                    "drop in R² for permutation importance); groups in consensus order.",
        )
        section.add_all(figure)
    families = [(f"{m} mean |SHAP|".strip(), builders.family_totals(sub, "mean_abs_shap")) for m, sub in models]
    figure = builders.importance_bars(
        families, value="mean_abs_shap", label="family", fig_id="fig-config-surrogate-families",
        title="Configuration surrogate: mean |SHAP| per family", xlabel="sum over the family's groups",
        caption="Mean |SHAP| summed over the groups of each family.",
    )
    section.add_all(figure, ctx.frame_table("config_surrogate"))
    return section


def build_config_ttest(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "config_ttest")
    frame = ctx.table("config_ttest")
    if frame is not None:
        # The interval in the table is the identity-resampled interval of the mAP difference, so
        # that is what the figure draws; Cohen's d (no interval) stays in the table.
        section.add_all(builders.coefficient_forest(
            [("mAP with − without the group", frame, "difference in mean mAP (pp)")], estimate="diff", label="group",
            fig_id="fig-config-ttest", title="Configuration-level t-tests: mAP difference",
            caption="Mean mAP of configurations with the group's experts enabled minus without, with "
                    "confidence intervals from identity resamples; Cohen's d is in the table.",
        ), ctx.frame_table("config_ttest"))
    return section


def build_paired(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "paired")
    for frame, estimate, metric, fig_id, interval in (
        (ctx.table("paired_identity"), "delta_map", "ΔmAP (pp)", "fig-paired-delta-map",
         "identity-cluster bootstrap intervals"),
        (ctx.table("paired_mcnemar"), "delta_rank1", "Δrank-1 (pp)", "fig-paired-delta-rank1",
         "the McNemar table's intervals (Tango score interval on counts divided by the identity design effect)"),
    ):
        section.add_all(builders.paired_change(frame, estimate=estimate, metric=metric, order=ctx.group_order,
                                              fig_id=fig_id, interval=interval))
    section.add_all(*(ctx.frame_table(name) for name in ("paired_identity", "paired_wilcoxon", "paired_mcnemar")))
    return section


def build_query_glm(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "query_glm")
    frame = ctx.table("query_glm")
    if frame is not None:
        terms = frame[frame["level"].astype(str) == "term"]
        section.add_all(builders.coefficient_forest(
            [("rank-1 hit vs the group's reference state", terms, "log-odds ratio")], fig_id="fig-query-glm",
            title="Query-level GLM coefficients",
            caption="Binomial GLM of the rank-1 hit on the query's attribute states (identity-clustered CR2 "
                    "intervals, Satterthwaite degrees of freedom).",
        ), ctx.frame_table("query_glm"))
    return section


def build_query_surrogate(ctx: BuildContext) -> Section:
    section = _method_section(ctx, "query_surrogate")
    frame = ctx.table("query_surrogate")
    if frame is not None:
        for level in ("group", "family"):
            rows = frame[frame["level"].astype(str) == level]
            section.add_all(builders.importance_bars(
                [("", rows if len(rows) else None)], value="mean_abs_shap", label=level,
                fig_id=f"fig-query-surrogate-{level}", title=f"Query-level SHAP summary per {level}",
                xlabel="mean |SHAP| (pp of AP)", order=ctx.group_order if level == "group" else None,
                caption=f"Mean absolute SHAP value per {level} of the XGBoost surrogate of the per-query AP change "
                        "when a group's expert is dropped.",
            ))
        section.add_all(ctx.frame_table("query_surrogate"))
    return section.add_all(ctx.frame_table("query_surrogate_fit"))


def build_ranking(ctx: BuildContext) -> Section:
    # the per-method ranks are details: the summary shows the consensus
    return _method_section(ctx, "ranking").add_all(ctx.frame_table("ranking_groups", fold=True),
                                                   ctx.frame_table("agreement"))


def _covered_tables() -> set[str]:
    """Tables a dedicated section (or the summary, or the retrieval section) shows."""
    from reports.methods import METHODS

    return {t for m in METHODS for t in m.tables} | {
        "ranking_groups", "ranking_families", "agreement", "conditions", "cmc", "gates"}


def other_method_sections(ctx: BuildContext) -> list[Section]:
    """One section per analysis method the report has no dedicated section for (e.g. one registered from
    outside mosaic): its tables as their specs describe them, in the order the method produced them."""
    by_method: dict[str, list[str]] = {}
    covered = _covered_tables()
    for name in ctx.results.tables:
        spec = table_spec(name)
        if name not in covered and spec is not None:
            by_method.setdefault(spec.method, []).append(name)
    from analysis.analyze import METHODS as ANALYSIS_METHODS

    sections = []
    for method, names in by_method.items():
        section = Section(f"method-{method.replace('_', '-')}", f"Method: {method}", origin="extension")
        known = ANALYSIS_METHODS.get(method)
        intro = [known.description[:1].upper() + known.description[1:] + "."] if known is not None else []
        section.add(Paragraph(" ".join(intro + [table_spec(n).description for n in names])))
        tables = [ctx.frame_table(n, raw=True) for n in names]
        section.add_all(*tables)
        if not any(tables):
            section.add(Paragraph("**Not run on this trace**: its tables are empty."))
        sections.append(section)
    return sections
