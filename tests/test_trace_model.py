"""The tracer: trunk caching equals the full forward, routing per condition, metrics equal the untraced model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mosaic.conditions import resolve_conditions
from mosaic.core.errors import MosaicError
from mosaic.model import ModelConfig, build_model, normalize_images
from mosaic.core.schema import MISSING, load_schema
from mosaic.tracing.engine import ImageSet, TraceSettings, compute_trunk, condition_features, trace_model
from mosaic.tracing.routing import fill_codes

SCHEMA = load_schema("market1501")
G = len(SCHEMA.groups)


def _randomise_experts(model, seed: int) -> None:
    # Freshly built experts are no-ops (LoRA B = 0); random B makes every routing visible in the features.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        model.bnneck.running_mean.normal_(0, 0.1, generator=gen)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny matrices: one thread is as fast and does not fight other processes for the cores
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(ModelConfig(backbone="vit_micro", expert_blocks=2, learned_router=True), SCHEMA, num_classes=6)
    _randomise_experts(m, 1)
    rng = np.random.default_rng(5)
    m.set_state_shares({g.name: (lambda w: (w / w.sum()).tolist())(rng.random(len(g.states)) + 0.1) for g in SCHEMA.groups})
    return m.eval()


def _image_set(n_ids: int, per_id: int, seed: int, *, first_cam: int = 1) -> ImageSet:
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    n = n_ids * per_id
    pid = np.repeat(np.arange(1, n_ids + 1), per_id)
    id_states = np.stack([rng.integers(0, len(g.states), n_ids) for g in SCHEMA.groups], axis=1)
    states = id_states[pid - 1].astype(np.int16)
    states[rng.random((n, G)) < 0.1] = MISSING
    return ImageSet(
        images=torch.randint(0, 256, (n, 3, 128, 64), dtype=torch.uint8, generator=gen),
        pid=pid,
        camid=(np.arange(n) % 3) + first_cam,
        path=np.array([f"img/{i:03d}_ü.jpg" for i in range(n)]),
        states=states,
    )


@pytest.fixture(scope="module")
def query():
    return _image_set(4, 2, seed=2)


@pytest.fixture(scope="module")
def gallery():
    return _image_set(4, 3, seed=3, first_cam=2)


def _full_forward_routes(model, images: ImageSet, states: np.ndarray, pids, is_query, condition) -> np.ndarray:
    """The condition's routes with missing states filled by the learned router run on the full forward."""
    from mosaic.conditions.interventions import fill_missing_routes

    with torch.inference_mode():
        predicted = model.learned_router.predict(model.trunk(normalize_images(images.images, model))).numpy()
    return fill_missing_routes(condition, condition.route_states(states, pids, is_query), predicted.astype(states.dtype))[0]


def _full_forward_features(model, images: ImageSet, states: np.ndarray, condition) -> torch.Tensor:
    with torch.inference_mode():
        out = model(
            normalize_images(images.images, model),
            torch.from_numpy(states.astype(np.int64)),
            router=condition.router,
            enabled=torch.from_numpy(condition.enabled_mask),
        )
    return torch.nn.functional.normalize(out.bn_features, dim=1)


@pytest.mark.parametrize("budget_mb", [None, 0.0], ids=["in-memory", "spilled"])
def test_cached_trunk_equals_full_forward(model, query, gallery, budget_mb, tmp_path):
    settings = TraceSettings(batch_size=7, cache_budget_mb=budget_mb, spill_dir=str(tmp_path / "spill"), progress=False)
    conditions = resolve_conditions(
        "oracle,none,drop:upcolour,only:downcolour,counterfactual:gender,subset:0,learned,fixed:gender,relabel:upcolour",
        SCHEMA, seed=0, has_learned=True, state_shares=model.state_shares,
    )
    states = np.concatenate([query.states, gallery.states])
    pids = np.concatenate([query.pid, gallery.pid])
    everything = ImageSet(
        images=torch.cat([query.images, gallery.images]), pid=pids,
        camid=np.concatenate([query.camid, gallery.camid]), path=np.concatenate([query.path, gallery.path]),
        states=states,
    )
    is_query = np.arange(len(pids)) < len(query)
    with compute_trunk(model, [query, gallery], settings, torch.device("cpu")) as cache:
        assert cache.spilled == (budget_mb == 0.0)
        fill = fill_codes(model, cache, states, settings.batch_size)
        features = {}
        for c in conditions:
            cached = condition_features(model, cache, states, pids, c, settings, is_query=is_query, fill=fill).features
            full = _full_forward_features(model, everything, _full_forward_routes(model, everything, states, pids, is_query, c), c)
            torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
            features[c.name] = cached
    if budget_mb == 0.0:
        assert not any((tmp_path / "spill").iterdir()), "the memmap must be removed after tracing"
    # the conditions really differ (experts are not no-ops), so equality above is not vacuous
    assert (features["oracle"] - features["none"]).abs().max() > 1e-3
    assert (features["oracle"] - features["fixed:gender"]).abs().max() > 1e-3
    assert (features["oracle"] - features["relabel:upcolour"]).abs().max() > 1e-3
    assert (features["oracle"] - features["drop:upcolour"]).abs().max() > 1e-3


def test_routing_per_condition(model, query, gallery):
    settings = TraceSettings(batch_size=16, progress=False)
    conditions = resolve_conditions("oracle,none,drop:*,only:*,counterfactual:*,subset:*", SCHEMA, seed=0, n_subsets=3)
    states = np.concatenate([query.states, gallery.states])
    pids = np.concatenate([query.pid, gallery.pid])
    is_query = np.arange(len(pids)) < len(query)
    with compute_trunk(model, [query, gallery], settings, torch.device("cpu")) as cache:
        gates = {
            c.name: condition_features(model, cache, states, pids, c, settings, is_query=is_query).gates
            for c in conditions
        }
    oracle = gates["oracle"]
    assert oracle.shape == (len(states), 2, SCHEMA.n_experts)
    # oracle: one expert per annotated group, the one of the image's state, at every expert layer
    for i, group in enumerate(SCHEMA.groups):
        block = oracle[:, :, SCHEMA.expert_slice(group.name)]
        known = states[:, i] != MISSING
        assert (block.sum(-1)[known] == 1).all() and (block.sum(-1)[~known] == 0).all()
        assert (block.argmax(-1)[known] == torch.from_numpy(states[known, i].astype(np.int64))[:, None]).all()
    assert (gates["none"] == 0).all()
    for group in SCHEMA.group_names:
        sl = SCHEMA.expert_slice(group)
        outside = torch.ones(SCHEMA.n_experts, dtype=torch.bool)
        outside[sl] = False
        drop, only = gates[f"drop:{group}"], gates[f"only:{group}"]
        assert (drop[:, :, sl] == 0).all() and torch.equal(drop[:, :, outside], oracle[:, :, outside])
        assert torch.equal(only[:, :, sl], oracle[:, :, sl]) and (only[:, :, outside] == 0).all()
        cf = gates[f"counterfactual:{group}"]
        assert torch.equal(cf[:, :, outside], oracle[:, :, outside])
        # same number of experts on (capacity kept); the gallery keeps its own states; the
        # queries of one identity are routed alike
        assert torch.equal(cf[:, :, sl].sum(-1), oracle[:, :, sl].sum(-1))
        assert torch.equal(cf[~is_query], oracle[~is_query])
        chosen = cf[:, 0, sl].argmax(-1).numpy()
        on = (cf[:, 0, sl].sum(-1).numpy() > 0) & is_query
        for pid in np.unique(pids[on]):
            assert len(np.unique(chosen[on & (pids == pid)])) == 1
    for c in conditions:
        if c.kind == "subset":
            for i, group in enumerate(SCHEMA.group_names):
                sl = SCHEMA.expert_slice(group)
                expected = oracle[:, :, sl] if c.enabled[i] else torch.zeros_like(oracle[:, :, sl])
                assert torch.equal(gates[c.name][:, :, sl], expected)


def test_missing_learned_router_is_refused(query, gallery):
    torch.manual_seed(0)
    plain = build_model(ModelConfig(backbone="vit_micro", learned_router=False), SCHEMA, num_classes=3).eval()
    learned = resolve_conditions("learned", SCHEMA, has_learned=True)
    with pytest.raises(MosaicError, match="no learned router"):
        trace_model(plain, query, gallery, learned, TraceSettings(progress=False))


def test_schema_mismatch_is_refused(model, query, gallery):
    bad = ImageSet(images=query.images, pid=query.pid, camid=query.camid, path=query.path, states=query.states[:, :3])
    with pytest.raises(MosaicError, match="attribute groups but the model's schema"):
        trace_model(model, bad, gallery, resolve_conditions("oracle", SCHEMA), TraceSettings(progress=False))


def test_trace_equals_untraced_model(model, query, gallery, tmp_path):
    """Each row of a trace (oracle included) is what evaluate() gives on the model's own forward features."""
    import warnings

    from mosaic.core.metrics import evaluate
    from mosaic.tracefile import read_trace_data, write_trace

    conditions = resolve_conditions("oracle,none,drop:upcolour,counterfactual:hat", SCHEMA, seed=0)
    settings = TraceSettings(top_k=4, max_rank=20, batch_size=8, progress=False)
    data = trace_model(model, query, gallery, conditions, settings, provenance={"seed": 0})
    assert list(data.condition_name) == [c.name for c in conditions]
    states = np.concatenate([query.states, gallery.states])
    pids = np.concatenate([query.pid, gallery.pid])
    Q = len(query)
    is_query = np.arange(len(pids)) < Q
    everything = ImageSet(
        images=torch.cat([query.images, gallery.images]), pid=pids,
        camid=np.concatenate([query.camid, gallery.camid]), path=np.concatenate([query.path, gallery.path]),
        states=states,
    )
    for c, condition in enumerate(conditions):
        routed = _full_forward_routes(model, everything, states, pids, is_query, condition)
        qf = _full_forward_features(model, query, routed[:Q], condition)
        gf = _full_forward_features(model, gallery, routed[Q:], condition)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ev = evaluate((1 - qf @ gf.T).numpy(), query.pid, gallery.pid, query.camid, gallery.camid, max_rank=20, topk=4)
        np.testing.assert_allclose(data.mAP[c], ev.mAP, atol=1e-6)
        np.testing.assert_allclose(data.mINP[c], ev.mINP, atol=1e-6)
        np.testing.assert_allclose(data.cmc[c], ev.cmc, atol=1e-6)
        np.testing.assert_allclose(data.ap[c][ev.valid], ev.ap[ev.valid], atol=1e-5)
        assert (data.first_match_rank[c] == np.where(ev.valid, ev.first_match_rank, -1)).all()
        assert (data.topk_index[c] == ev.topk_index).all()
    assert (data.valid == ev.valid).all()
    assert np.isnan(data.ap[:, ~data.valid]).all()
    # the oracle gates recorded for the queries are the oracle routing of their own states
    assert data.gates.shape == (len(conditions), len(query), 2, SCHEMA.n_experts)
    assert (data.gates[1] == 0).all()
    # missing states are filled by the learned router, never left off (schema 1.1)
    assert data.provenance["missing_routes"]["oracle"] == 0
    assert data.filled_routes[0] == int((states == MISSING).sum()) and data.fill_method[0] == "learned"
    assert data.filled_routes[1] == 0 and data.fill_method[1] == "none"  # none routes no state
    assert data.filled_routes[2] == int((np.delete(states, SCHEMA.group_names.index("upcolour"), axis=1) == MISSING).sum())
    back = read_trace_data(write_trace(data, tmp_path / "trace.h5"))
    np.testing.assert_array_equal(back.ap, data.ap)
    assert back.provenance["conditions"][2]["enabled"] == [g for g in SCHEMA.group_names if g != "upcolour"]
