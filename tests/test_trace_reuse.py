"""Work the tracer skips equals the work it would do: reused segments, sliced mixtures, no mixture
for `none`; no host sync inside a batch; the conditions' share-out over ranks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mosaic.conditions import resolve_conditions
from mosaic.core.schema import load_schema
from mosaic.tracing.engine import TraceSettings, compute_trunk, trace_model
from mosaic.tracing.features import FeatureReuse, condition_codes, condition_features, head_batch, segment_keys
from mosaic.tracing.routing import fill_codes
from mosaic.tracing.sharding import shard_conditions
from syncs import count_syncs
from test_trace_model import _image_set, _one_thread, model  # noqa: F401  (shared fixtures)

SCHEMA = load_schema("market1501")
CONDITIONS = ("oracle,none,drop:upcolour,only:downcolour,counterfactual:gender,counterfactual:hat,subset:0,subset:1,"
              "learned,fixed:gender,relabel:upcolour")


@pytest.fixture(scope="module")
def world():
    query, gallery = _image_set(4, 2, seed=2), _image_set(4, 3, seed=3, first_cam=2)
    conditions = resolve_conditions(CONDITIONS, SCHEMA, seed=0, n_subsets=2, has_learned=True,
                                    state_shares={g.name: [1 / len(g.states)] * len(g.states) for g in SCHEMA.groups})
    return query, gallery, conditions


def _features(model, query, gallery, conditions, settings, shared: bool):
    states = np.concatenate([query.states, gallery.states])
    pids = np.concatenate([query.pid, gallery.pid])
    is_query = np.arange(len(pids)) < len(query)
    segments = [(0, len(query)), (len(query), len(pids))]
    with compute_trunk(model, [query, gallery], settings, torch.device("cpu")) as cache:
        fill = fill_codes(model, cache, states, settings.batch_size)
        keys = [segment_keys(model, c, condition_codes(model, c, states, pids, is_query, fill)[0], segments, settings.reuse)
                for c in conditions]
        reuse = FeatureReuse(keys) if shared else None
        return {c.name: condition_features(model, cache, states, pids, c, settings, is_query=is_query, fill=fill, reuse=reuse)
                for c in conditions}


def test_reused_and_sliced_features_equal_the_full_computation(model, world):
    query, gallery, conditions = world
    full_settings = TraceSettings(batch_size=5, progress=False, reuse=False)
    full = _features(model, query, gallery, conditions, full_settings, shared=False)
    fast = _features(model, query, gallery, conditions, dataclasses.replace(full_settings, reuse=True), shared=True)
    Q, N = len(query), len(query) + len(gallery)
    for c in conditions:
        a, b = full[c.name], fast[c.name]
        assert torch.equal(a.gates, b.gates) and a.missing_routes == b.missing_routes, c.name
        if c.name in ("oracle", "none", "learned") or c.kind in ("counterfactual", "relabel", "fixed"):
            # every expert computed (or none at all): the same arithmetic, bitwise
            assert torch.equal(a.features, b.features), c.name
        else:  # fewer expert columns: only the order of the sum changes
            torch.testing.assert_close(b.features, a.features, atol=1e-6, rtol=0)
        assert a.computed_rows == N
    # the counterfactuals' gallery is the oracle's, computed once; `none` ran its head without a mixture
    assert [fast[c.name].computed_rows for c in conditions if c.kind == "counterfactual"] == [Q, Q]
    assert fast["oracle"].computed_rows == N and fast["none"].computed_rows == N


def test_trace_with_reuse_equals_the_full_trace(model, world):
    query, gallery, conditions = world
    settings = TraceSettings(top_k=4, max_rank=10, batch_size=5, progress=False)
    fast = trace_model(model, query, gallery, conditions, settings)
    full = trace_model(model, query, gallery, conditions, dataclasses.replace(settings, reuse=False))
    np.testing.assert_array_equal(fast.first_match_rank, full.first_match_rank)
    np.testing.assert_array_equal(fast.topk_index, full.topk_index)
    np.testing.assert_array_equal(fast.rank1, full.rank1)
    np.testing.assert_allclose(fast.ap, full.ap, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(fast.gates, full.gates)
    rows = fast.provenance["head_rows"]
    assert sum(rows.values()) < sum(full.provenance["head_rows"].values())
    assert fast.provenance["precision"] == "fp32" and fast.provenance["world_size"] == 1


def test_a_trace_batch_makes_no_host_sync(model, world):
    query, gallery, conditions = world
    settings = TraceSettings(batch_size=4, progress=False)
    states = np.concatenate([query.states, gallery.states])
    pids = np.concatenate([query.pid, gallery.pid])
    is_query = np.arange(len(pids)) < len(query)
    with compute_trunk(model, [query, gallery], settings, torch.device("cpu")) as cache:
        fill = fill_codes(model, cache, states, settings.batch_size)
        per_condition = {}
        for c in conditions:
            codes = torch.from_numpy(condition_codes(model, c, states, pids, is_query, fill)[0])
            enabled = torch.from_numpy(c.enabled_mask)
            with torch.inference_mode(), count_syncs() as syncs:
                head_batch(model, cache.read(0, 4), codes[:4], c.router, enabled, model.active_experts(c.enabled_mask),
                           "bn", "fp32")
            assert syncs.events == [], (c.name, syncs.events)
            # a whole condition reads back a fixed number of values, however many batches it has
            for size in (3, 11):
                with count_syncs() as whole:
                    condition_features(model, cache, states, pids, c, dataclasses.replace(settings, batch_size=size),
                                       is_query=is_query, fill=fill)
                per_condition.setdefault(c.name, set()).add(whole.count)
    assert all(len(counts) == 1 for counts in per_condition.values()), per_condition


def test_bf16_trace_runs_on_the_cpu_and_keeps_decisions_in_float32(model, world):
    query, gallery, conditions = world
    settings = TraceSettings(top_k=4, max_rank=10, batch_size=8, progress=False)
    fp32 = trace_model(model, query, gallery, conditions, settings)
    bf16 = trace_model(model, query, gallery, conditions, dataclasses.replace(settings, precision="bf16"))
    assert bf16.provenance["precision"] == "bf16" and bf16.provenance["trace_settings"]["precision"] == "bf16"
    # learned routes and filled states are float32 decisions: the gates are identical
    np.testing.assert_array_equal(bf16.gates, fp32.gates)
    np.testing.assert_array_equal(bf16.filled_routes, fp32.filled_routes)
    assert np.nanmax(np.abs(bf16.mAP - fp32.mAP)) < 0.1
    tf32 = trace_model(model, query, gallery, conditions[:2], dataclasses.replace(settings, precision="tf32"))
    np.testing.assert_array_equal(tf32.ap, fp32.ap[:2])  # TF32 is CUDA-only: on the CPU it is fp32


def test_precision_is_validated():
    with pytest.raises(Exception, match="precision must be one of"):
        TraceSettings(precision="fp16")


def test_conditions_are_shared_out_by_cost_with_counterfactuals_beside_their_reference():
    # condition 0 (oracle) and the counterfactuals 3, 4 share the gallery segment "g0"
    keys = [["q0", "g0"], ["q1", "g1"], ["q2", "g2"], ["q3", "g0"], ["q4", "g0"], [], ["q6", "g6"]]
    shares = shard_conditions(keys, 2, segment_rows=(2, 10))
    assert sorted(c for share in shares for c in share) == list(range(7))
    together = [share for share in shares if 0 in share][0]
    assert {3, 4} <= set(together)
    costs = [sum(10 if k.startswith("g") else 2 for k in {k for c in share for k in keys[c]}) + sum(1 for c in share if not keys[c])
             for share in shares]
    assert max(costs) - min(costs) <= 12  # the largest bundle (oracle + counterfactuals: 16) against the rest
    assert shard_conditions(keys, 1) == [list(range(7))]
    assert shard_conditions(keys, 3, (2, 10)) == shard_conditions(keys, 3, (2, 10))  # deterministic
