"""ReID evaluation: hand-computed cases, the protocol's edge cases, and properties against the
classic per-query algorithm of the public toolkits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.errors import MosaicError
from mosaic.core.metrics import evaluate


def per_query_reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, topk=0):
    """The straightforward loop of the public toolkits (stable sort), plus the kept ranked list."""
    n_query = distmat.shape[0]
    ap, inp, first = np.full(n_query, np.nan), np.full(n_query, np.nan), np.full(n_query, -1)
    cmc_hits, n_valid = np.zeros(max_rank), 0
    top_idx = np.full((n_query, topk), -1)
    top_dist = np.full((n_query, topk), np.inf)
    for i in range(n_query):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        kept = order[keep][:topk]
        top_idx[i, : kept.size] = kept
        top_dist[i, : kept.size] = distmat[i, kept]
        raw = (g_pids[order][keep] == q_pids[i]).astype(np.int64)
        if not raw.any():
            continue
        cmc = raw.cumsum()
        hits = np.minimum(cmc, 1)[:max_rank]
        cmc_hits[: hits.size] += hits
        cmc_hits[hits.size :] += 1  # gallery shorter than max_rank: the curve stays at its last value
        n_valid += 1
        pos = np.nonzero(raw)[0]
        first[i] = pos[0] + 1
        inp[i] = cmc[pos[-1]] / (pos[-1] + 1.0)
        ap[i] = (cmc / np.arange(1, cmc.size + 1) * raw).sum() / raw.sum()
    cmc = cmc_hits / n_valid if n_valid else np.full(max_rank, np.nan)
    return ap, inp, first, cmc, top_idx, top_dist


# --------------------------------------------------------------------- hand-computed cases
# Gallery: index, pid, camera, distance to query 0 (pid 1, camera 1)
#   0  pid 1 cam 1  0.10   same pid and camera: removed
#   1  pid 2 cam 1  0.20   other id, same camera: kept (negative)
#   2  pid 1 cam 2  0.30   true match
#   3  pid 3 cam 2  0.40   negative
#   4  pid 1 cam 3  0.50   true match
#   5  pid 0 cam 2  0.05   distractor (negative)
G_PIDS = np.array([1, 2, 1, 3, 1, 0])
G_CAMS = np.array([1, 1, 2, 2, 3, 2])
DIST = np.array(
    [
        [0.10, 0.20, 0.30, 0.40, 0.50, 0.05],  # query 0: pid 1, camera 1
        [0.30, 0.10, 0.20, 0.40, 0.50, 0.60],  # query 1: pid 2, camera 1 -> only match removed
        [0.90, 0.80, 0.70, 0.10, 0.60, 0.50],  # query 2: pid 3, camera 1 -> match first
    ]
)
Q_PIDS = np.array([1, 2, 3])
Q_CAMS = np.array([1, 1, 1])


def test_hand_computed_case():
    ev = evaluate(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5, topk=3)
    # Query 0, filtered ranked list: 5 (neg), 1 (neg), 2 (TRUE), 3 (neg), 4 (TRUE).
    # AP = (1/3 + 2/5) / 2 = 11/30; INP = 2 true matches / rank 5 of the hardest = 0.4.
    assert ev.ap[0] == pytest.approx(11 / 30)
    assert ev.inp[0] == pytest.approx(0.4)
    assert ev.first_match_rank[0] == 3
    # Query 1: its only same-pid image shares its camera -> not valid.
    assert not ev.valid[1] and np.isnan(ev.ap[1]) and np.isnan(ev.inp[1]) and ev.first_match_rank[1] == -1
    # Query 2: its match is nearest.
    assert ev.ap[2] == 1.0 and ev.inp[2] == 1.0 and ev.first_match_rank[2] == 1
    assert ev.n_valid == 2
    assert ev.mAP == pytest.approx((11 / 30 + 1.0) / 2)
    assert ev.mINP == pytest.approx((0.4 + 1.0) / 2)
    # CMC over the two valid queries: query 2 hits at rank 1, query 0 at rank 3.
    np.testing.assert_allclose(ev.cmc, [0.5, 0.5, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(ev.rank1, [False, False, True])
    assert ev.rank(3) == 1.0
    np.testing.assert_array_equal(ev.topk_index[0], [5, 1, 2])
    np.testing.assert_allclose(ev.topk_distance[0], [0.05, 0.20, 0.30])
    # Query 1 keeps its (invalid) ranked list: gallery 1, its own pid and camera, is removed.
    np.testing.assert_array_equal(ev.topk_index[1], [2, 0, 3])


def test_same_camera_same_pid_removed_but_other_ids_in_that_camera_kept():
    # Gallery 0 is the query's own identity in its own camera and is nearest: it must not count.
    # Gallery 1 is another identity in the query's camera: it stays and pushes the match to rank 2.
    dist = np.array([[0.0, 0.1, 0.2]])
    ev = evaluate(dist, [7], [7, 8, 7], [1], [1, 1, 2], max_rank=3)
    assert ev.first_match_rank[0] == 2
    assert ev.ap[0] == pytest.approx(0.5)
    np.testing.assert_allclose(ev.cmc, [0.0, 1.0, 1.0])


def test_ties_keep_gallery_order():
    # All distances equal: the stable order is gallery order. Gallery 1 (same pid, same camera)
    # is removed, so the list is 0 (neg), 2 (TRUE), 3 (TRUE), 4 (neg).
    dist = np.full((1, 5), 0.5)
    ev = evaluate(dist, [1], [2, 1, 1, 1, 3], [1], [2, 1, 2, 3, 2], topk=4)
    assert ev.first_match_rank[0] == 2
    assert ev.ap[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert ev.inp[0] == pytest.approx(2 / 3)
    np.testing.assert_array_equal(ev.topk_index[0], [0, 2, 3, 4])


def test_tie_between_true_match_and_negative_respects_index():
    # Negative at index 3 ties the true match at index 1: index 1 comes first.
    dist = np.array([[0.9, 0.4, 0.8, 0.4]])
    ev = evaluate(dist, [5], [9, 5, 9, 9], [1], [1, 2, 1, 1])
    assert ev.first_match_rank[0] == 1
    # Swap the indices: now the negative comes first.
    dist = np.array([[0.9, 0.4, 0.8, 0.4]])
    ev = evaluate(dist, [5], [9, 9, 9, 5], [1], [1, 1, 1, 2])
    assert ev.first_match_rank[0] == 2


def test_topk_pads_when_fewer_kept_images():
    ev = evaluate(DIST[:1], Q_PIDS[:1], G_PIDS, Q_CAMS[:1], G_CAMS, topk=7)
    np.testing.assert_array_equal(ev.topk_index[0], [5, 1, 2, 3, 4, -1, -1])
    assert np.isinf(ev.topk_distance[0, 5:]).all()


def test_no_valid_query_gives_nan_and_warns():
    with pytest.warns(RuntimeWarning, match="no valid query"):
        ev = evaluate(DIST[1:2], Q_PIDS[1:2], G_PIDS, Q_CAMS[1:2], G_CAMS)
    assert ev.n_valid == 0 and np.isnan(ev.mAP) and np.isnan(ev.mINP) and np.isnan(ev.cmc).all()


def test_summary_and_rank_bounds():
    ev = evaluate(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=10)
    summary = ev.summary()
    assert set(summary) == {"mAP", "mINP", "rank1", "rank5", "rank10", "n_valid", "n_query"}
    assert summary["rank1"] == 0.5
    with pytest.raises(MosaicError, match="rank 20"):
        ev.rank(20)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(distmat=np.zeros(3)), "matrix"),
        (dict(q_pids=np.array([1, 2])), "q_pids has 2 entries"),
        (dict(g_camids=np.array([1, 2])), "g_camids has 2 entries"),
        (dict(q_pids=np.array(["a", "b", "c"])), "integer labels"),
        (dict(max_rank=0), "max_rank"),
        (dict(topk=-1), "topk"),
        (dict(chunk_size=0), "chunk_size"),
    ],
)
def test_bad_inputs_are_user_errors(kwargs, message):
    args = dict(distmat=DIST, q_pids=Q_PIDS, g_pids=G_PIDS, q_camids=Q_CAMS, g_camids=G_CAMS)
    args.update(kwargs)
    with pytest.raises(MosaicError, match=message):
        evaluate(**args)


def test_nan_distance_is_a_user_error():
    dist = DIST.copy()
    dist[2, 4] = np.nan
    with pytest.raises(MosaicError, match="NaN in 1 query row.*first: 2"):
        evaluate(dist, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)


def test_infinite_distances_are_ranked_last():
    dist = np.array([[np.inf, 0.3, np.inf, 0.1]])
    got = evaluate(dist, [1], [1, 2, 1, 3], [1], [2, 2, 3, 2])
    ref = per_query_reference(dist, np.array([1]), np.array([1, 2, 1, 3]), np.array([1]), np.array([2, 2, 3, 2]))
    np.testing.assert_allclose(got.ap, ref[0])
    assert got.first_match_rank[0] == 3


# ------------------------------------------------------------------------------ properties
@st.composite
def problems(draw):
    n_query = draw(st.integers(1, 12))
    n_gallery = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    n_levels = draw(st.sampled_from([3, 10, 0]))  # few levels -> many exact ties; 0 -> continuous
    rng = np.random.default_rng(seed)
    n_ids, n_cams = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    dist = rng.integers(0, n_levels, (n_query, n_gallery)).astype(float) if n_levels else rng.random((n_query, n_gallery))
    return (
        dist,
        rng.integers(0, n_ids, n_query),
        rng.integers(0, n_ids, n_gallery),
        rng.integers(0, n_cams, n_query),
        rng.integers(0, n_cams, n_gallery),
    )


def _quiet_evaluate(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return evaluate(*args, **kwargs)


@settings(max_examples=60, deadline=None)
@given(problems(), st.integers(1, 8))
def test_matches_per_query_reference(problem, max_rank):
    got = _quiet_evaluate(*problem, max_rank=max_rank, topk=4)
    ap, inp, first, cmc, top_idx, top_dist = per_query_reference(*problem, max_rank=max_rank, topk=4)
    np.testing.assert_allclose(got.ap, ap, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.inp, inp, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got.first_match_rank, first)
    np.testing.assert_allclose(got.cmc, cmc, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got.topk_index, top_idx)
    np.testing.assert_array_equal(got.topk_distance, top_dist)


@settings(max_examples=40, deadline=None)
@given(problems())
def test_metric_ranges_and_consistency(problem):
    ev = _quiet_evaluate(*problem, max_rank=10)
    valid = ev.valid
    assert ((ev.ap[valid] > 0) & (ev.ap[valid] <= 1)).all()
    assert ((ev.inp[valid] > 0) & (ev.inp[valid] <= 1)).all()
    # a query whose matches all come first scores 1 on both
    np.testing.assert_array_equal(ev.ap[valid] == 1, ev.inp[valid] == 1)
    np.testing.assert_array_equal(ev.rank1, ev.first_match_rank == 1)
    np.testing.assert_array_equal(ev.rank1 & valid, ev.rank1)
    if ev.n_valid:
        assert (np.diff(ev.cmc) >= 0).all() and (ev.cmc >= 0).all() and (ev.cmc <= 1).all()
        assert ev.cmc[0] == pytest.approx(ev.rank1.sum() / ev.n_valid)


@settings(max_examples=30, deadline=None)
@given(problems(), st.integers(1, 5))
def test_chunked_equals_unchunked(problem, chunk_size):
    whole = _quiet_evaluate(*problem, topk=3)
    chunked = _quiet_evaluate(*problem, topk=3, chunk_size=chunk_size)
    for name in ("ap", "inp", "first_match_rank", "cmc", "topk_index", "topk_distance"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(chunked, name))


@settings(max_examples=30, deadline=None)
@given(problems(), st.sampled_from(["float64", "float32"]))
def test_torch_equals_numpy(problem, dtype):
    torch = pytest.importorskip("torch")
    dist = problem[0].astype(dtype)
    expected = _quiet_evaluate(dist, *problem[1:], topk=3)
    got = _quiet_evaluate(torch.from_numpy(dist), *(torch.from_numpy(a) for a in problem[1:]), topk=3)
    np.testing.assert_allclose(got.ap, expected.ap, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.inp, expected.inp, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got.first_match_rank, expected.first_match_rank)
    np.testing.assert_array_equal(got.topk_index, expected.topk_index)
    np.testing.assert_array_equal(got.topk_distance, expected.topk_distance)


def test_near_ties_below_float32_resolution_are_exact():
    # Distances that differ only beyond float32 precision must still rank by float64 value.
    base = 0.5
    eps = np.spacing(base)  # float64 spacing, far below float32's
    dist = np.array([[base + 2 * eps, base + eps, base, base + eps]])
    g_pids = np.array([1, 9, 9, 9])
    got = evaluate(dist, [1], g_pids, [1], [2, 1, 1, 1])
    assert got.first_match_rank[0] == 4  # all three negatives are (barely) nearer
    dist = np.array([[base - eps, base + eps, base, base + eps]])
    assert evaluate(dist, [1], g_pids, [1], [2, 1, 1, 1]).first_match_rank[0] == 1


def test_larger_random_problem_matches_reference():
    rng = np.random.default_rng(3)
    n_query, n_gallery = 60, 2500
    g_pids = rng.integers(0, 40, n_gallery)
    problem = (
        rng.random((n_query, n_gallery)),
        rng.integers(1, 40, n_query),
        g_pids,
        rng.integers(1, 7, n_query),
        rng.integers(1, 7, n_gallery),
    )
    got = evaluate(*problem, topk=10)
    ap, inp, first, cmc, top_idx, _ = per_query_reference(*problem, topk=10)
    np.testing.assert_allclose(got.ap, ap, atol=1e-12)
    np.testing.assert_allclose(got.inp, inp, atol=1e-12)
    np.testing.assert_array_equal(got.first_match_rank, first)
    np.testing.assert_allclose(got.cmc, cmc, atol=1e-12)
    np.testing.assert_array_equal(got.topk_index, top_idx)


@pytest.mark.gpu
def test_cuda_equals_numpy():
    import torch

    rng = np.random.default_rng(0)
    problem = (rng.random((50, 400)), rng.integers(0, 20, 50), rng.integers(0, 20, 400), rng.integers(0, 4, 50), rng.integers(0, 4, 400))
    expected = _quiet_evaluate(*problem, topk=5)
    got = _quiet_evaluate(torch.from_numpy(problem[0]).cuda(), *problem[1:], topk=5)
    np.testing.assert_allclose(got.ap, expected.ap, atol=1e-12)
    np.testing.assert_array_equal(got.first_match_rank, expected.first_match_rank)
    np.testing.assert_array_equal(got.topk_index, expected.topk_index)


def test_numpy_path_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from mosaic.core.metrics import evaluate; "
        "evaluate(np.random.rand(3, 5), [1, 2, 3], [1, 2, 3, 1, 2], [1, 1, 1], [2, 2, 2, 2, 2]); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
