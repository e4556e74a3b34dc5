"""The decomposition in the report: per group information, capacity, misrouting and semantics, and
the share of the oracle's gain that the attribute code alone reaches.

Two places show it: the summary (one row per group, mAP, identity-cluster intervals, the code
share, and which quantities this trace cannot measure and why) and its own section (a forest
plot of the four quantities per group, and the full tables on mAP and rank-1). The numbers come
from the ``decomposition`` and ``decomposition_code`` tables of :mod:`analysis.methods.decomposition`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.methods.decomposition import unavailable_quantities
from analysis.stats.status import OK
from analysis.tables.registry import table_spec
from reports.document import Column, Figure, Paragraph, Section, Table
from reports.figures import charts, svg
from reports.methods import METHODS_BY_KEY
from reports.numbers import level_text

KEY = "decomposition"
SECTION_ID = "method-decomposition"

# quantity -> (short label, how it is computed); the order is the order of columns and panels
QUANTITY_LABELS: dict[str, tuple[str, str]] = {
    "information": ("information", "fixed − oracle"),
    "capacity": ("capacity", "drop − fixed"),
    "misrouting": ("misrouting", "counterfactual − oracle"),
    "semantics": ("semantics", "relabel − oracle"),
}


def _label(quantity: str) -> str:
    short, how = QUANTITY_LABELS.get(quantity, (quantity, ""))
    return f"{short} ({how})" if how else short


def summary_frame(table: pd.DataFrame | None, order: list[str], metric: str = "mAP") -> pd.DataFrame | None:
    """One row per group: each quantity's estimate and interval on ``metric``, wide."""
    if table is None or not len(table) or not (table["status"].astype(str) == OK).any():
        return None
    sub = table[table["metric"].astype(str) == metric]
    groups = [g for g in order if g in set(sub["group"])] + sorted(set(sub["group"]) - set(order))
    frame = pd.DataFrame({"group": groups})
    frame["family"] = frame["group"].map(sub.drop_duplicates("group").set_index("group")["family"])
    for quantity in QUANTITY_LABELS:
        rows = sub[sub["quantity"] == quantity].set_index("group").reindex(groups)
        ok = rows["status"].astype(str).eq(OK).to_numpy()
        for column, source in ((quantity, "estimate"), (f"ci_low_{quantity}", "ci_low"),
                               (f"ci_high_{quantity}", "ci_high")):
            frame[column] = rows[source].where(ok).to_numpy(dtype=float)
    frame["n_ids"] = int(sub["n_ids"].iloc[0])
    return frame


SUMMARY_COLUMNS = (
    Column("group"),
    Column("family"),
    *(Column(quantity, f"{quantity}, pp [CI]", kind="interval", low=f"ci_low_{quantity}", high=f"ci_high_{quantity}",
             help=f"{_label(quantity)} in mAP, percentage points, identity-cluster bootstrap interval")
      for quantity in QUANTITY_LABELS),
    Column("n_ids", "identities", kind="count", help="resampling unit of the intervals: identity"),
)

# the code-share table of the summary: the spec's columns and labels, without the bookkeeping
CODE_COLUMNS = (
    Column("metric"),
    Column("share_pct", "code share, % [CI]", kind="interval", source="share_pct", low="share_low_pct",
           high="share_high_pct", help=table_spec("decomposition_code").column("estimate").description),
    Column("code_gain", "code − none (pp)", decimals=1, help="retrieval by attribute codes minus no experts, percentage points"),
    Column("oracle_gain", "oracle − none (pp)", decimals=1, help="the oracle's gain over no experts, percentage points"),
    Column("n_ids", "identities", kind="count", help="resampling unit of the interval: identity"),
)


def unavailable_text(table: pd.DataFrame | None, code: pd.DataFrame | None) -> str:
    """One clause per quantity this trace cannot measure, with the reason (group names generalised)."""
    parts = [f"**{_label(quantity) if quantity in QUANTITY_LABELS else 'code share'}**: {reason}"
             for frame in (table, code) for quantity, reason in unavailable_quantities(frame).items()]
    return ("Unavailable on this trace: " + "; ".join(parts) + ".") if parts else ""


def summary_blocks(ctx) -> list[Any]:
    """What the summary shows of the decomposition (nothing when the method did not run)."""
    table, code = ctx.raw_table("decomposition"), ctx.raw_table("decomposition_code")
    blocks: list[Any] = []
    wide = summary_frame(table, ctx.group_order)
    if wide is not None:
        level = level_text(ctx.settings.get("ci_level", 0.95))
        blocks.append(Table.from_frame(
            wide, id="summary-decomposition", caption="What each group's routing is worth (ΔmAP)",
            columns=SUMMARY_COLUMNS,
            note="Δ = mAP of one condition minus another, negative = the model loses: information = fixed − oracle "
                 "(the identity information in the group's route), capacity = drop − fixed (its experts' parameters), "
                 "misrouting = counterfactual − oracle (how far a wrong route on the queries misleads retrieval), "
                 "semantics = relabel − oracle (semantic specialisation: states permuted, identity partition kept). "
                 f"{level} intervals: identity-cluster bootstrap, both conditions of a difference resampled together.",
        ))
    if code is not None and len(code) and (code["status"].astype(str) == OK).any():
        shown = code[code["status"].astype(str) == OK]
        shown = shown.assign(share_pct=100 * shown["estimate"], share_low_pct=100 * shown["ci_low"],
                             share_high_pct=100 * shown["ci_high"])
        blocks.append(Table.from_frame(
            shown, id="summary-code-share",
            caption="How much of the oracle's gain the attribute code alone reaches", columns=CODE_COLUMNS,
            note="code share = (code − none) / (oracle − none): retrieval by the distance between attribute codes, "
                 "no model, against what the oracle-routed experts add; identity-cluster bootstrap interval.",
        ))
    missing = unavailable_text(table, code)
    if missing:
        blocks.append(Paragraph(missing))
    return blocks


def decomposition_figure(table: pd.DataFrame | None, order: list[str], metric: str = "mAP") -> Figure | None:
    """The four quantities per group with intervals, one panel each on a shared axis."""
    wide = summary_frame(table, order, metric)
    if wide is None:
        return None
    panels = [
        charts.ForestPanel(
            title=_label(quantity),
            estimate=wide[quantity].tolist(),
            low=wide[f"ci_low_{quantity}"].tolist(),
            high=wide[f"ci_high_{quantity}"].tolist(),
            xlabel=f"Δ{metric} (pp)",
            colour=svg.colour(i),
        )
        for i, quantity in enumerate(QUANTITY_LABELS)
    ]
    caption = (
        f"Δ{metric} of each quantity per group with identity-cluster bootstrap intervals, on one axis so that "
        "magnitudes compare; groups in consensus order. Misrouting can exceed information plus capacity: a wrong "
        "route misleads, a missing one does not. n/a: the trace lacks the conditions (see the summary). Filled "
        "markers: the interval excludes 0."
    )
    return Figure(id="fig-decomposition", caption=caption,
                  svg=charts.forest_plot(wide["group"].tolist(), panels, title=f"Decomposition per group ({metric})",
                                      description=caption, panel_width=200))


def build_decomposition(ctx) -> Section:
    """The decomposition section: what it measures, the figure, the full tables."""
    info = METHODS_BY_KEY[KEY]
    section = Section(SECTION_ID, info.title, origin=info.origin)
    section.add(Paragraph(info.describe(ctx.settings)))
    table, code = ctx.raw_table("decomposition"), ctx.raw_table("decomposition_code")
    if table is None and code is None:
        section.add(Paragraph("**Not run on this trace**: the decomposition method did not run."))
        return section
    missing = unavailable_text(table, code)
    if missing:
        section.add(Paragraph(missing))
    figure = decomposition_figure(table, ctx.group_order)
    section.add_all(figure)
    return section.add_all(ctx.frame_table("decomposition", raw=True), ctx.frame_table("decomposition_code", raw=True))
