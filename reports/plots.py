"""The report's figures for a notebook: each draws from :class:`analysis.Results` alone and returns an
:class:`SVGFigure` that displays itself in a cell (``_repr_svg_``/``_repr_html_``).

One plotting layer: these functions call the very builders the report uses
(:mod:`reports.figures.builders`, :mod:`reports.sections.decomposition`), so a figure in a notebook is the figure
in the report. They are registered in :data:`analysis.results.FIGURES` as this module loads,
which is how ``results.plot_ranking()`` finds them without ``analysis`` importing ``reports``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.methods.decomposition import METRICS
from analysis.methods.ranking import is_population_null
from analysis.results import register_figure
from mosaic.core.errors import MosaicError
from mosaic.core.fileio import atomic_path
from mosaic.core.settings import check_choice
from reports.document import Figure
from reports.figures import builders
from reports.sections import decomposition

__all__ = ["SVGFigure", "plot_decomposition", "plot_paired", "plot_ranking"]


@dataclass(frozen=True)
class SVGFigure:
    """An SVG figure that shows itself in a notebook, with its caption; ``save(path)`` writes the SVG."""

    id: str
    caption: str
    svg: str

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_html_(self) -> str:
        from html import escape

        return f"<figure style='margin:0'>{self.svg}<figcaption><small>{escape(self.caption)}</small></figcaption></figure>"

    def __repr__(self) -> str:
        return f"<SVGFigure {self.id}: {self.caption[:120]}{'…' if len(self.caption) > 120 else ''}>"

    def save(self, path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(self.svg, encoding="utf-8")
        return path


def _figure(made: Figure | None, what: str) -> SVGFigure:
    if made is None:
        raise MosaicError(f"no {what} figure: the results lack its table (run analyze() with its method)")
    return SVGFigure(made.id, made.caption, made.svg)


def _order(results) -> list[str]:
    ranking = results.tables.get("ranking_groups")
    return builders.group_order(ranking, [] if ranking is None else list(ranking["group"].astype(str)))


def plot_ranking(results, comparison: str = "drop") -> SVGFigure:
    """The groups by consensus rank with rank intervals, beside ΔmAP (pp) with its interval (the report's
    first figure)."""
    return _figure(builders.ranking_figure(results.tables.get("ranking_groups"), results.tables.get("paired_identity"),
                                          null=is_population_null(results.tables), comparison=comparison,
                                          ci_level=results.settings.get("ci_level", 0.95)), "ranking")


# metric of plot_paired -> (table, estimate column, axis label)
PAIRED_METRICS = {"map": ("paired_identity", "delta_map", "ΔmAP (pp)"),
                  "rank1": ("paired_mcnemar", "delta_rank1", "Δrank-1 (pp)")}


def plot_paired(results, metric: str = "map") -> SVGFigure:
    """ΔmAP (``metric="map"``) or Δrank-1 (``"rank1"``) per group, drop beside counterfactual."""
    check_choice(metric, PAIRED_METRICS, "metric")
    table, estimate, label = PAIRED_METRICS[metric]
    return _figure(builders.paired_change(results.tables.get(table), estimate=estimate, metric=label,
                                         order=_order(results), fig_id=f"fig-paired-{metric}"), "paired")


def plot_decomposition(results, metric: str = "mAP") -> SVGFigure:
    """Information, capacity, misrouting and semantics per group with intervals (``metric``: mAP or rank1)."""
    check_choice(metric, METRICS, "metric")
    return _figure(decomposition.decomposition_figure(results.tables.get("decomposition"), _order(results), metric),
                   "decomposition")


for _name, _function in (("ranking", plot_ranking), ("paired", plot_paired), ("decomposition", plot_decomposition)):
    register_figure(_name, _function)
