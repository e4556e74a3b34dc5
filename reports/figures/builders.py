"""Figures built from analysis tables (thin adapters from tidy DataFrames to :mod:`reports.figures.svg`).

Each function takes the analysis table(s) it draws and returns a :class:`reports.document.Figure`,
or ``None`` when the table lacks what the figure needs (a method that did not run, an empty
table), so a section can simply skip it.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from reports.document import Figure
from reports.figures import charts, svg
from reports.numbers import level_text

COMPARISON_TITLES = {"drop": "drop (no expert)", "counterfactual": "counterfactual (misrouting)"}


def _floats(series: pd.Series | None, n: int) -> list[float]:
    if series is None:
        return [math.nan] * n
    return pd.to_numeric(series, errors="coerce").astype(float).tolist()


def group_order(ranking_groups: pd.DataFrame | None, fallback: Sequence[str]) -> list[str]:
    """Groups most relied on first (consensus ranking), else the schema order."""
    if ranking_groups is not None and len(ranking_groups):
        frame = ranking_groups.sort_values(["consensus_rank", "group"], kind="stable")
        ordered = [str(g) for g in frame["group"].tolist()]
        return ordered + [g for g in fallback if g not in ordered]
    return list(fallback)


def paired_change(frame: pd.DataFrame | None, *, estimate: str, metric: str, order: Sequence[str],
                  fig_id: str, interval: str = "identity-cluster bootstrap intervals") -> Figure | None:
    """Per-group change with CIs, one panel per comparison (drop | counterfactual) on a shared axis."""
    if frame is None or not len(frame):
        return None
    comparisons = [c for c in ("drop", "counterfactual") if c in set(frame["comparison"])]
    comparisons += sorted(set(frame["comparison"]) - set(comparisons))
    groups = [g for g in order if g in set(frame["group"])]
    panels = []
    for i, comparison in enumerate(comparisons):
        sub = frame[frame["comparison"] == comparison].set_index("group").reindex(groups)
        panels.append(
            charts.ForestPanel(
                title=COMPARISON_TITLES.get(comparison, comparison),
                estimate=_floats(sub[estimate], len(groups)),
                low=_floats(sub.get("ci_low"), len(groups)),
                high=_floats(sub.get("ci_high"), len(groups)),
                xlabel=f"{metric} (condition − oracle)",
                colour=svg.colour(i),
            )
        )
    if not panels:
        return None
    title = f"{metric} per group: drop vs counterfactual"
    caption = (
        f"{metric} relative to `oracle` with {interval}; groups in consensus order. Left: the expert "
        "is dropped (information and capacity removed); right: the queries are routed by another identity's state "
        "while the gallery keeps its own (misrouting: how far a wrong route misleads retrieval). Filled markers: the "
        "interval excludes 0."
    )
    return Figure(id=fig_id, caption=caption, svg=charts.forest_plot(groups, panels, title=title, description=caption))


def coefficient_forest(frames: Sequence[tuple], *, fig_id: str, title: str, caption: str, estimate: str = "coef",
                       label: str = "term", skip_terms: Sequence[str] = ("Intercept",)) -> Figure | None:
    """Coefficients with CIs from model tables: ``frames`` holds ``(panel title, frame[, x label])``,
    one panel per table, each on its own axis (the models' scales differ); ``estimate`` and
    ``label`` name the columns drawn and the row labels (``ci_low``, ``ci_high`` the interval)."""
    panels, labels = [], None
    est, lab = estimate, label
    for i, (panel_title, frame, *rest) in enumerate(frames):
        if frame is None or not len(frame):
            continue
        frame = frame[~frame[lab].astype(str).isin(skip_terms)].drop_duplicates(lab)
        frame = frame.set_index(frame[lab].astype(str))
        if labels is None:
            labels = frame.index.tolist()
        sub = frame.reindex(labels)
        panels.append(
            charts.ForestPanel(
                title=panel_title,
                estimate=_floats(sub[est], len(labels)),
                low=_floats(sub.get("ci_low"), len(labels)),
                high=_floats(sub.get("ci_high"), len(labels)),
                xlabel=rest[0] if rest else est,
                colour=svg.colour(i),
            )
        )
    if not panels or not labels:
        return None
    return Figure(id=fig_id, caption=caption,
                  svg=charts.forest_plot(labels, panels, title=title, shared_axis=False, description=caption))


def importance_bars(panels: Sequence[tuple[str, pd.DataFrame | None]], *, value: str, label: str, fig_id: str,
                    title: str, caption: str, xlabel: str, order: Sequence[str] | None = None) -> Figure | None:
    """Horizontal bars of one importance column (e.g. mean |SHAP|) per label, one panel per frame.

    Rows follow ``order`` where given (labels it does not know come after, largest first).
    """
    usable = [(t, f) for t, f in panels if f is not None and len(f) and value in f and label in f]
    if not usable:
        return None
    first = usable[0][1].drop_duplicates(label)
    known = [o for o in (order or []) if o in set(first[label].astype(str))]
    rest = [str(x) for x in first.sort_values(value, ascending=False, kind="stable")[label] if str(x) not in known]
    labels = known + rest
    bars = []
    for i, (panel_title, frame) in enumerate(usable):
        sub = frame.drop_duplicates(label).assign(_label=lambda f: f[label].astype(str)).set_index("_label").reindex(labels)
        bars.append(charts.BarPanel(
            title=panel_title,
            values=_floats(sub[value], len(labels)),
            low=_floats(sub["ci_low"], len(labels)) if "ci_low" in sub else None,
            high=_floats(sub["ci_high"], len(labels)) if "ci_high" in sub else None,
            xlabel=xlabel,
            colour=svg.colour(i),
        ))
    return Figure(id=fig_id, caption=caption,
                  svg=charts.bar_chart(labels, bars, title=title, description=caption))


def family_totals(frame: pd.DataFrame | None, value: str) -> pd.DataFrame | None:
    """Sum ``value`` over the groups of each family (``family`` column), for a family-level summary."""
    if frame is None or not len(frame) or "family" not in frame or value not in frame:
        return None
    totals = frame.groupby("family", sort=True)[value].sum(min_count=1).reset_index()
    return totals.sort_values(value, ascending=False, kind="stable")


def cmc_curves(cmc: pd.DataFrame | None, conditions: pd.DataFrame | None, *, order: Sequence[str],
               max_rank: int = 20, fig_id: str = "fig-cmc") -> Figure | None:
    """CMC curves: one panel per condition kind that acts on a group, with oracle and none as references."""
    if cmc is None or conditions is None or not len(cmc):
        return None
    cmc = cmc[cmc["rank"] <= max_rank]
    curves = {name: (sub["rank"].tolist(), sub["cmc"].tolist()) for name, sub in cmc.groupby("condition", sort=False)}
    kinds = dict(zip(conditions["condition"], conditions["kind"]))
    targets = dict(zip(conditions["condition"], conditions["group"]))
    references = []
    if "oracle" in curves:
        references.append(charts.Series("oracle", *curves["oracle"], colour="#000000", width=2.2))
    if "none" in curves:
        references.append(charts.Series("none", *curves["none"], colour="#777777", dash="4,3", width=2.2))
    colour_of = {g: svg.colour(i) for i, g in enumerate(order)}
    panels = []
    for kind in ("drop", "counterfactual", "only"):
        names = [n for n in curves if kinds.get(n) == kind]
        names.sort(key=lambda n: (order.index(targets[n]) if targets.get(n) in order else len(order), n))
        if names:
            series = [charts.Series(targets.get(n) or n, *curves[n], colour=colour_of.get(targets.get(n), "#999")) for n in names]
            panels.append(charts.LinePanel(kind, tuple(references + series)))
    if not panels and references:
        panels.append(charts.LinePanel("reference conditions", tuple(references)))
    if not panels:
        return None
    caption = (
        f"Cumulative matching characteristic up to rank {max_rank}, one curve per group under each condition kind; "
        "black: `oracle`, grey dashed: `none`."
    )
    return Figure(
        id=fig_id,
        caption=caption,
        svg=charts.line_chart(panels, title="CMC curves", xlabel="rank", ylabel="matching rate",
                           xlim=(1, max_rank), description=caption),
    )


def gate_heatmaps(gates: pd.DataFrame | None, *, conditions_order: Sequence[str],
                  max_conditions: int = 80) -> list[Figure]:
    """One heatmap per expert-carrying layer: conditions (rows) x experts (columns), mean gate weight."""
    if gates is None or not len(gates):
        return []
    value = "mean_gate"
    rows = [c for c in conditions_order if c in set(gates["condition"])][:max_conditions]
    experts = list(dict.fromkeys(gates["label"].astype(str)))
    figures = []
    for layer, sub in gates.groupby("layer", sort=True):
        matrix = (
            sub.pivot_table(index="condition", columns="label", values=value, aggfunc="mean", sort=False)
            .reindex(index=rows, columns=experts)
        )
        values = np.where(np.isfinite(matrix.to_numpy(dtype=float)), matrix.to_numpy(dtype=float), np.nan)
        caption = (
            f"Mean gate weight of each expert (columns) under each condition (rows) at block {layer}: the share of "
            "queries routed to the expert. Empty cells: never switched on."
        )
        figures.append(
            Figure(
                id=f"fig-gates-{layer}",
                caption=caption,
                svg=charts.heatmap(rows, experts, values.tolist(), title=f"Gates at block {layer}", vmin=0.0, vmax=1.0,
                                value_label="mean gate", description=caption),
            )
        )
    return figures


def ranking_figure(ranking: pd.DataFrame | None, paired: pd.DataFrame | None, *, null: bool = False,
                   comparison: str = "drop", ci_level: float = 0.95, fig_id: str = "fig-ranking") -> Figure | None:
    """The groups by consensus rank with their rank intervals (left) and their ΔmAP with its interval (right).

    ``null``: no group's effect differs from zero, and the title says that the order is not a ranking.
    """
    if ranking is None or not len(ranking):
        return None
    frame = ranking.sort_values(["consensus_rank", "group"], kind="stable")
    groups = [str(g) for g in frame["group"]]
    level = level_text(ci_level)
    panels = [charts.ForestPanel(
        title="consensus rank (1 = most relied on)", estimate=_floats(frame["consensus_rank"], len(groups)),
        low=_floats(frame.get("rank_low"), len(groups)), high=_floats(frame.get("rank_high"), len(groups)),
        xlabel=f"rank, {level} interval over identity resamples", colour=svg.colour(0), own_scale=True)]
    if paired is not None and len(paired) and comparison in set(paired["comparison"]):
        sub = paired[paired["comparison"] == comparison].set_index("group").reindex(groups)
        panels.append(charts.ForestPanel(
            title=f"ΔmAP when {COMPARISON_TITLES.get(comparison, comparison).split(' (')[0]}ped"
            if comparison == "drop" else f"ΔmAP, {comparison}",
            estimate=_floats(sub["delta_map"], len(groups)), low=_floats(sub.get("ci_low"), len(groups)),
            high=_floats(sub.get("ci_high"), len(groups)), xlabel=f"ΔmAP (pp), {level} CI", colour=svg.colour(1)))
    title = ("Groups in estimated order: no effect differs from zero (not a ranking)" if null
             else "Groups by consensus rank")
    caption = (f"Each group's consensus rank across the identity-valid methods with its {level} interval over "
               "identity resamples (left), and its ΔmAP in percentage points (condition − oracle) with the "
               f"identity-cluster bootstrap {level} interval (right). Filled markers on the right: the interval "
               "excludes 0." + (" No group's effect is distinguishable from zero: the order is noise." if null else ""))
    return Figure(id=fig_id, caption=caption,
                  svg=charts.forest_plot(groups, panels, title=title, description=caption, panel_width=220))
