"""A small SVG figure library for reports: forest plots, bar charts, heatmaps, line charts.

Why our own: the report must be one self-contained, byte-deterministic HTML file, and the
figures a reader needs are few and simple. matplotlib's SVG backend embeds ids, dates and
font glyphs that change between versions and makes a 3 MB file out of a heatmap; a few hundred
lines of plain SVG do the job with no dependency.

Everything here is pure string building. Coordinates are written with one decimal, the same
input always gives the same bytes, and every mark carries a ``<title>`` child so that hovering
shows the exact value without any script.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape as _html_escape
from typing import Sequence

# Okabe-Ito first (colour-blind safe), then muted extras for schemas with many groups.
PALETTE = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
    "#7F3C8D", "#11A579", "#3969AC", "#F2B701", "#E73F74", "#80BA5A", "#E68310", "#008695",
    "#CF1C90", "#4B4B8F", "#A5AA99", "#855C75",
)

FONT_SIZE = 11
CHAR_WIDTH = 6.3  # average advance of an 11 px sans-serif glyph; used only for layout


def colour(i: int) -> str:
    """The ``i``-th categorical colour (cycles)."""
    return PALETTE[i % len(PALETTE)]


def esc(text: object) -> str:
    return _html_escape(str(text), quote=True)


def num(x: float) -> str:
    """A coordinate with at most one decimal and no trailing zeros (deterministic, compact)."""
    text = f"{x:.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return "0" if text == "-0" else text


def text_width(text: str, size: float = FONT_SIZE) -> float:
    return len(text) * CHAR_WIDTH * size / FONT_SIZE


def tick_label(value: float, step: float) -> str:
    """Tick text with as many decimals as the tick step needs."""
    decimals = max(0, -int(math.floor(math.log10(step)))) if step > 0 else 0
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick positions covering ``[low, high]`` (1, 2, 2.5, 5 x 10^k steps)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks, k = [], 0
    while first + k * step <= high + step * 1e-9:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks


def padded_domain(values: Sequence[float], include: Sequence[float] = (), pad: float = 0.06) -> tuple[float, float]:
    """A domain covering every finite value (and ``include``), widened by ``pad`` on each side."""
    finite = [float(v) for v in list(values) + list(include) if v is not None and math.isfinite(float(v))]
    if not finite:
        return (0.0, 1.0)
    low, high = min(finite), max(finite)
    if high == low:
        span = abs(high) * 0.1 or 1.0
        return (low - span, high + span)
    span = high - low
    return (low - pad * span, high + pad * span)


@dataclass(frozen=True)
class LinearScale:
    """Maps a data interval onto a pixel interval."""

    domain: tuple[float, float]
    pixels: tuple[float, float]

    def __call__(self, value: float) -> float:
        d0, d1 = self.domain
        p0, p1 = self.pixels
        return p0 + (value - d0) / (d1 - d0) * (p1 - p0)

    def ticks(self, count: int = 5) -> list[float]:
        return nice_ticks(min(self.domain), max(self.domain), count)


class Canvas:
    """An SVG document under construction; marks are appended in drawing order."""

    def __init__(self, width: float, height: float, *, title: str, description: str = "") -> None:
        self.width = width
        self.height = height
        self.title = title
        self.description = description
        self._parts: list[str] = []

    @staticmethod
    def _tooltip(tooltip: str | None) -> str:
        return f"<title>{esc(tooltip)}</title>" if tooltip else ""

    def _element(self, tag: str, attrs: str, tooltip: str | None) -> None:
        if tooltip:
            self._parts.append(f"<{tag} {attrs}>{self._tooltip(tooltip)}</{tag}>")
        else:
            self._parts.append(f"<{tag} {attrs}/>")

    def line(self, x1: float, y1: float, x2: float, y2: float, *, stroke: str = "#444", width: float = 1,
             dash: str | None = None, tooltip: str | None = None) -> None:
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self._element(
            "line",
            f'x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" stroke="{stroke}" stroke-width="{num(width)}"{extra}',
            tooltip,
        )

    def rect(self, x: float, y: float, w: float, h: float, *, fill: str, stroke: str | None = None,
             tooltip: str | None = None) -> None:
        extra = f' stroke="{stroke}"' if stroke else ""
        self._element("rect", f'x="{num(x)}" y="{num(y)}" width="{num(w)}" height="{num(h)}" fill="{fill}"{extra}', tooltip)

    def circle(self, cx: float, cy: float, r: float, *, fill: str, stroke: str | None = None,
               tooltip: str | None = None) -> None:
        extra = f' stroke="{stroke}" stroke-width="1.5"' if stroke else ""
        self._element("circle", f'cx="{num(cx)}" cy="{num(cy)}" r="{num(r)}" fill="{fill}"{extra}', tooltip)

    def polyline(self, points: Sequence[tuple[float, float]], *, stroke: str, width: float = 1.5,
                 dash: str | None = None, tooltip: str | None = None) -> None:
        coords = " ".join(f"{num(x)},{num(y)}" for x, y in points)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self._element(
            "polyline", f'points="{coords}" fill="none" stroke="{stroke}" stroke-width="{num(width)}"{extra}', tooltip
        )

    def text(self, x: float, y: float, content: str, *, size: float = FONT_SIZE, anchor: str = "start",
             weight: str | None = None, fill: str = "#222", rotate: float | None = None,
             baseline: str = "middle") -> None:
        attrs = f'x="{num(x)}" y="{num(y)}" font-size="{num(size)}" text-anchor="{anchor}" dominant-baseline="{baseline}" fill="{fill}"'
        if weight:
            attrs += f' font-weight="{weight}"'
        if rotate is not None:
            attrs += f' transform="rotate({num(rotate)} {num(x)} {num(y)})"'
        self._parts.append(f"<text {attrs}>{esc(content)}</text>")

    def to_svg(self) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="figure" role="img" width="{num(self.width)}" '
            f'height="{num(self.height)}" viewBox="0 0 {num(self.width)} {num(self.height)}" '
            f'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">'
        )
        desc = f"<desc>{esc(self.description)}</desc>" if self.description else ""
        return head + f"<title>{esc(self.title)}</title>" + desc + "".join(self._parts) + "</svg>"


def _x_axis(canvas: Canvas, scale: LinearScale, y: float, top: float, label: str, *, grid: bool = True) -> None:
    ticks = scale.ticks()
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    canvas.line(scale.pixels[0], y, scale.pixels[1], y, stroke="#888")
    for t in ticks:
        x = scale(t)
        if grid:
            canvas.line(x, top, x, y, stroke="#eee")
        canvas.line(x, y, x, y + 4, stroke="#888")
        canvas.text(x, y + 13, tick_label(t, step), size=10, anchor="middle", fill="#555")
    if label:
        canvas.text((scale.pixels[0] + scale.pixels[1]) / 2, y + 29, label, size=11, anchor="middle")


def _y_axis(canvas: Canvas, scale: LinearScale, x: float, right: float, label: str) -> None:
    ticks = scale.ticks()
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    canvas.line(x, scale.pixels[0], x, scale.pixels[1], stroke="#888")
    for t in ticks:
        y = scale(t)
        canvas.line(x, y, right, y, stroke="#eee")
        canvas.text(x - 5, y, tick_label(t, step), size=10, anchor="end", fill="#555")
    if label:
        mid = (scale.pixels[0] + scale.pixels[1]) / 2
        canvas.text(x - 38, mid, label, size=11, anchor="middle", rotate=-90)


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(float(v)) for v in values)


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


def forest_plot(labels: Sequence[str], panels: Sequence[ForestPanel], *, title: str, reference: float = 0.0,
                shared_axis: bool = True, description: str = "", panel_width: float = 300) -> str:
    """Estimates with intervals, one row per label, one or more panels side by side.

    Panels that share an axis let a reader compare magnitudes across them (drop versus
    counterfactual). A filled marker means the interval excludes ``reference``; a hollow one
    means it does not; a row without a finite estimate says ``n/a``.
    """
    labels = [str(label) for label in labels]
    row_h, top, bottom = 20.0, 42.0, 44.0
    left = max([text_width(label) for label in labels] + [40]) + 16
    gap = 28.0
    width = left + len(panels) * panel_width + (len(panels) - 1) * gap + 16
    height = top + row_h * max(len(labels), 1) + bottom
    canvas = Canvas(width, height, title=title, description=description)
    canvas.text(left, 12, title, size=12, weight="600", anchor="start")

    def domain_of(panel_list: Sequence[ForestPanel]) -> tuple[float, float]:
        values = [v for p in panel_list for v in list(p.low) + list(p.high) + list(p.estimate)]
        return padded_domain(values, include=(reference,))

    shared = domain_of(panels) if shared_axis else None
    for i, label in enumerate(labels):
        y = top + row_h * (i + 0.5)
        if i % 2 == 0:
            canvas.rect(0, y - row_h / 2, width, row_h, fill="#f7f7f7")
        canvas.text(left - 8, y, label, anchor="end")
    for j, panel in enumerate(panels):
        x0 = left + j * (panel_width + gap)
        scale = LinearScale(shared or domain_of([panel]), (x0 + 6, x0 + panel_width - 6))
        canvas.text(x0 + panel_width / 2, 30, panel.title, size=11, weight="600", anchor="middle")
        _x_axis(canvas, scale, top + row_h * len(labels) + 2, top - 4, panel.xlabel)
        if scale.domain[0] <= reference <= scale.domain[1]:
            canvas.line(scale(reference), top - 4, scale(reference), top + row_h * len(labels), stroke="#999", dash="3,3")
        for i, label in enumerate(labels):
            y = top + row_h * (i + 0.5)
            est, lo, hi = _at(panel.estimate, i), _at(panel.low, i), _at(panel.high, i)
            if not _finite(est):
                canvas.text(x0 + panel_width / 2, y, "n/a", size=10, anchor="middle", fill="#999")
                continue
            tip = f"{label} · {panel.title}: {est:.4g}"
            if _finite(lo, hi):
                tip += f" [{lo:.4g}, {hi:.4g}]"
                canvas.line(scale(lo), y, scale(hi), y, stroke=panel.colour, width=2)
                canvas.line(scale(lo), y - 4, scale(lo), y + 4, stroke=panel.colour, width=1.5)
                canvas.line(scale(hi), y - 4, scale(hi), y + 4, stroke=panel.colour, width=1.5)
                excludes = not (lo <= reference <= hi)
            else:
                excludes = False
            fill = panel.colour if excludes else "#fff"
            canvas.circle(scale(est), y, 4, fill=fill, stroke=panel.colour, tooltip=tip)
    return canvas.to_svg()


def _at(values: Sequence[float], i: int) -> float | None:
    try:
        value = values[i]
    except IndexError:
        return None
    return None if value is None else float(value)


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
    labels = [str(label) for label in labels]
    row_h, top, bottom, gap = 20.0, 42.0, 44.0, 64.0
    left = max([text_width(label) for label in labels] + [40]) + 16
    width = left + len(panels) * (panel_width + gap)
    height = top + row_h * max(len(labels), 1) + bottom
    canvas = Canvas(width, height, title=title, description=description)
    canvas.text(left, 12, title, size=12, weight="600")

    def extent(panel: BarPanel) -> list[float]:
        return list(panel.values) + list(panel.low or []) + list(panel.high or [])

    shared = padded_domain([v for p in panels for v in extent(p)], include=(0.0,), pad=0.04) if shared_axis else None
    for i, label in enumerate(labels):
        canvas.text(left - 8, top + row_h * (i + 0.5), label, anchor="end")
    for j, panel in enumerate(panels):
        x0 = left + j * (panel_width + gap)
        lo_d, hi_d = shared or padded_domain(extent(panel), include=(0.0,), pad=0.04)
        scale = LinearScale((lo_d, hi_d), (x0, x0 + panel_width))
        canvas.text(x0 + panel_width / 2, 30, panel.title, size=11, weight="600", anchor="middle")
        _x_axis(canvas, scale, top + row_h * len(labels) + 2, top - 2, panel.xlabel)
        for i, label in enumerate(labels):
            y = top + row_h * (i + 0.5)
            value = _at(panel.values, i)
            if not _finite(value):
                canvas.text(scale(0.0) + 4, y, "n/a", size=10, fill="#999")
                continue
            x_a, x_b = sorted((scale(0.0), scale(value)))
            canvas.rect(x_a, y - 6, max(x_b - x_a, 0.5), 12, fill=panel.colour,
                        tooltip=f"{label} · {panel.title}: {value:.4g}")
            end = x_b
            lo, hi = (_at(panel.low, i) if panel.low is not None else None,
                      _at(panel.high, i) if panel.high is not None else None)
            if _finite(lo, hi):
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
        _y_axis(canvas, yscale, x0, x0 + panel_width, ylabel if j == 0 else "")
        _x_axis(canvas, xscale, top + panel_height, top, xlabel, grid=False)
        for k, s in enumerate(panel.series):
            points = [(xscale(a), yscale(b)) for a, b in zip(s.x, s.y) if _finite(a, b)]
            if points:
                canvas.polyline(points, stroke=s.colour, width=s.width, dash=s.dash, tooltip=s.name)
            ly = top + 6 + 14 * k
            canvas.line(x0 + panel_width + 8, ly, x0 + panel_width + 22, ly, stroke=s.colour, width=2, dash=s.dash)
            canvas.text(x0 + panel_width + 26, ly, s.name, size=10)
    return canvas.to_svg()
