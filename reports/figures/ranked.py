"""Ranked lists: what retrieval looks like for the queries a group's expert matters most to.

For each notable group (the first groups of the consensus ranking that have a
``drop:<group>`` condition) the queries with the largest AP loss when the group's expert is
dropped are shown with their top-k gallery images under ``oracle``, ``drop:<group>`` and, when
traced, ``counterfactual:<group>``, each marked hit / miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from reports.document import RankedItem, RankedLists, RankedQuery, RankedRow
from reports.numbers import ESTIMATE, display_value

Thumbnailer = Callable[[str], "str | None"]


@dataclass(frozen=True)
class RankedListSettings:
    n_groups: int = 3
    n_queries: int = 3
    top_k: int = 8
    baseline: str = "oracle"
    compared: tuple[str, ...] = ("drop", "counterfactual")


def _outcome(gallery_pid: int, gallery_camid: int, query_pid: int, query_camid: int) -> str:
    if gallery_pid != query_pid:
        return "miss"
    # Same identity seen by the same camera is removed before scoring (the standard protocol).
    return "ignored" if gallery_camid == query_camid else "hit"


def build_ranked_lists(trace, groups_in_order: Sequence[str], settings: RankedListSettings = RankedListSettings(),
                       thumbnail: Thumbnailer | None = None) -> RankedLists:
    """Ranked lists for the first ``settings.n_groups`` groups of ``groups_in_order``."""
    d = trace.data
    names = d.condition_name.tolist()
    caption = (
        f"Queries with the largest AP loss when a group's expert is dropped, and their top-{settings.top_k} gallery "
        f"images under each condition. Frame: green = hit, orange = miss, grey = same identity and camera "
        f"(excluded from scoring); the blue frame is the query."
    )
    if settings.baseline not in names:
        return RankedLists(id="ranked-examples", caption=f"No {settings.baseline!r} condition in the trace.", queries=[])
    base = names.index(settings.baseline)
    top_k = min(settings.top_k, d.topk_index.shape[-1])
    queries: list[RankedQuery] = []
    chosen = [g for g in groups_in_order if f"drop:{g}" in names][: settings.n_groups]
    for group in chosen:
        drop = names.index(f"drop:{group}")
        loss = np.where(d.valid, d.ap[base].astype(np.float64) - d.ap[drop].astype(np.float64), -np.inf)
        order = np.argsort(-loss, kind="stable")  # ties keep query order: deterministic
        picked = [int(q) for q in order[: settings.n_queries] if np.isfinite(loss[q])]
        for q in picked:
            rows = []
            for kind in (None, *settings.compared):
                name = settings.baseline if kind is None else f"{kind}:{group}"
                if name not in names:
                    continue
                c = names.index(name)
                items = []
                for position, g in enumerate(d.topk_index[c, q, :top_k].tolist()):
                    if g < 0:
                        continue
                    distance = float(d.topk_distance[c, q, position])
                    items.append(
                        RankedItem(
                            index=position,
                            pid=int(d.gallery_pid[g]),
                            camid=int(d.gallery_camid[g]),
                            outcome=_outcome(int(d.gallery_pid[g]), int(d.gallery_camid[g]), int(d.query_pid[q]),
                                             int(d.query_camid[q])),
                            distance=distance if np.isfinite(distance) else None,
                            thumbnail=thumbnail(str(d.gallery_path[g])) if thumbnail else None,
                        )
                    )
                rows.append(RankedRow(condition=name, ap=display_value(float(d.ap[c, q]), ESTIMATE), items=items))
            queries.append(
                RankedQuery(
                    group=group,
                    query_index=q,
                    pid=int(d.query_pid[q]),
                    camid=int(d.query_camid[q]),
                    path=str(d.query_path[q]),
                    ap_loss=display_value(float(loss[q]), ESTIMATE),
                    thumbnail=thumbnail(str(d.query_path[q])) if thumbnail else None,
                    rows=rows,
                )
            )
    return RankedLists(id="ranked-examples", caption=caption, queries=queries)
