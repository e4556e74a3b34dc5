"""Figures of a study report: a value per run beside the pooled value and its interval.

One chart shape serves both study figures a reader needs: *effects per label with seed spread*
(each seed's ΔmAP as a small dot, the pooled effect as a diamond, its interval as a bar) and the
*rank-stability chart* (each seed's rank as a dot, the pooled rank as a diamond, the range of the
seeds' ranks as a bar). Labels are panels side by side on one shared axis, so they compare.
Built on :mod:`reports.svg` (plain, deterministic SVG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from reports.svg import PALETTE, Canvas, LinearScale, _at, _finite, _x_axis, padded_domain, text_width


@dataclass(frozen=True)
class SpreadPanel:
    """One label: per row the pooled value, its interval and the runs' values."""

    title: str
    centre: Sequence[float | None]
    low: Sequence[float | None]
    high: Sequence[float | None]
    runs: Sequence[Sequence[float]]
    colour: str = PALETTE[0]


def spread_plot(rows: Sequence[str], panels: Sequence[SpreadPanel], *, title: str, xlabel: str,
                reference: float | None = 0.0, description: str = "", panel_width: float = 260) -> str:
    """Rows of (pooled value, interval, one dot per run), one panel per label, shared axis."""
    rows = [str(r) for r in rows]
    row_h, top, bottom, gap = 20.0, 42.0, 44.0, 28.0
    left = max([text_width(r) for r in rows] + [40]) + 16
    width = left + len(panels) * (panel_width + gap) + 4
    height = top + row_h * max(len(rows), 1) + bottom
    canvas = Canvas(width, height, title=title, description=description)
    canvas.text(left, 12, title, size=12, weight="600")
    values = [v for p in panels for seq in (p.centre, p.low, p.high) for v in seq if v is not None]
    values += [v for p in panels for run in p.runs for v in run]
    domain = padded_domain(values, include=() if reference is None else (reference,))
    for i, label in enumerate(rows):
        y = top + row_h * (i + 0.5)
        if i % 2 == 0:
            canvas.rect(0, y - row_h / 2, width, row_h, fill="#f7f7f7")
        canvas.text(left - 8, y, label, anchor="end")
    for j, panel in enumerate(panels):
        x0 = left + j * (panel_width + gap)
        scale = LinearScale(domain, (x0 + 6, x0 + panel_width - 6))
        canvas.text(x0 + panel_width / 2, 30, panel.title, size=11, weight="600", anchor="middle")
        _x_axis(canvas, scale, top + row_h * len(rows) + 2, top - 4, xlabel)
        if reference is not None and domain[0] <= reference <= domain[1]:
            canvas.line(scale(reference), top - 4, scale(reference), top + row_h * len(rows), stroke="#999", dash="3,3")
        for i, label in enumerate(rows):
            y = top + row_h * (i + 0.5)
            centre, lo, hi = _at(panel.centre, i), _at(panel.low, i), _at(panel.high, i)
            if _finite(lo, hi):
                canvas.line(scale(lo), y, scale(hi), y, stroke=panel.colour, width=2,
                            tooltip=f"{label} · {panel.title}: [{lo:.4g}, {hi:.4g}]")
            runs = panel.runs[i] if i < len(panel.runs) else ()
            for k, v in enumerate(runs):
                if _finite(v):
                    canvas.circle(scale(v), y + (k % 3 - 1) * 3.0, 2.2, fill="#fff", stroke="#333",
                                  tooltip=f"{label} · {panel.title} · run {k + 1}: {v:.4g}")
            if not _finite(centre):
                canvas.text(x0 + panel_width / 2, y, "n/a", size=10, anchor="middle", fill="#999")
                continue
            x = scale(centre)
            canvas.polyline([(x, y - 5), (x + 5, y), (x, y + 5), (x - 5, y), (x, y - 5)], stroke=panel.colour,
                            width=1.5, tooltip=f"{label} · {panel.title}: {centre:.4g}")
    return canvas.to_svg()
