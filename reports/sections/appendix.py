"""The sections after the methods: retrieval per condition, ranked lists, the methods text,
warnings and provenance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from reports.document import BulletList, Column, KeyValues, Paragraph, Section, Table
from reports.figures import builders
from reports.figures.images import ThumbnailCache, dataset_root
from reports.figures.ranked import build_ranked_lists
from reports.methods import METHODS, settings_items
from reports.provenance import provenance_items

if TYPE_CHECKING:
    from reports.context import BuildContext


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
    section.add_all(builders.cmc_curves(cmc if cmc is not None else ctx.trace.cmc_table(), conditions,
                                       order=ctx.group_order))
    # Subset configurations repeat the same few gate patterns; the heatmaps show the named
    # conditions first and as many subsets as fit.
    named = [c for c, k in zip(conditions["condition"], conditions["kind"]) if k != "subset"]
    subsets = [c for c, k in zip(conditions["condition"], conditions["kind"]) if k == "subset"]
    gates = ctx.table("gates")
    for fig in builders.gate_heatmaps(gates if gates is not None else ctx.trace.gates_mean(),
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
