"""Figures of a study report: a value per run beside the pooled value and its interval.

One chart shape serves both study figures a reader needs: *effects per label with seed spread*
(each seed's ΔmAP as a small dot, the pooled effect as a diamond, its interval as a bar) and the
*rank-stability chart* (each seed's rank as a dot, the pooled rank as a diamond, the range of the
seeds' ranks as a bar). Labels are panels side by side on one shared axis, so they compare.
Built on the row-panel frame of :mod:`reports.figures.svg` (plain, deterministic SVG), as the forest plots are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from reports.figures.svg import PALETTE, finite, padded_domain, row_panels, value_at


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
    frame = row_panels(rows, len(panels), title=title, description=description, panel_width=panel_width,
                       gap=28.0, right=32.0, stripes=True)
    canvas = frame.canvas
    values = [v for p in panels for seq in (p.centre, p.low, p.high) for v in seq if v is not None]
    values += [v for p in panels for run in p.runs for v in run]
    domain = padded_domain(values, include=() if reference is None else (reference,))
    for j, panel in enumerate(panels):
        scale = frame.panel(j, panel.title, domain, xlabel, reference=reference)
        for i, label in enumerate(frame.rows):
            y = frame.y(i)
            centre, lo, hi = value_at(panel.centre, i), value_at(panel.low, i), value_at(panel.high, i)
            if finite(lo, hi):
                canvas.line(scale(lo), y, scale(hi), y, stroke=panel.colour, width=2,
                            tooltip=f"{label} · {panel.title}: [{lo:.4g}, {hi:.4g}]")
            runs = panel.runs[i] if i < len(panel.runs) else ()
            for k, v in enumerate(runs):
                if finite(v):
                    canvas.circle(scale(v), y + (k % 3 - 1) * 3.0, 2.2, fill="#fff", stroke="#333",
                                  tooltip=f"{label} · {panel.title} · run {k + 1}: {v:.4g}")
            if not finite(centre):
                canvas.text(frame.x0(j) + panel_width / 2, y, "n/a", size=10, anchor="middle", fill="#999")
                continue
            x = scale(centre)
            canvas.polyline([(x, y - 5), (x + 5, y), (x, y + 5), (x - 5, y), (x, y - 5)], stroke=panel.colour,
                            width=1.5, tooltip=f"{label} · {panel.title}: {centre:.4g}")
    return canvas.to_svg()
