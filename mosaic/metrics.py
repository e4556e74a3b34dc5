"""Person re-identification retrieval metrics: CMC, mAP and mINP, with every per-query value kept.

The protocol is the one every public toolkit reports (Market-1501 / DukeMTMC-reID, no re-ranking):

* per query, the gallery is ordered by distance with a **stable** sort, so equal distances keep
  their gallery order;
* gallery images with the **same pid and the same camera** as the query are removed (other
  identities seen by the same camera stay, as negatives);
* a query with no true match left is **not valid** and is skipped by every aggregate;
* CMC is capped at 1 and cut at ``max_rank``; AP is non-interpolated (mean of the precision at
  each true match); INP = (number of true matches) / (rank of the hardest true match).

Only the ranks of the true matches are needed for all of these, so the numpy path never sorts a
gallery. For each true match it counts the gallery images that precede it in the stable order
(distance smaller, or equal with a smaller gallery index): a handful of vectorised comparisons
per query instead of a 16k-element sort, which makes a Market-sized evaluation an order of
magnitude faster than the per-query loop of the public toolkits while giving identical ranks.

Torch tensors (CPU or CUDA) are evaluated on their own device with a stable ``torch.sort``; only
the small per-query results come back to the host. This module imports torch only when it is
handed tensors: the torch-free analysis layer imports it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mosaic.errors import MosaicError

__all__ = ["Evaluation", "evaluate"]

# Working memory a chunk of queries may use (bytes). Chunks bound the temporary arrays, not the
# result: per-query outputs are allocated once for all queries.
DEFAULT_MEMORY_BUDGET = 256 * 2**20
# The comparison buffer of one block of queries should stay cache-sized; measured on a 2-core
# dev machine, blocks of a few queries beat both single queries and large blocks.
_BLOCK_BYTES = 512 * 2**10
# Comparison results are summed eight booleans at a time through uint64 words; a byte lane
# overflows after 255 additions, so rows are padded to a multiple of 8 * 255 columns.
_SWAR_WORDS = 255
_SWAR_COLUMNS = 8 * _SWAR_WORDS


@dataclass(frozen=True)
class Evaluation:
    """Retrieval results of one distance matrix: per-query values and their aggregates.

    Per-query arrays have one entry per query row of the distance matrix, in its order.
    Aggregates are taken over valid queries only; when no query is valid they are NaN and
    ``n_valid`` is 0.

    Attributes:
        ap: float64 average precision, NaN for invalid queries.
        inp: float64 inverse negative penalty, NaN for invalid queries.
        first_match_rank: int64 1-based rank of the first true match in the filtered ranked
            list, -1 for invalid queries.
        valid: bool, the query has at least one true match in another camera.
        cmc: float64 (max_rank,), fraction of valid queries with a true match within rank k+1.
        mAP, mINP: means of ``ap`` and ``inp`` over valid queries.
        n_valid: number of valid queries.
        max_rank: length of ``cmc``.
        topk_index: int64 (Q, k) gallery indices (original gallery order) of the k nearest kept
            gallery images, nearest first; -1 pads rows with fewer kept images. None when
            ``topk`` was 0.
        topk_distance: (Q, k) their distances, ``inf`` where padded. None when ``topk`` was 0.
    """

    ap: np.ndarray
    inp: np.ndarray
    first_match_rank: np.ndarray
    valid: np.ndarray
    cmc: np.ndarray
    mAP: float
    mINP: float
    n_valid: int
    max_rank: int
    topk_index: np.ndarray | None = field(default=None, repr=False)
    topk_distance: np.ndarray | None = field(default=None, repr=False)

    @property
    def rank1(self) -> np.ndarray:
        """bool per query: the nearest kept gallery image is a true match (False when invalid)."""
        return self.first_match_rank == 1

    @property
    def n_query(self) -> int:
        return int(self.valid.shape[0])

    def rank(self, k: int) -> float:
        """CMC at rank ``k`` (1-based), e.g. ``rank(1)`` is the Rank-1 accuracy."""
        if not 1 <= k <= self.max_rank:
            raise MosaicError(f"rank {k} is outside the evaluated CMC: use 1..{self.max_rank} or raise max_rank")
        return float(self.cmc[k - 1])

    def summary(self, ranks: tuple[int, ...] = (1, 5, 10, 20)) -> dict[str, float]:
        """mAP, mINP and CMC at the usual ranks, as plain floats (the numbers papers report)."""
        out = {"mAP": self.mAP, "mINP": self.mINP}
        out.update({f"rank{k}": self.rank(k) for k in ranks if k <= self.max_rank})
        out.update({"n_valid": float(self.n_valid), "n_query": float(self.n_query)})
        return out


# ------------------------------------------------------------------------------------ inputs
def _is_torch_tensor(x: Any) -> bool:
    # Checked by module name so that numpy callers never import torch.
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def _as_label_array(values: Any, name: str, length: int | None, expected: str) -> np.ndarray:
    if _is_torch_tensor(values):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise MosaicError(f"{name} must be one-dimensional, got shape {arr.shape}: pass one label per {expected}")
    if length is not None and arr.shape[0] != length:
        raise MosaicError(
            f"{name} has {arr.shape[0]} entries but the distance matrix has {length} {expected}s: "
            "pass one label per row (queries) or column (gallery)"
        )
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        elif arr.dtype.kind == "f" and not arr.size:
            arr = arr.astype(np.int64)
        else:
            raise MosaicError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_settings(max_rank: int, topk: int, chunk_size: int | None) -> None:
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise MosaicError(f"max_rank must be a positive integer, got {max_rank!r}")
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 0:
        raise MosaicError(f"topk must be a non-negative integer, got {topk!r}")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise MosaicError(f"chunk_size must be a positive integer or None (automatic), got {chunk_size!r}")


def _chunk_rows(n_gallery: int, chunk_size: int | None, bytes_per_cell: int) -> int:
    if chunk_size is not None:
        return int(chunk_size)
    return max(1, DEFAULT_MEMORY_BUDGET // max(1, n_gallery * bytes_per_cell))


# ------------------------------------------------------------------------------------ public
def evaluate(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    topk: int = 0,
    chunk_size: int | None = None,
) -> Evaluation:
    """Evaluate a query x gallery distance matrix with the standard ReID protocol.

    Args:
        distmat: (Q, G) distances, smaller is closer; a numpy array or a torch tensor (CPU or
            CUDA; evaluated on its device). NaN is rejected; +-inf is allowed.
        q_pids, g_pids: integer identity labels of the Q queries and G gallery images
            (distractors keep their own label, e.g. 0, and are never a true match of a query
            whose pid differs).
        q_camids, g_camids: integer camera labels.
        max_rank: length of the CMC curve. Unlike some toolkits it is not shortened when the
            gallery is smaller: ranks past the gallery size repeat the last value.
        topk: also return the indices and distances of the ``topk`` nearest kept gallery images
            of every query (0: do not).
        chunk_size: queries processed together; None picks it from a fixed memory budget
            (about 256 MiB of temporaries whatever the gallery size).

    Returns:
        An :class:`Evaluation`. If no query is valid, its aggregates are NaN, ``n_valid`` is 0
        and a ``RuntimeWarning`` says so.

    Raises:
        MosaicError: on shapes or lengths that do not match, NaN distances or bad settings.
    """
    _check_settings(max_rank, topk, chunk_size)
    if _is_torch_tensor(distmat):
        if distmat.ndim != 2:
            raise MosaicError(f"distmat must be a (queries, gallery) matrix, got shape {tuple(distmat.shape)}")
        n_query, n_gallery = (int(s) for s in distmat.shape)
    else:
        distmat = np.asarray(distmat)
        if distmat.ndim != 2:
            raise MosaicError(f"distmat must be a (queries, gallery) matrix, got shape {distmat.shape}")
        if distmat.dtype.kind not in "fiub":
            raise MosaicError(f"distmat must hold real numbers, got dtype {distmat.dtype}")
        if distmat.dtype.kind != "f":
            distmat = distmat.astype(np.float64)
        n_query, n_gallery = distmat.shape
    q_pids = _as_label_array(q_pids, "q_pids", n_query, "query")
    q_camids = _as_label_array(q_camids, "q_camids", n_query, "query")
    g_pids = _as_label_array(g_pids, "g_pids", n_gallery, "gallery image")
    g_camids = _as_label_array(g_camids, "g_camids", n_gallery, "gallery image")
    if n_gallery == 0:
        raise MosaicError("the gallery is empty: evaluate needs at least one gallery image")

    if _is_torch_tensor(distmat):
        per_query = _evaluate_torch(distmat, q_pids, g_pids, q_camids, g_camids, topk, chunk_size)
    else:
        # min propagates NaN and, unlike isnan(...).any(), allocates nothing the size of distmat.
        if distmat.size and np.isnan(distmat.min()):
            rows = np.nonzero(np.isnan(distmat).any(axis=1))[0]
            raise MosaicError(
                f"distmat holds NaN in {rows.size} query row(s) (first: {rows[0]}): "
                "check the features for NaN/inf before computing distances"
            )
        per_query = _evaluate_numpy(distmat, q_pids, g_pids, q_camids, g_camids, topk, chunk_size)
    return _aggregate(*per_query, max_rank=int(max_rank))


def _aggregate(
    ap: np.ndarray,
    inp: np.ndarray,
    first: np.ndarray,
    topk_index: np.ndarray | None,
    topk_distance: np.ndarray | None,
    *,
    max_rank: int,
) -> Evaluation:
    valid = first > 0
    n_valid = int(valid.sum())
    if n_valid:
        # CMC capped at 1 is exactly "first true match within rank k", averaged over valid queries.
        hits = np.bincount(np.minimum(first[valid], max_rank + 1) - 1, minlength=max_rank + 1)[:max_rank]
        cmc = np.cumsum(hits) / n_valid
        m_ap, m_inp = float(ap[valid].mean()), float(inp[valid].mean())
    else:
        warnings.warn(
            "no valid query: no query has a true match in another camera, so mAP, mINP and CMC are NaN; "
            "check that query and gallery pids/camids come from the same dataset",
            RuntimeWarning,
            stacklevel=3,
        )
        cmc = np.full(max_rank, np.nan)
        m_ap = m_inp = float("nan")
    return Evaluation(
        ap=ap,
        inp=inp,
        first_match_rank=first,
        valid=valid,
        cmc=cmc.astype(np.float64),
        mAP=m_ap,
        mINP=m_inp,
        n_valid=n_valid,
        max_rank=max_rank,
        topk_index=topk_index,
        topk_distance=topk_distance,
    )


def _metrics_from_ranks(
    n_query: int, rows: np.ndarray, within: np.ndarray, ranks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP, INP and first-match rank from the 1-based ranks of each query's true matches.

    ``rows`` / ``within`` / ``ranks`` list every true match: its query, its position among the
    query's true matches (0 = nearest) and its rank in the filtered list, sorted by query then
    position.
    """
    n_true = np.bincount(rows, minlength=n_query)
    ap = np.full(n_query, np.nan)
    inp = np.full(n_query, np.nan)
    first = np.full(n_query, -1, dtype=np.int64)
    has = n_true > 0
    precision = (within + 1) / ranks
    ap[has] = np.bincount(rows, weights=precision, minlength=n_query)[has] / n_true[has]
    starts = np.cumsum(n_true) - n_true
    first[has] = ranks[starts[has]]
    last_rank = ranks[starts[has] + n_true[has] - 1]
    inp[has] = n_true[has] / last_rank
    return ap, inp, first


# ------------------------------------------------------------------------------------- numpy
@dataclass(frozen=True)
class _PidIndex:
    """Gallery indices grouped by pid, so a query's same-pid images are found without a scan."""

    order: np.ndarray  # gallery indices sorted by pid, ascending index within a pid
    pids: np.ndarray  # distinct gallery pids
    starts: np.ndarray
    counts: np.ndarray

    @classmethod
    def build(cls, g_pids: np.ndarray) -> "_PidIndex":
        order = np.argsort(g_pids, kind="stable")
        pids, starts, counts = np.unique(g_pids[order], return_index=True, return_counts=True)
        return cls(order, pids, starts, counts)

    def same_pid_pairs(self, q_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query position, gallery index) of every same-pid pair, by query then gallery index."""
        pos = np.searchsorted(self.pids, q_pids)
        pos_c = np.minimum(pos, len(self.pids) - 1)
        found = (pos < len(self.pids)) & (self.pids[pos_c] == q_pids)
        n = np.where(found, self.counts[pos_c], 0)
        rows = np.repeat(np.arange(q_pids.shape[0]), n)
        offset = np.arange(rows.shape[0]) - np.repeat(np.cumsum(n) - n, n)
        return rows, self.order[np.repeat(self.starts[pos_c], n) + offset]


def _evaluate_numpy(D, q_pids, g_pids, q_camids, g_camids, topk, chunk_size):
    n_query, n_gallery = D.shape
    ap = np.full(n_query, np.nan)
    inp = np.full(n_query, np.nan)
    first = np.full(n_query, -1, dtype=np.int64)
    topk_index = np.full((n_query, topk), -1, dtype=np.int64) if topk else None
    topk_distance = np.full((n_query, topk), np.inf, dtype=D.dtype) if topk else None
    pid_index = _PidIndex.build(g_pids)
    # topk's partition copies one chunk of rows; the rank counting needs far less.
    chunk = _chunk_rows(n_gallery, chunk_size, bytes_per_cell=3 * D.dtype.itemsize if topk else 1)
    for start in range(0, n_query, chunk):
        sl = slice(start, min(n_query, start + chunk))
        rows, g_idx = pid_index.same_pid_pairs(q_pids[sl])
        dist = D[sl][rows, g_idx]
        same_cam = g_camids[g_idx] == q_camids[sl][rows]
        n_rows = sl.stop - sl.start
        ranks, t_rows, within = _true_match_ranks(D[sl], rows, g_idx, dist, same_cam)
        ap[sl], inp[sl], first[sl] = _metrics_from_ranks(n_rows, t_rows, within, ranks)
        if topk:
            topk_index[sl], topk_distance[sl] = _topk_numpy(D[sl], rows, g_idx, same_cam, topk)
    return ap, inp, first, topk_index, topk_distance


def _true_match_ranks(Dc, rows, g_idx, dist, same_cam):
    """1-based filtered rank of every true match of a chunk, sorted by query then distance."""
    n_rows, n_gallery = Dc.shape
    true = ~same_cam
    t_rows, t_idx, t_dist = rows[true], g_idx[true], dist[true]
    # lexsort is stable and pairs arrive by ascending gallery index: ties keep gallery order.
    order = np.lexsort((t_dist, t_rows))
    t_rows, t_idx, t_dist = t_rows[order], t_idx[order], t_dist[order]
    n_true = np.bincount(t_rows, minlength=n_rows)
    within = np.arange(t_rows.shape[0]) - np.repeat(np.cumsum(n_true) - n_true, n_true)
    if not t_rows.size:
        return np.empty(0, np.int64), t_rows, within

    preceding = _count_preceding(Dc, t_rows, within, t_dist, t_idx, n_true)
    # Removed same-camera images never count: subtract those that precede each true match.
    x_rows, x_idx, x_dist = rows[same_cam], g_idx[same_cam], dist[same_cam]
    if x_rows.size:
        preceding -= _count_pairs_preceding(t_rows, t_dist, t_idx, x_rows, x_dist, x_idx, n_rows)
    return preceding + 1, t_rows, within


def _count_pairs_preceding(t_rows, t_dist, t_idx, x_rows, x_dist, x_idx, n_rows):
    """For each true match, how many of its query's removed images precede it (small sets)."""
    n_x = np.bincount(x_rows, minlength=n_rows)
    x_start = np.cumsum(n_x) - n_x
    reps = n_x[t_rows]
    pair_t = np.repeat(np.arange(t_rows.shape[0]), reps)
    pair_x = np.repeat(x_start[t_rows], reps) + (np.arange(pair_t.shape[0]) - np.repeat(np.cumsum(reps) - reps, reps))
    before = (x_dist[pair_x] < t_dist[pair_t]) | ((x_dist[pair_x] == t_dist[pair_t]) & (x_idx[pair_x] < t_idx[pair_t]))
    return np.bincount(pair_t, weights=before, minlength=t_rows.shape[0]).astype(np.int64)


def _count_preceding(Dc, t_rows, within, t_dist, t_idx, n_true):
    """Gallery images (all of them) that precede each true match in the stable order.

    For a true match at distance t and gallery index i, an image precedes it when its distance
    is < t, or == t with a smaller index. The counts of ``d < t`` and ``d <= t`` are taken in
    float32 (half the memory traffic of float64; rounding is monotone, so an image strictly
    below or above t in float32 is so in float64 too). When the match is the only image that
    rounds to t, ``d < t`` is the answer; the rare rows where another image rounds to the same
    float32 value (an exact tie, or a near one) are recounted exactly in the input precision.
    """
    n_rows, n_gallery = Dc.shape
    screen = np.float32 if Dc.dtype.itemsize >= 4 else Dc.dtype
    width = -(-n_gallery // _SWAR_COLUMNS) * _SWAR_COLUMNS
    thresholds = np.full((n_rows, max(1, int(n_true.max()))), -np.inf, dtype=screen)
    thresholds[t_rows, within] = t_dist
    upper = np.nextafter(thresholds, np.array(np.inf, dtype=screen))  # d <= t  <=>  d < nextafter(t)

    # Queries with similar numbers of true matches go in one block, so padding stays small.
    by_count = np.argsort(n_true, kind="stable")
    typical = max(1, int(np.median(n_true[n_true > 0])))
    block = max(1, min(64, _BLOCK_BYTES // (2 * typical * width)))
    n_lt = np.zeros(thresholds.shape, dtype=np.int64)
    n_le = np.zeros(thresholds.shape, dtype=np.int64)
    padded = np.full((block, width), np.inf, dtype=screen)  # padding never counts: inf < t is False
    scratch = np.empty(block * 2 * thresholds.shape[1] * width, dtype=bool)
    for b0 in range(0, n_rows, block):
        members = by_count[b0 : b0 + block]
        m = int(n_true[members].max())
        if m == 0:
            continue
        nb = members.shape[0]
        padded[:nb, :n_gallery] = Dc[members]
        both = np.concatenate([thresholds[members, :m], upper[members, :m]], axis=1)
        cmp = scratch[: nb * 2 * m * width].reshape(nb, 2 * m, width)
        np.less(padded[:nb, None, :], both[:, :, None], out=cmp)
        counts = _count_true(cmp)
        n_lt[members, :m] = counts[:, :m]
        n_le[members, :m] = counts[:, m:]

    lt, le = n_lt[t_rows, within], n_le[t_rows, within]
    preceding = lt.copy()
    ambiguous = np.nonzero(le - lt != 1)[0]  # another image rounds to the match's distance
    step = max(1, DEFAULT_MEMORY_BUDGET // (4 * n_gallery * Dc.dtype.itemsize))
    cols = np.arange(n_gallery)
    for s in range(0, ambiguous.size, step):
        sel = ambiguous[s : s + step]
        d = Dc[t_rows[sel]]
        t = t_dist[sel][:, None]
        before = (d < t) | ((d == t) & (cols[None, :] < t_idx[sel][:, None]))
        preceding[sel] = np.count_nonzero(before, axis=1)
    return preceding


def _count_true(cmp: np.ndarray) -> np.ndarray:
    """Number of True along the last axis (a multiple of 2040 long), eight booleans per add."""
    *lead, width = cmp.shape
    words = cmp.view(np.uint64).reshape(*lead, width // _SWAR_COLUMNS, _SWAR_WORDS)
    lanes = np.add.reduce(words, axis=-1)  # each byte lane counts at most 255 booleans
    return lanes.view(np.uint8).reshape(*lead, -1).sum(axis=-1, dtype=np.int64)


def _topk_numpy(Dc, rows, g_idx, same_cam, k):
    """Indices and distances of the k nearest kept gallery images, in stable order."""
    n_rows, n_gallery = Dc.shape
    n_removed = np.bincount(rows[same_cam], minlength=n_rows)
    kk = min(n_gallery, k + int(n_removed.max(initial=0)))
    # The kk-th smallest distance bounds the candidates; everything at or below it is gathered so
    # that ties at the boundary are resolved by gallery index, as a stable sort would.
    bound = np.partition(Dc, kk - 1, axis=1)[:, kk - 1]
    cand_r, cand_c = np.nonzero(Dc <= bound[:, None])
    rm_key = rows[same_cam] * n_gallery + g_idx[same_cam]
    keep = ~np.isin(cand_r * n_gallery + cand_c, rm_key)
    cand_r, cand_c = cand_r[keep], cand_c[keep]
    cand_d = Dc[cand_r, cand_c]
    order = np.lexsort((cand_d, cand_r))  # stable: ties stay in gallery order
    cand_r, cand_c, cand_d = cand_r[order], cand_c[order], cand_d[order]
    n_cand = np.bincount(cand_r, minlength=n_rows)
    pos = np.arange(cand_r.shape[0]) - np.repeat(np.cumsum(n_cand) - n_cand, n_cand)
    take = pos < k
    index = np.full((n_rows, k), -1, dtype=np.int64)
    distance = np.full((n_rows, k), np.inf, dtype=Dc.dtype)
    index[cand_r[take], pos[take]] = cand_c[take]
    distance[cand_r[take], pos[take]] = cand_d[take]
    return index, distance


# ------------------------------------------------------------------------------------- torch
def _evaluate_torch(D, q_pids, g_pids, q_camids, g_camids, topk, chunk_size):
    import torch

    device = D.device
    if torch.isnan(D).any():
        rows = torch.nonzero(torch.isnan(D).any(dim=1)).flatten().cpu().numpy()
        raise MosaicError(
            f"distmat holds NaN in {rows.size} query row(s) (first: {rows[0]}): "
            "check the features for NaN/inf before computing distances"
        )
    n_query, n_gallery = D.shape
    gp = torch.as_tensor(g_pids, device=device)
    gc = torch.as_tensor(g_camids, device=device)
    qp = torch.as_tensor(q_pids, device=device)
    qc = torch.as_tensor(q_camids, device=device)
    ap = np.full(n_query, np.nan)
    inp = np.full(n_query, np.nan)
    first = np.full(n_query, -1, dtype=np.int64)
    topk_index = np.full((n_query, topk), -1, dtype=np.int64) if topk else None
    np_dtype = torch.empty(0, dtype=D.dtype).numpy().dtype if D.dtype != torch.bfloat16 else np.float32
    topk_distance = np.full((n_query, topk), np.inf, dtype=np_dtype) if topk else None
    # sort keys + indices + several boolean/int masks per cell
    chunk = _chunk_rows(n_gallery, chunk_size, bytes_per_cell=40)
    positions = torch.arange(1, n_gallery + 1, device=device)
    for start in range(0, n_query, chunk):
        stop = min(n_query, start + chunk)
        dist, order = torch.sort(D[start:stop], dim=1, stable=True)
        match = gp[order] == qp[start:stop, None]
        keep = ~(match & (gc[order] == qc[start:stop, None]))
        true = match & keep
        kept_rank = torch.cumsum(keep, dim=1)
        n_true = true.sum(dim=1)
        has = n_true > 0
        hits = torch.cumsum(true, dim=1)
        precision = torch.where(
            true, hits.double() / kept_rank.clamp(min=1).double(), torch.zeros((), device=device, dtype=torch.float64)
        )
        ap_c = precision.sum(dim=1) / n_true.clamp(min=1).double()
        first_pos = torch.argmax(true.to(torch.uint8), dim=1)
        last_pos = n_gallery - 1 - torch.argmax(true.flip(1).to(torch.uint8), dim=1)
        first_c = kept_rank.gather(1, first_pos[:, None]).squeeze(1)
        last_c = kept_rank.gather(1, last_pos[:, None]).squeeze(1)
        inp_c = n_true.double() / last_c.clamp(min=1).double()
        has_np = has.cpu().numpy()
        sl = slice(start, stop)
        ap[sl] = np.where(has_np, ap_c.cpu().numpy(), np.nan)
        inp[sl] = np.where(has_np, inp_c.cpu().numpy(), np.nan)
        first[sl] = np.where(has_np, first_c.cpu().numpy(), -1)
        if topk:
            # Kept images keep their sorted order; push removed ones past the end, stably.
            slot = torch.where(keep, kept_rank, positions + n_gallery)
            pick = torch.argsort(slot, dim=1, stable=True)[:, :topk]
            n_keep = keep.sum(dim=1, keepdim=True)
            filled = torch.arange(pick.shape[1], device=device)[None, :] < n_keep
            idx = torch.where(filled, order.gather(1, pick), torch.full_like(pick, -1))
            dd = torch.where(filled, dist.gather(1, pick), torch.full_like(dist[:, :1], float("inf")))
            topk_index[sl, : idx.shape[1]] = idx.cpu().numpy()
            topk_distance[sl, : dd.shape[1]] = dd.float().cpu().numpy() if D.dtype == torch.bfloat16 else dd.cpu().numpy()
    return ap, inp, first, topk_index, topk_distance
