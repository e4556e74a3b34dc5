"""The report's charts, as plain deterministic SVG on :mod:`reports.figures.svg`: forest plots, bar charts,
heatmaps and line charts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from reports.figures.svg import (
    PALETTE,
    Canvas,
    LinearScale,
    finite,
    padded_domain,
    row_panels,
    text_width,
    tick_label,
    value_at,
    x_axis,
    y_axis,
)

__all__ = ["BarPanel", "ForestPanel", "LinePanel", "Series", "bar_chart", "forest_plot", "heatmap", "line_chart",
           "sequential_colour"]


# ---------------------------------------------------------------------------------- forest plot
@dataclass(frozen=True)
class ForestPanel:
    """One column of a forest plot: an estimate and its interval per row."""

    title: str
    estimate: Sequence[float]
    low: Sequence[float]
    high: Sequence[float]
    xlabel: str = ""
    colour: str = PALETTE[0]
    # a panel of its own scale (a rank) has no line at the plot's reference and hollow markers mean nothing
    own_scale: bool = False


def forest_plot(labels: Sequence[str], panels: Sequence[ForestPanel], *, title: str, reference: float = 0.0,
                shared_axis: bool = True, description: str = "", panel_width: float = 300) -> str:
    """Estimates with intervals, one row per label, one or more panels side by side.

    Panels that share an axis let a reader compare magnitudes across them (drop versus
    counterfactual). A filled marker means the interval excludes ``reference``; a hollow one
    means it does not; a row without a finite estimate says ``n/a``.
    """
    frame = row_panels(labels, len(panels), title=title, description=description, panel_width=panel_width,
                       gap=28.0, right=16.0, stripes=True)
    canvas = frame.canvas

    def domain_of(panel_list: Sequence[ForestPanel], include: Sequence[float] = (reference,)) -> tuple[float, float]:
        values = [v for p in panel_list for v in list(p.low) + list(p.high) + list(p.estimate)]
        return padded_domain(values, include=include)

    sharing = [p for p in panels if not p.own_scale]
    shared = domain_of(sharing) if shared_axis and sharing else None
    for j, panel in enumerate(panels):
        if panel.own_scale:
            scale = frame.panel(j, panel.title, domain_of([panel], include=()), panel.xlabel)
        else:
            scale = frame.panel(j, panel.title, shared or domain_of([panel]), panel.xlabel, reference=reference)
        for i, label in enumerate(frame.rows):
            y = frame.y(i)
            est, lo, hi = value_at(panel.estimate, i), value_at(panel.low, i), value_at(panel.high, i)
            if not finite(est):
                canvas.text(frame.x0(j) + panel_width / 2, y, "n/a", size=10, anchor="middle", fill="#999")
                continue
            tip = f"{label} · {panel.title}: {est:.4g}"
            if finite(lo, hi):
                tip += f" [{lo:.4g}, {hi:.4g}]"
                canvas.line(scale(lo), y, scale(hi), y, stroke=panel.colour, width=2)
                canvas.line(scale(lo), y - 4, scale(lo), y + 4, stroke=panel.colour, width=1.5)
                canvas.line(scale(hi), y - 4, scale(hi), y + 4, stroke=panel.colour, width=1.5)
                excludes = panel.own_scale or not (lo <= reference <= hi)
            else:
                excludes = panel.own_scale
            fill = panel.colour if excludes else "#fff"
            canvas.circle(scale(est), y, 4, fill=fill, stroke=panel.colour, tooltip=tip)
    return canvas.to_svg()


# ------------------------------------------------------------------------------------ bar chart
@dataclass(frozen=True)
class BarPanel:
    """One column of a bar chart: a value (and optional interval) per row."""

    title: str
    values: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None
    xlabel: str = ""
    colour: str = PALETTE[0]


def bar_chart(labels: Sequence[str], panels: Sequence[BarPanel], *, title: str, description: str = "",
              panel_width: float = 260, shared_axis: bool = False) -> str:
    """Horizontal bars (e.g. mean |SHAP| per group), one or more panels side by side sharing the rows.

    The axis always includes zero, so bar lengths compare; each bar is labelled with its value.
    """
    frame = row_panels(labels, len(panels), title=title, description=description, panel_width=panel_width,
                       gap=64.0, right=64.0, stripes=False)
    canvas = frame.canvas

    def extent(panel: BarPanel) -> list[float]:
        return list(panel.values) + list(panel.low or []) + list(panel.high or [])

    shared = padded_domain([v for p in panels for v in extent(p)], include=(0.0,), pad=0.04) if shared_axis else None
    for j, panel in enumerate(panels):
        domain = shared or padded_domain(extent(panel), include=(0.0,), pad=0.04)
        scale = frame.panel(j, panel.title, domain, panel.xlabel, inset=0.0, grid_above=2.0)
        for i, label in enumerate(frame.rows):
            y = frame.y(i)
            value = value_at(panel.values, i)
            if not finite(value):
                canvas.text(scale(0.0) + 4, y, "n/a", size=10, fill="#999")
                continue
            x_a, x_b = sorted((scale(0.0), scale(value)))
            canvas.rect(x_a, y - 6, max(x_b - x_a, 0.5), 12, fill=panel.colour,
                        tooltip=f"{label} · {panel.title}: {value:.4g}")
            end = x_b
            lo, hi = (value_at(panel.low, i) if panel.low is not None else None,
                      value_at(panel.high, i) if panel.high is not None else None)
            if finite(lo, hi):
                canvas.line(scale(lo), y, scale(hi), y, stroke="#222", width=1.2)
                end = max(end, scale(hi))
            canvas.text(end + 4, y, f"{value:.3g}", size=10, fill="#444")
    return canvas.to_svg()


# -------------------------------------------------------------------------------------- heatmap
_VIRIDIS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725")


def _mix(a: str, b: str, t: float) -> str:
    ca = [int(a[k:k + 2], 16) for k in (1, 3, 5)]
    cb = [int(b[k:k + 2], 16) for k in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb))


def sequential_colour(t: float) -> str:
    """Viridis at ``t`` in [0, 1] (clipped), linearly interpolated between ten anchors."""
    t = min(max(t, 0.0), 1.0) * (len(_VIRIDIS) - 1)
    k = min(int(t), len(_VIRIDIS) - 2)
    return _mix(_VIRIDIS[k], _VIRIDIS[k + 1], t - k)


def heatmap(row_labels: Sequence[str], col_labels: Sequence[str], matrix: Sequence[Sequence[float]], *,
            title: str, vmin: float = 0.0, vmax: float = 1.0, value_label: str = "", description: str = "",
            cell: float = 11.0) -> str:
    """A matrix as coloured cells (rows x columns), with a colour bar.

    Cells equal to ``vmin`` are left as the background colour instead of being drawn, so a
    sparse matrix (gates are mostly off) stays small in the file.
    """
    row_labels = [str(r) for r in row_labels]
    col_labels = [str(c) for c in col_labels]
    left = max([text_width(r, 10) for r in row_labels] + [30]) + 10
    top = max([text_width(c, 9) for c in col_labels] + [20]) + 30
    plot_w, plot_h = cell * len(col_labels), cell * len(row_labels)
    width = left + plot_w + 90
    height = top + plot_h + 16
    canvas = Canvas(width, height, title=title, description=description)
    canvas.text(4, 12, title, size=12, weight="600")
    canvas.rect(left, top, plot_w, plot_h, fill=sequential_colour(0.0))
    span = (vmax - vmin) or 1.0
    for j, label in enumerate(col_labels):
        x = left + cell * (j + 0.5)
        canvas.text(x, top - 4, label, size=9, anchor="start", rotate=-90, baseline="middle")
    for i, label in enumerate(row_labels):
        y = top + cell * i
        canvas.text(left - 4, y + cell / 2, label, size=10, anchor="end")
        for j, value in enumerate(matrix[i]):
            if value is None or not math.isfinite(value):
                canvas.rect(left + cell * j, y, cell, cell, fill="#ddd", tooltip=f"{label} / {col_labels[j]}: n/a")
                continue
            if value <= vmin:
                continue
            canvas.rect(left + cell * j, y, cell, cell, fill=sequential_colour((value - vmin) / span),
                        tooltip=f"{label} / {col_labels[j]}: {value:.3g}")
    # colour bar
    bar_x, bar_h = left + plot_w + 16, min(plot_h, 120.0)
    steps = 10
    for k in range(steps):
        canvas.rect(bar_x, top + bar_h * (1 - (k + 1) / steps), 10, bar_h / steps + 0.5, fill=sequential_colour((k + 0.5) / steps))
    canvas.text(bar_x + 14, top, tick_label(vmax, span / 10), size=9)
    canvas.text(bar_x + 14, top + bar_h, tick_label(vmin, span / 10), size=9)
    if value_label:
        canvas.text(bar_x, top + bar_h + 14, value_label, size=9)
    return canvas.to_svg()


# ----------------------------------------------------------------------------------- line chart
@dataclass(frozen=True)
class Series:
    """One curve of a line chart."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    colour: str = PALETTE[0]
    dash: str | None = None
    width: float = 1.5


@dataclass(frozen=True)
class LinePanel:
    title: str
    series: Sequence[Series] = field(default_factory=tuple)


def line_chart(panels: Sequence[LinePanel], *, title: str, xlabel: str = "", ylabel: str = "",
               ylim: tuple[float, float] | None = None, xlim: tuple[float, float] | None = None,
               description: str = "", panel_width: float = 240, panel_height: float = 220) -> str:
    """Curves in one or more panels side by side, sharing both axes, each panel with its legend."""
    all_series = [s for p in panels for s in p.series]
    xs = [v for s in all_series for v in s.x]
    ys = [v for s in all_series for v in s.y]
    xd = xlim or padded_domain(xs, pad=0.0)
    yd = ylim or padded_domain(ys)
    legend_w = max([text_width(s.name, 10) for s in all_series] + [30]) + 26
    left, top, gap = 52.0, 40.0, 18.0
    width = left + len(panels) * (panel_width + legend_w + gap) + 4
    height = top + panel_height + 44
    canvas = Canvas(width, height, title=title, description=description)
    canvas.text(left, 12, title, size=12, weight="600")
    for j, panel in enumerate(panels):
        x0 = left + j * (panel_width + legend_w + gap)
        xscale = LinearScale(xd, (x0, x0 + panel_width))
        yscale = LinearScale(yd, (top + panel_height, top))
        canvas.text(x0 + panel_width / 2, 28, panel.title, size=11, weight="600", anchor="middle")
        y_axis(canvas, yscale, x0, x0 + panel_width, ylabel if j == 0 else "")
        x_axis(canvas, xscale, top + panel_height, top, xlabel, grid=False)
        for k, s in enumerate(panel.series):
            points = [(xscale(a), yscale(b)) for a, b in zip(s.x, s.y) if finite(a, b)]
            if points:
                canvas.polyline(points, stroke=s.colour, width=s.width, dash=s.dash, tooltip=s.name)
            ly = top + 6 + 14 * k
            canvas.line(x0 + panel_width + 8, ly, x0 + panel_width + 22, ly, stroke=s.colour, width=2, dash=s.dash)
            canvas.text(x0 + panel_width + 26, ly, s.name, size=10)
    return canvas.to_svg()
