"""fixed / relabel / code conditions, symmetric routing of unannotated images, and the training routings."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mosaic.conditions.codes import code_distance, code_evaluation, tie_order
from mosaic.conditions import ConditionContext, resolve_conditions
from mosaic.core.errors import MosaicError
from mosaic.conditions.interventions import _relabel_why_not, derangement, fill_missing_routes
from mosaic.model import ModelConfig, build_model
from mosaic.core.schema import FIXED, MISSING, load_schema
from mosaic.conditions.state_shares import majority_codes, training_state_shares

SCHEMA = load_schema("market1501")
G = len(SCHEMA.groups)


def _world(n_ids: int, per_id: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Identity-level states (every image of an identity shares them) and pids."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(1, n_ids + 1), per_id)
    id_states = np.stack([rng.integers(0, len(g.states), n_ids) for g in SCHEMA.groups], axis=1)
    return id_states[pids - 1].astype(np.int16), pids


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(ModelConfig(backbone="vit_micro", expert_blocks=2, learned_router=True), SCHEMA, num_classes=4)
    states, pids = _world(30, 3, seed=1)
    m.set_state_shares(training_state_shares(states, pids, SCHEMA))
    return m.eval()


def _gates(model, condition, codes: np.ndarray) -> torch.Tensor:
    return model.route(torch.from_numpy(codes.astype(np.int64)), router=condition.router,
                       enabled=torch.from_numpy(condition.enabled_mask)).gates


# ----------------------------------------------------------------------------- state shares

def test_training_state_shares_count_identities_not_images():
    schema = SCHEMA
    states = np.zeros((7, G), np.int16)
    pids = np.array([1, 1, 1, 1, 2, 3, 0])  # identity 1 has four images, pid 0 is a distractor
    gender = schema.group_names.index("gender")
    states[:4, gender] = 1
    states[6] = MISSING
    shares = training_state_shares(states, pids, schema)
    assert shares["gender"] == pytest.approx([2 / 3, 1 / 3])  # one of three identities, whatever its image count
    assert all(abs(sum(v) - 1) < 1e-12 for v in shares.values())
    assert majority_codes(shares, schema)["gender"] == 0


# ----------------------------------------------------------------------------- fixed

@pytest.mark.parametrize("mode", ["shares", "majority"])
def test_fixed_gates_are_identical_for_every_image_and_sum_to_the_groups_weight(model, mode):
    states, pids = _world(12, 4, seed=2)
    states[-8:] = MISSING  # unannotated images (distractor-like) get the same gates for the group
    is_query = np.arange(len(pids)) < 12
    shares = model.state_shares
    for condition in resolve_conditions("fixed:*", SCHEMA, state_shares=shares, fixed_gates=mode):
        g = SCHEMA.group_names.index(condition.group)
        fill = np.where(states == MISSING, 0, states).astype(np.int16)
        codes, _ = fill_missing_routes(condition, condition.route_states(states, pids, is_query), fill)
        gates = _gates(model, condition, codes)
        block = gates[:, :, SCHEMA.expert_slice(condition.group)]
        assert torch.equal(block, block[:1].expand_as(block)), "every image, query and gallery, gets the same gates"
        oracle = _gates(model, condition, fill)[:, :, SCHEMA.expert_slice(condition.group)]
        torch.testing.assert_close(block.sum(-1), oracle.sum(-1))  # as much weight as the oracle's one expert: 1
        expected = np.asarray(shares[condition.group], np.float32)
        if mode == "majority":
            expected = np.eye(len(expected), dtype=np.float32)[int(np.argmax(expected))]
        np.testing.assert_allclose(block[0, 0].numpy(), expected, rtol=1e-6)
        others = [h for h in range(G) if h != g]
        for h in others:  # the other groups keep their own (or filled) states
            sl = SCHEMA.expert_slice(SCHEMA.group_names[h])
            assert torch.equal(gates[:, :, sl], _gates(model, condition, fill)[:, :, sl])


def test_fixed_needs_state_shares():
    with pytest.raises(MosaicError, match="training state shares are unknown"):
        resolve_conditions("fixed:hat", SCHEMA)
    assert [c.kind for c in resolve_conditions(None, SCHEMA)].count("fixed") == 0  # default set skips it
    with pytest.raises(MosaicError, match="unknown group 'shoes' in 'fixed:shoes'"):
        resolve_conditions("fixed:shoes", SCHEMA, state_shares={g.name: [1 / len(g.states)] * len(g.states) for g in SCHEMA.groups})


def test_the_router_refuses_fixed_codes_without_shares():
    plain = build_model(ModelConfig(backbone="vit_micro", learned_router=False), SCHEMA, num_classes=2)
    codes = torch.zeros(2, G, dtype=torch.long)
    codes[:, 0] = FIXED
    with pytest.raises(MosaicError, match="no training state shares"):
        plain.route(codes)


# ----------------------------------------------------------------------------- relabel

@pytest.mark.parametrize("seed", [0, 1, 7])
def test_relabel_is_a_derangement_whose_partition_equals_the_oracles(seed):
    states, pids = _world(40, 3, seed=seed)
    states[np.random.default_rng(seed).random(states.shape) < 0.1] = MISSING
    conditions = resolve_conditions("relabel:*", SCHEMA, seed=seed)
    assert [c.group for c in conditions] == list(SCHEMA.group_names)
    for condition in conditions:
        g = SCHEMA.group_names.index(condition.group)
        perm = np.asarray(condition.transform.permutation)
        assert sorted(perm.tolist()) == list(range(len(SCHEMA.groups[g].states)))
        assert not (perm == np.arange(len(perm))).any(), "a derangement: no state keeps its own expert"
        routed = condition.route_states(states, pids)
        known = states[:, g] != MISSING
        assert (routed[known, g] != states[known, g]).all()
        assert (routed[~known, g] == MISSING).all()
        same_routed = routed[known, g][:, None] == routed[known, g][None, :]
        same_truth = states[known, g][:, None] == states[known, g][None, :]
        assert (same_routed == same_truth).all(), "the identity partition is the oracle's"
        assert (np.delete(routed, g, axis=1) == np.delete(states, g, axis=1)).all()
        # query and gallery share the mapping: relabelling them apart gives the same codes
        half = len(pids) // 2
        apart = np.concatenate([condition.route_states(states[:half], pids[:half]), condition.route_states(states[half:], pids[half:])])
        assert (apart == routed).all()
    again = resolve_conditions("relabel:*", SCHEMA, seed=seed)
    assert [c.transform for c in again] == [c.transform for c in conditions]


def test_relabel_refuses_a_one_state_group():
    # AttributeSchema itself refuses one-state groups; the kind refuses them too, by name
    one_state = SimpleNamespace(group_names=("bag",), group=lambda name: SimpleNamespace(states=("yes",)))
    why = _relabel_why_not(ConditionContext(schema=one_state), "relabel:bag")
    assert why == "group 'bag' has one state, so relabel:bag has nothing to permute: leave it out"
    with pytest.raises(ValueError):
        derangement(1, 0)


# ----------------------------------------------------------------------------- code

def _brute_force_code_retrieval(qs, gs, qp, gp, qc, gc, seed, max_rank):
    """Per query: distances by explicit loops, ranking by (distance, seeded tie position), AP by definition."""
    position = np.argsort(tie_order(len(gp), seed))  # where each gallery image sits in the tie order
    out = []
    for i in range(len(qp)):
        dist = []
        for j in range(len(gp)):
            shared = [k for k in range(qs.shape[1]) if qs[i, k] != MISSING and gs[j, k] != MISSING]
            dist.append(sum(qs[i, k] != gs[j, k] for k in shared) / len(shared) if shared else 1.0)
        kept = [j for j in range(len(gp)) if not (gp[j] == qp[i] and gc[j] == qc[i])]
        ranked = sorted(kept, key=lambda j: (dist[j], position[j]))
        hits = [gp[j] == qp[i] for j in ranked]
        if not any(hits):
            out.append(None)
            continue
        precisions, n = [], 0
        for r, hit in enumerate(hits, start=1):
            if hit:
                n += 1
                precisions.append(n / r)
        first = hits.index(True) + 1
        out.append((np.mean(precisions), first, ranked[:3], [first <= r for r in range(1, max_rank + 1)]))
    return out


@pytest.mark.parametrize("seed", [0, 3])
def test_code_retrieval_equals_a_brute_force_reference_ties_included(seed):
    rng = np.random.default_rng(seed)
    groups = 3  # few binary groups: distances take four values, ties everywhere
    n_ids = 8
    id_states = rng.integers(0, 2, (n_ids, groups)).astype(np.int16)
    qp = np.repeat(np.arange(1, n_ids + 1), 2)
    gp = np.concatenate([np.repeat(np.arange(1, n_ids + 1), 3), np.zeros(5, int)])  # 5 distractors
    qs, gs = id_states[qp - 1].copy(), np.concatenate([id_states[gp[:-5] - 1], np.full((5, groups), MISSING, np.int16)])
    qs[rng.random(qs.shape) < 0.15] = MISSING
    gs[:-5][rng.random(gs[:-5].shape) < 0.15] = MISSING
    qc, gc = rng.integers(1, 4, len(qp)), rng.integers(1, 4, len(gp))
    ev = code_evaluation(qs, gs, qp, gp, qc, gc, seed=seed, max_rank=5, topk=3)
    reference = _brute_force_code_retrieval(qs, gs, qp, gp, qc, gc, seed, max_rank=5)
    assert [r is not None for r in reference] == np.asarray(ev.valid).tolist()
    assert len(np.unique(code_distance(qs, gs))) <= 7  # the case really is full of ties
    for i, ref in enumerate(reference):
        if ref is None:
            continue
        ap, first, top3, _ = ref
        assert ev.ap[i] == pytest.approx(ap, abs=1e-6)
        assert ev.first_match_rank[i] == first
        assert np.asarray(ev.topk_index)[i].tolist() == top3  # indices into the original gallery order
    valid = [r for r in reference if r is not None]
    assert ev.mAP == pytest.approx(np.mean([r[0] for r in valid]), abs=1e-6)
    np.testing.assert_allclose(ev.cmc, np.mean([r[3] for r in valid], axis=0), atol=1e-12)


def test_code_distance_counts_disagreements_among_groups_annotated_on_both():
    q = np.array([[0, 1, MISSING]], np.int16)
    g = np.array([[0, 0, 1], [0, 1, 0], [MISSING, MISSING, MISSING]], np.int16)
    np.testing.assert_allclose(code_distance(q, g), [[0.5, 0.0, 1.0]])


def test_code_refuses_data_without_annotations():
    states = np.full((4, 3), MISSING, np.int16)
    with pytest.raises(MosaicError, match="query images carry none"):
        code_evaluation(states, np.zeros((4, 3), np.int16), np.arange(4), np.arange(4), np.ones(4), np.full(4, 2), seed=0)
    with pytest.raises(MosaicError, match="'code' matches nothing: the query or gallery images carry no attribute annotations"):
        resolve_conditions("code", SCHEMA, has_annotations=False)


# ----------------------------------------------------------------------------- symmetric routing

def _detector_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out 1-nearest-neighbour accuracy: the best a simple classifier does from gates alone."""
    d = ((features[:, None, :] - features[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    return float((labels[nearest] == labels).mean())


def test_unannotated_images_cannot_be_told_apart_from_their_gates(model):
    """Hide every state of a random half of the gallery (as Market-1501 does for distractors).

    A router that predicts states right (``fill`` = the true states) routes them exactly as if
    annotated, under every kind routed by states, so no classifier on the gates finds them; with
    missing states left off (schema 1.0) the same classifier finds every one.
    """
    states, pids = _world(60, 4, seed=4)
    is_query = np.arange(len(pids)) % 4 == 0  # one annotated query per identity, three gallery images
    hidden = (~is_query) & (np.random.default_rng(5).random(len(pids)) < 0.5)
    seen = states.copy()
    seen[hidden] = MISSING
    conditions = resolve_conditions(
        "oracle,drop:hat,only:upcolour,subset:0,counterfactual:gender,fixed:age,relabel:upcolour",
        SCHEMA, seed=0, state_shares=model.state_shares,
    )
    gallery = ~is_query
    for condition in conditions:
        codes, filled = fill_missing_routes(condition, condition.route_states(seen, pids, is_query), fill=states)
        routed_by_state = condition.n_enabled - (condition.kind == "fixed")  # fixed:g routes g alike for all
        assert filled.sum() == hidden.sum() * routed_by_state
        gates = _gates(model, condition, codes)[:, 0].numpy()
        truth, _ = fill_missing_routes(condition, condition.route_states(states, pids, is_query), fill=None)
        np.testing.assert_array_equal(gates, _gates(model, condition, truth)[:, 0].numpy())
        accuracy = _detector_accuracy(gates[gallery], hidden[gallery])
        assert accuracy < 0.65, (condition.name, accuracy)  # chance is about 0.5
        left_off = _gates(model, condition, condition.route_states(seen, pids, is_query))[:, 0].numpy()
        assert _detector_accuracy(left_off[gallery], hidden[gallery]) == 1.0, "the detector works when routing leaks"


def test_without_a_learned_router_unannotated_groups_get_the_fixed_gates_never_off(model):
    states, pids = _world(10, 3, seed=6)
    states[-5:] = MISSING
    condition = resolve_conditions("drop:hat", SCHEMA)[0]
    fill = np.full(states.shape, FIXED, np.int16)
    codes, filled = fill_missing_routes(condition, condition.route_states(states, pids), fill)
    gates = _gates(model, condition, codes)[:, 0]
    for g, name in enumerate(SCHEMA.group_names):
        total = gates[:, SCHEMA.expert_slice(name)].sum(-1)
        expected = torch.zeros(len(pids)) if name == "hat" else torch.ones(len(pids))
        torch.testing.assert_close(total, expected)  # every image alike: on for enabled groups, off for hat
    np.testing.assert_allclose(gates[-1, SCHEMA.expert_slice("age")].numpy(), model.state_shares["age"], rtol=1e-6)


def test_fill_applies_only_to_conditions_routed_by_states():
    states, pids = _world(4, 2, seed=7)
    states[0] = MISSING
    for name in ("none", "code"):
        condition = resolve_conditions(name, SCHEMA)[0]
        codes, filled = fill_missing_routes(condition, states, np.zeros_like(states))
        assert not filled.any() and (codes == states).all()
    relabel = resolve_conditions("relabel:gender", SCHEMA)[0]
    g = SCHEMA.group_names.index("gender")
    codes, filled = fill_missing_routes(relabel, relabel.route_states(states, pids), np.zeros_like(states))
    assert filled[0].all() and codes[0, g] == relabel.transform.permutation[0]  # a predicted state is relabelled too


# ----------------------------------------------------------------------------- training routings

def _route(routing, states: torch.Tensor, seed: int = 0) -> torch.Tensor:
    from mosaic.train.config import RoutingConfig
    from mosaic.train.step import route_training_states

    return route_training_states(RoutingConfig(**routing), states, torch.Generator().manual_seed(seed))


def test_training_routes_fixed_groups_and_all_off_samples_at_their_rates():
    states = torch.ones(20000, 4, dtype=torch.long)
    out = _route({"group_dropout": 0.3, "fixed_prob": 0.2, "all_off_prob": 0.1}, states)
    all_off = (out == MISSING).all(dim=1)
    assert abs(all_off.float().mean().item() - (0.1 + 0.9 * 0.3**4)) < 0.01
    rest = out[~all_off]
    assert abs((rest == MISSING).float().mean().item() - 0.3) < 0.01
    assert abs((rest == FIXED).float().mean().item() - 0.2) < 0.01
    # adding fixed_prob leaves the dropped groups of a dropout-only run unchanged (same draws)
    only_dropout = _route({"group_dropout": 0.3}, states)
    with_fixed = _route({"group_dropout": 0.3, "fixed_prob": 0.2}, states)
    assert torch.equal(only_dropout == MISSING, with_fixed == MISSING)
    assert torch.equal(_route({}, states), states)


@pytest.mark.parametrize(
    "routing, message",
    [({"fixed_prob": 1.0}, r"routing.fixed_prob must be in \[0, 1\)"),
     ({"all_off_prob": -0.1}, r"routing.all_off_prob must be in \[0, 1\)"),
     ({"group_dropout": 0.6, "fixed_prob": 0.4}, "group_dropout \\+ routing.fixed_prob must be < 1")],
)
def test_training_routing_settings_are_checked(routing, message):
    from mosaic.train.config import TrainConfig

    with pytest.raises(MosaicError, match=message):
        TrainConfig.from_dict({"routing": routing})




@pytest.mark.parametrize("name", ["synthetic_micro", "market1501_clip_vitb16", "dukemtmc_clip_vitb16"])
def test_shipped_configs_train_every_routing_a_trace_evaluates(name):
    from mosaic.train.config import load_config

    routing = load_config(name).routing
    assert routing.group_dropout > 0 and routing.fixed_prob > 0 and routing.all_off_prob > 0


@pytest.mark.parametrize("name", ["market1501_clip_vitb16", "dukemtmc_clip_vitb16"])
def test_paper_configs_differ_from_the_shipped_ones_in_routing_only(name):
    from mosaic.train.config import load_config

    shipped = load_config(name).to_dict()
    paper = load_config(f"{name}_paper").to_dict()
    assert paper.pop("routing") == {"group_dropout": 0.0, "fixed_prob": 0.0, "all_off_prob": 0.0}
    shipped.pop("routing")
    assert paper == shipped


# ----------------------------------------------------------------------------- trace schema 1.1

def test_a_schema_1_0_trace_still_reads_with_the_new_arrays_not_recorded(tmp_path):
    import h5py

    from mosaic.tracefile import ARRAYS, read_trace_data, write_trace
    from test_traceio import make_trace

    path = write_trace(make_trace(), tmp_path / "old.h5")
    with h5py.File(path, "r+") as h5:  # what a 1.0.0 writer left: no 1.1 arrays, version 1.0.0
        for spec in ARRAYS:
            if spec.since != "1.0.0":
                del h5[spec.path]
        h5.attrs["schema_version"] = h5.attrs["encoding_version"] = "1.0.0"
    data = read_trace_data(path)
    assert (data.filled_routes == 0).all() and set(data.fill_method.tolist()) == {"none"}
    assert np.isnan(data.fixed_gates).all() and data.fixed_gates.shape == (data.schema.n_experts,)
    with h5py.File(path, "r+") as h5:  # a 1.1 file lacking a 1.1 array is damaged, not old
        h5.attrs["schema_version"] = "1.1.0"
    with pytest.raises(MosaicError, match="lacks the dataset /conditions/filled_routes"):
        read_trace_data(path)


def test_the_trace_accepts_registered_kinds_and_the_tracer_refuses_unknown_ones_before_computing(model):
    from dataclasses import replace

    from mosaic.conditions import CONDITION_KINDS, ConditionKind, register_condition_kind
    from mosaic.tracing.engine import ImageSet, TraceSettings, trace_model
    from test_traceio import make_trace

    data = make_trace()
    data.condition_kind = np.array(["oracle", "none"] + ["shuffle"] * (data.n_conditions - 2))
    with pytest.raises(MosaicError, match=r"unknown condition kinds \['shuffle'\]"):
        data.validate()
    register_condition_kind(ConditionKind("shuffle", "shuffle:<group>", "test kind", lambda ctx: []))
    try:
        data.validate()  # a registered kind is a valid trace kind
    finally:
        del CONDITION_KINDS["shuffle"]
    states, pids = _world(2, 2, seed=0)
    images = ImageSet(images=torch.zeros(4, 3, 128, 64, dtype=torch.uint8), pid=pids, camid=np.array([1, 2, 1, 2]),
                      path=np.array(["a", "b", "c", "d"]), states=states)
    bogus = replace(resolve_conditions("oracle", SCHEMA)[0], name="bogus", kind="bogus")
    called = []
    model_trunk = model.trunk
    model.trunk = lambda x: called.append(1) or model_trunk(x)
    try:
        with pytest.raises(MosaicError, match=r"unknown condition kinds \['bogus'\]"):
            trace_model(model, images, images, [bogus], TraceSettings(progress=False))
    finally:
        del model.trunk
    assert not called, "kinds are checked before any image is computed"
