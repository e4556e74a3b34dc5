"""The per-query work of :func:`mosaic.core.metrics.evaluate`: each true match's rank, AP, INP, the
first match and the top-k, on numpy (by counting, never sorting a gallery) or on torch (a stable
sort on the tensors' own device). Both give identical ranks; the protocol is in
:mod:`mosaic.core.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mosaic.core.errors import MosaicError

__all__ = ["evaluate_numpy", "evaluate_torch"]

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


def _chunk_rows(n_gallery: int, chunk_size: int | None, bytes_per_cell: int) -> int:
    if chunk_size is not None:
        return int(chunk_size)
    return max(1, DEFAULT_MEMORY_BUDGET // max(1, n_gallery * bytes_per_cell))


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


def evaluate_numpy(D, q_pids, g_pids, q_camids, g_camids, topk, chunk_size):
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
def evaluate_torch(D, q_pids, g_pids, q_camids, g_camids, topk, chunk_size):
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
    np_dtype = torch.empty(0, dtype=D.dtype).numpy().dtype if D.dtype != torch.bfloat16 else np.float32
    # sort keys + indices + several boolean/int masks per cell
    chunk = _chunk_rows(n_gallery, chunk_size, bytes_per_cell=40)
    positions = torch.arange(1, n_gallery + 1, device=device)
    k = min(topk, n_gallery) if topk else 0
    stats, picked_index, picked_distance = [], [], []  # per chunk, on the device: copied back once
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
        # ranks are exact in float64 (< 2**53): one table of four columns per chunk
        stats.append(torch.stack([has.double(), ap_c, inp_c, first_c.double()], dim=1))
        if k:
            # Kept images keep their sorted order; removed ones go past the end. Every slot of a
            # row is distinct (kept ranks 1..n_keep, then n_gallery + position), so the k smallest
            # by topk are exactly the first k of a stable argsort, without sorting the row again.
            slot = torch.where(keep, kept_rank, positions + n_gallery)
            pick = torch.topk(slot, k, dim=1, largest=False, sorted=True).indices
            n_keep = keep.sum(dim=1, keepdim=True)
            filled = torch.arange(k, device=device)[None, :] < n_keep
            picked_index.append(torch.where(filled, order.gather(1, pick), torch.full_like(pick, -1)))
            picked_distance.append(torch.where(filled, dist.gather(1, pick), torch.full_like(dist[:, :1], float("inf"))))
    table = torch.cat(stats).cpu().numpy() if stats else np.zeros((0, 4))
    has_np = table[:, 0] > 0
    ap = np.where(has_np, table[:, 1], np.nan)
    inp = np.where(has_np, table[:, 2], np.nan)
    first = np.where(has_np, table[:, 3], -1).astype(np.int64)
    topk_index = np.full((n_query, topk), -1, dtype=np.int64) if topk else None
    topk_distance = np.full((n_query, topk), np.inf, dtype=np_dtype) if topk else None
    if k and picked_index:
        picked = torch.cat(picked_distance)
        topk_index[:, :k] = torch.cat(picked_index).cpu().numpy()
        topk_distance[:, :k] = (picked.float() if D.dtype == torch.bfloat16 else picked).cpu().numpy()
    return ap, inp, first, topk_index, topk_distance
