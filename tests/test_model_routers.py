"""Routers: oracle one-hot gates, missing and disabled groups, learned router, attribute metrics."""

from __future__ import annotations

import math

import pytest
import torch

from mosaic.core.errors import MosaicError
from mosaic.model.routers import (
    ROUTERS,
    LearnedRouter,
    NullRouter,
    OracleRouter,
    attribute_accuracy,
    attribute_loss,
)
from mosaic.core.schema import AttributeSchema

SCHEMA = AttributeSchema.from_dict(
    {
        "name": "toy",
        "groups": [
            {"name": "gender", "family": "intrinsic", "states": ["male", "female"]},
            {"name": "upcolour", "family": "extrinsic-colour", "states": ["black", "white", "red", "other"]},
            {"name": "backpack", "family": "extrinsic-accessory", "states": ["no", "yes"]},
        ],
    }
)
# experts: gender=male 0, gender=female 1, upcolour 2..5, backpack=no 6, backpack=yes 7


def test_oracle_switches_on_one_expert_per_annotated_group():
    states = torch.tensor([[1, 2, 0], [0, -1, 1], [-1, -1, -1]])
    routing = OracleRouter(SCHEMA).route(states)
    expected = torch.zeros(3, 8)
    expected[0, [1, 4, 6]] = 1
    expected[1, [0, 7]] = 1
    torch.testing.assert_close(routing.gates, expected)
    assert routing.missing.tolist() == [[False, False, False], [False, True, False], [True, True, True]]
    assert routing.n_missing == 4
    for g, name in enumerate(SCHEMA.group_names):  # at most one expert per group and sample
        assert (routing.gates[:, SCHEMA.expert_slice(name)].sum(1) <= 1).all()


def test_oracle_respects_the_enabled_mask():
    states = torch.tensor([[1, 2, 0], [0, -1, 1]])
    enabled = torch.tensor([False, True, True])
    routing = OracleRouter(SCHEMA).route(states, enabled=enabled)
    assert routing.gates[:, SCHEMA.expert_slice("gender")].sum() == 0
    assert routing.gates[0, 4] == 1 and routing.gates[1, 7] == 1
    # a missing state of a disabled group is not counted as switched off for lack of a label
    routing = OracleRouter(SCHEMA).route(states, enabled=torch.tensor([True, False, True]))
    assert routing.n_missing == 0
    assert routing.gates[:, SCHEMA.expert_slice("upcolour")].sum() == 0


def test_oracle_rejects_codes_outside_the_schema():
    with pytest.raises(MosaicError, match="out of range"):
        OracleRouter(SCHEMA).route(torch.tensor([[0, 4, 0]]))
    with pytest.raises(MosaicError, match="needs attribute states"):
        OracleRouter(SCHEMA).route(None)
    with pytest.raises(ValueError, match="enabled must be a bool"):
        OracleRouter(SCHEMA).route(torch.zeros(1, 3, dtype=torch.long), enabled=torch.ones(2, dtype=torch.bool))


def test_none_router_switches_everything_off():
    routing = NullRouter(SCHEMA).route(torch.tensor([[1, 2, 0], [0, 1, 1]]))
    assert routing.gates.shape == (2, 8) and routing.gates.count_nonzero() == 0 and routing.n_missing == 0
    assert set(ROUTERS) >= {"oracle", "learned", "none"}


def test_learned_router_shapes_and_hard_one_hot_gates():
    torch.manual_seed(0)
    router = LearnedRouter(SCHEMA, embed_dim=16, hidden=8)
    tokens = torch.randn(5, 7, 16)
    logits = router.logits(tokens)
    assert list(logits) == list(SCHEMA.group_names)
    assert [tuple(v.shape) for v in logits.values()] == [(5, 2), (5, 4), (5, 2)]
    routing = router.route(tokens=tokens, enabled=torch.tensor([True, True, False]))
    predicted = router.predict(tokens)
    torch.testing.assert_close(routing.gates, OracleRouter(SCHEMA).route(predicted, torch.tensor([True, True, False])).gates)
    assert routing.gates.sum(1).tolist() == [2.0] * 5
    # only the CLS token (index 0) is read
    shuffled = tokens.clone()
    shuffled[:, 1:] = torch.randn(5, 6, 16)
    torch.testing.assert_close(router.logits(shuffled)["upcolour"], logits["upcolour"])
    with pytest.raises(ValueError, match="needs the trunk tokens"):
        router.route(states=predicted)


def test_learned_router_attribute_loss_decreases():
    torch.manual_seed(0)
    router = LearnedRouter(SCHEMA, embed_dim=16)
    tokens = torch.randn(32, 3, 16)
    states = torch.stack([torch.randint(0, 2, (32,)), torch.randint(0, 4, (32,)), torch.randint(0, 2, (32,))], 1)
    states[::5, 1] = -1
    optimizer = torch.optim.Adam(router.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        loss = attribute_loss(router.logits(tokens), states)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    accuracy = attribute_accuracy(router.logits(tokens), states)
    assert all(a > 0.8 for a in accuracy.values()), accuracy


def test_attribute_loss_ignores_missing_labels():
    torch.manual_seed(0)
    logits = {"gender": torch.randn(4, 2), "upcolour": torch.randn(4, 4), "backpack": torch.randn(4, 2)}
    states = torch.tensor([[0, 1, -1], [1, -1, -1], [-1, 3, -1], [0, 0, -1]])
    loss = attribute_loss(logits, states)
    changed = {k: v.clone() for k, v in logits.items()}
    changed["gender"][2] += 100.0  # sample 2 has no gender label
    changed["backpack"] += 100.0 * torch.randn(4, 2)  # no backpack labels at all
    torch.testing.assert_close(attribute_loss(changed, states), loss)
    assert torch.isfinite(loss)
    ce = torch.nn.functional.cross_entropy
    expected = (ce(logits["gender"][[0, 1, 3]], torch.tensor([0, 1, 0])) + ce(logits["upcolour"][[0, 2, 3]], torch.tensor([1, 3, 0]))) / 3
    torch.testing.assert_close(loss, expected)


def test_attribute_accuracy_per_group():
    logits = {
        "gender": torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]),
        "upcolour": torch.tensor([[0.0, 0.0, 1.0, 0.0]] * 3),
        "backpack": torch.zeros(3, 2),
    }
    states = torch.tensor([[0, 2, -1], [0, 1, -1], [-1, 2, -1]])
    acc = attribute_accuracy(logits, states)
    assert acc["gender"] == pytest.approx(0.5)
    assert acc["upcolour"] == pytest.approx(2 / 3)
    assert math.isnan(acc["backpack"])


def test_oracle_route_makes_no_host_sync_once_the_codes_are_checked():
    from syncs import count_syncs

    router = OracleRouter(SCHEMA)
    states = torch.tensor([[1, 2, 0], [0, -1, 1], [-1, -1, -1]])
    router.check_codes(states.numpy())  # once, on the host
    with count_syncs() as syncs:
        routing = router.route(states, check_codes=False)
    assert syncs.events == []
    with count_syncs() as checked:  # the per-batch check reads the codes on the host
        torch.testing.assert_close(routing.gates, router.route(states).gates)
    assert checked.count > 0
    with pytest.raises(MosaicError, match="out of range"):
        router.check_codes([[0, 4, 0]])
    with pytest.raises(MosaicError, match="no training state shares"):
        router.check_codes([[0, -2, 0]])
    router.check_codes([[0, -2, 0]], enabled=[True, False, True])  # a disabled group's FIXED is never used


def test_oracle_fixed_gates_are_branch_free_and_exact():
    router = OracleRouter(SCHEMA)
    router.set_fixed_gates([0.3, 0.7, 0.1, 0.2, 0.3, 0.4, 0.6, 0.4])
    states = torch.tensor([[1, -2, 0], [0, 3, 1]])
    gates = router.route(states).gates
    assert gates[0, 2:6].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4]) and gates[0, 1] == 1
    assert torch.equal(gates[1], router.route(states[1:]).gates[0])  # rows without FIXED are plain one-hots
    unset = OracleRouter(SCHEMA).route(states[1:], check_codes=False).gates
    assert torch.isfinite(unset).all()  # unset (NaN) fixed gates never leak into a row that does not use them
