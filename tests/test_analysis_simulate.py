"""analysis.simulate: valid, coherent traces whose planted effects show up where they should."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.simulation.trace import simulate, simulate_data, synthetic_schema
from mosaic.core.errors import MosaicError

EFFECTS = {"g00": 0.0, "g01": 0.5, "g02": 1.5, "g03": 3.0}


@pytest.fixture(scope="module")
def data():
    return simulate_data(n_ids=60, groups=4, effects=EFFECTS, n_subsets=6, seed=3)


def test_shapes_validate_and_conditions(data):
    data.validate()
    names = data.condition_name.tolist()
    assert names[:2] == ["oracle", "none"]
    for kind in ("drop", "only", "counterfactual"):
        assert [f"{kind}:g0{i}" for i in range(4)] == [n for n in names if n.startswith(kind + ":")]
    assert sum(n.startswith("subset:") for n in names) == 6
    assert data.enabled_groups[names.index("oracle")].all() and not data.enabled_groups[names.index("none")].any()
    drop1 = names.index("drop:g01")
    assert data.enabled_groups[drop1].tolist() == [True, False, True, True]
    assert data.provenance["simulation"]["effects"] == EFFECTS


def test_retrieval_values_agree_with_each_other(data):
    valid = data.valid
    assert valid.mean() > 0.9
    fm = data.first_match_rank
    assert (fm[:, ~valid] == -1).all() and np.isnan(data.ap[:, ~valid]).all()
    assert (fm[:, valid] >= 1).all()
    np.testing.assert_array_equal(data.rank1, fm == 1)
    assert ((data.ap[:, valid] > 0) & (data.ap[:, valid] <= 1)).all()
    assert ((data.inp[:, valid] > 0) & (data.inp[:, valid] <= 1)).all()
    np.testing.assert_allclose(data.mAP, np.nanmean(data.ap.astype(float), axis=1), rtol=1e-6)
    np.testing.assert_allclose(data.mINP, np.nanmean(data.inp.astype(float), axis=1), rtol=1e-6)
    for r in (1, 5, 50):
        np.testing.assert_allclose(data.cmc[:, r - 1], ((fm >= 1) & (fm <= r))[:, valid].mean(1))
    assert np.all(np.diff(data.cmc, axis=1) >= 0)


def test_topk_lists_place_true_matches_at_their_ranks(data):
    C, Q, K = data.topk_index.shape
    same = data.gallery_pid[data.topk_index] == data.query_pid[None, :, None]
    same_camera = data.gallery_camid[data.topk_index] == data.query_camid[None, :, None]
    assert not (same & same_camera).any(), "same-identity same-camera images must be removed"
    for c in range(C):
        for q in np.flatnonzero(data.valid):
            row = data.topk_index[c, q]
            assert len(set(row.tolist())) == K
            first = data.first_match_rank[c, q]
            hits = np.flatnonzero(same[c, q])
            if first <= K:
                assert hits[0] == first - 1
            else:
                assert hits.size == 0
    assert np.all(np.diff(data.topk_distance, axis=-1) >= 0)


def test_ap_and_inp_recomputed_from_complete_topk_lists(data):
    """Where every true match made the top-k list, AP and INP follow from its positions alone."""
    own = data.gallery_pid[None, :] == data.query_pid[:, None]
    n_match = (own & (data.gallery_camid[None, :] != data.query_camid[:, None])).sum(1)
    same = data.gallery_pid[data.topk_index] == data.query_pid[None, :, None]
    checked = 0
    for c, q in zip(*np.nonzero(same.sum(-1) == n_match[None, :])):
        if not data.valid[q]:
            continue
        ranks = np.flatnonzero(same[c, q]) + 1
        ap = np.mean(np.arange(1, ranks.size + 1) / ranks)
        assert data.ap[c, q] == pytest.approx(ap, rel=1e-5)
        assert data.inp[c, q] == pytest.approx(ranks.size / ranks[-1], rel=1e-5)
        assert data.first_match_rank[c, q] == ranks[0]
        checked += 1
    assert checked > 500


def test_oracle_gates_are_one_hot_per_annotated_group(data):
    schema = data.schema
    oracle = data.gates[0]                       # (Q, L, E)
    for g, group in enumerate(schema.groups):
        block = oracle[:, :, schema.expert_slice(group.name)]
        annotated = data.query_states[:, g] >= 0
        np.testing.assert_array_equal(block.sum(-1), np.repeat(annotated[:, None], block.shape[1], 1))
        states = block[annotated, 0].argmax(-1)
        np.testing.assert_array_equal(states, data.query_states[annotated, g])
    names = data.condition_name.tolist()
    cf = data.gates[names.index("counterfactual:g02")][:, 0, schema.expert_slice("g02")]
    annotated = data.query_states[:, 2] >= 0
    assert (cf[annotated].argmax(-1) != data.query_states[annotated, 2]).all()
    assert data.gates[names.index("drop:g02")][:, :, schema.expert_slice("g02")].sum() == 0


def test_planted_effects_order_the_losses():
    data = simulate_data(n_ids=300, groups=4, effects=EFFECTS, kinds=("oracle", "drop", "counterfactual"), seed=5)
    names = data.condition_name.tolist()
    oracle = data.mAP[names.index("oracle")]
    for kind in ("drop", "counterfactual"):
        loss = [oracle - data.mAP[names.index(f"{kind}:{g}")] for g in EFFECTS]
        assert abs(loss[0]) < 0.02                  # a zero effect changes nothing on average
        assert loss[1] < loss[2] < loss[3]
    assert data.mAP[names.index("oracle")] > 0.6


def test_never_annotated_group_keeps_oracle_outcomes():
    data = simulate_data(n_ids=40, groups=3, effects={"g01": 2.0}, missing_rate={"g01": 1.0}, seed=1)
    names = data.condition_name.tolist()
    for kind in ("drop", "counterfactual"):
        c = names.index(f"{kind}:g01")
        np.testing.assert_array_equal(data.ap[c], data.ap[0])
        np.testing.assert_array_equal(data.rank1[c], data.rank1[0])


def test_same_seed_same_trace_and_n_queries():
    a = simulate_data(n_ids=30, n_queries=47, groups=2, seed=11)
    b = simulate_data(n_ids=30, n_queries=47, groups=2, seed=11)
    assert a.n_queries == 47 and len(np.unique(a.query_pid)) == 30
    np.testing.assert_array_equal(a.ap, b.ap)
    np.testing.assert_array_equal(a.topk_index, b.topk_index)


def test_simulate_writes_a_readable_trace(tmp_path):
    from analysis.trace import read_trace

    trace = simulate(tmp_path / "sim.h5", n_ids=20, groups=3, effects={"g02": 1.0}, n_subsets=2, seed=0)
    again = read_trace(tmp_path / "sim.h5")
    np.testing.assert_array_equal(again.data.ap, trace.data.ap)
    assert again.provenance["simulation"]["effects"]["g02"] == 1.0


def test_market_schema_is_the_default():
    data = simulate_data(n_ids=10, kinds=("oracle", "drop"), seed=0)
    assert data.schema.name == "market1501" and len(data.schema.groups) == 12


def test_user_errors():
    with pytest.raises(MosaicError, match="unknown attribute group"):
        simulate_data(n_ids=5, groups=2, effects={"nope": 1.0})
    with pytest.raises(MosaicError, match="oracle"):
        simulate_data(n_ids=5, groups=2, kinds=("drop",))
    with pytest.raises(MosaicError, match="n_cameras"):
        simulate_data(n_ids=5, groups=2, n_cameras=1)
    assert len(synthetic_schema(5).families) == 4


def test_identity_varying_effects_spread_around_the_planted_mean():
    """effect_sd gives each identity its own effect; effect_sd = 0 is the plain model."""
    def identity_losses(**kw):
        data = simulate_data(n_ids=200, groups=2, kinds=("oracle", "drop"), missing_rate=0.0, seed=8, **kw)
        names = data.condition_name.tolist()
        delta = (data.rank1[0].astype(float) - data.rank1[names.index("drop:g00")])[data.valid]
        ids = data.query_pid[data.valid]
        return np.array([delta[ids == i].mean() for i in np.unique(ids)]), data

    fixed, _ = identity_losses(effects={"g00": 1.0})
    varying, data = identity_losses(effects={"g00": 1.0}, effect_sd={"g00": 3.0})
    assert varying.std() > 1.3 * fixed.std()
    assert (varying < 0).mean() > 0.1                   # some identities gain from losing the group
    assert data.provenance["simulation"]["effect_sd"] == {"g00": 3.0, "g01": 0.0}


def test_population_null_world_is_null_on_average():
    """effects = 0 with effect_sd > 0: identities differ, the mean ΔmAP is zero (no link curvature)."""
    losses = []
    for seed in range(30):
        data = simulate_data(n_ids=150, groups=2, effect_sd=2.0, kinds=("oracle", "drop"), seed=seed)
        names = data.condition_name.tolist()
        losses.append(data.mAP[0] - data.mAP[names.index("drop:g00")])
    assert abs(np.mean(losses)) < 3 * np.std(losses) / np.sqrt(len(losses))
    assert np.std(losses) > 0.01                      # yet each world shows a sizeable ΔmAP


def test_effect_sd_zero_reproduces_the_fixed_effect_draws():
    a = simulate_data(n_ids=30, groups=3, effects={"g01": 1.0}, seed=4)
    b = simulate_data(n_ids=30, groups=3, effects={"g01": 1.0}, effect_sd=0.0, seed=4)
    np.testing.assert_array_equal(a.ap, b.ap)
    with pytest.raises(MosaicError, match="effect_sd"):
        simulate_data(n_ids=5, groups=2, effect_sd=-1.0)
