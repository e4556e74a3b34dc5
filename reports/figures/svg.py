"""The SVG primitives of the report's figures: palette, scales, the canvas, axes, and the frame
shared by every chart with one row per label and panels side by side (:func:`row_panels`).
The charts themselves are in :mod:`reports.figures.charts` and :mod:`reports.figures.study`.

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
from dataclasses import dataclass
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


def x_axis(canvas: Canvas, scale: LinearScale, y: float, top: float, label: str, *, grid: bool = True) -> None:
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


def y_axis(canvas: Canvas, scale: LinearScale, x: float, right: float, label: str) -> None:
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


def finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(float(v)) for v in values)


def value_at(values: Sequence[float], i: int) -> float | None:
    try:
        value = values[i]
    except IndexError:
        return None
    return None if value is None else float(value)


# ------------------------------------------------------------------------------ row-panel frame
ROW_HEIGHT, ROWS_TOP, ROWS_BOTTOM = 20.0, 42.0, 44.0


@dataclass
class RowPanels:
    """A chart's frame: one row per label, panels side by side sharing the rows.

    Made by :func:`row_panels`, which draws the title and the row labels; :meth:`panel` draws
    each panel's title, x axis and reference line and returns its scale.
    """

    canvas: Canvas
    rows: list[str]
    left: float
    panel_width: float
    gap: float

    def y(self, i: int) -> float:
        """The centre line of row ``i``."""
        return ROWS_TOP + ROW_HEIGHT * (i + 0.5)

    def x0(self, j: int) -> float:
        """The left edge of panel ``j``."""
        return self.left + j * (self.panel_width + self.gap)

    def panel(self, j: int, title: str, domain: tuple[float, float], xlabel: str, *, inset: float = 6.0,
              grid_above: float = 4.0, reference: float | None = None) -> LinearScale:
        """Draw panel ``j``'s title, x axis (grid from ``grid_above`` over the first row) and, when
        ``reference`` lies in the domain, a dashed line at it; return the panel's scale."""
        x0, bottom = self.x0(j), ROWS_TOP + ROW_HEIGHT * len(self.rows)
        scale = LinearScale(domain, (x0 + inset, x0 + self.panel_width - inset))
        self.canvas.text(x0 + self.panel_width / 2, 30, title, size=11, weight="600", anchor="middle")
        x_axis(self.canvas, scale, bottom + 2, ROWS_TOP - grid_above, xlabel)
        if reference is not None and scale.domain[0] <= reference <= scale.domain[1]:
            self.canvas.line(scale(reference), ROWS_TOP - 4, scale(reference), bottom, stroke="#999", dash="3,3")
        return scale


def row_panels(rows: Sequence[str], n_panels: int, *, title: str, description: str, panel_width: float, gap: float,
               right: float, stripes: bool) -> RowPanels:
    """The canvas of a row-panel chart with its title and row labels (on alternate grey stripes when
    ``stripes``); ``right`` is the margin after the last panel."""
    rows = [str(row) for row in rows]
    left = max([text_width(row) for row in rows] + [40]) + 16
    width = left + n_panels * panel_width + (n_panels - 1) * gap + right
    height = ROWS_TOP + ROW_HEIGHT * max(len(rows), 1) + ROWS_BOTTOM
    canvas = Canvas(width, height, title=title, description=description)
    canvas.text(left, 12, title, size=12, weight="600")
    frame = RowPanels(canvas, rows, left, panel_width, gap)
    for i, row in enumerate(rows):
        if stripes and i % 2 == 0:
            canvas.rect(0, frame.y(i) - ROW_HEIGHT / 2, width, ROW_HEIGHT, fill="#f7f7f7")
        canvas.text(left - 8, frame.y(i), row, anchor="end")
    return frame
