"""Routing conditions: kinds, patterns, counterfactual donors, seeded subsets."""

from __future__ import annotations

import numpy as np
import pytest

from mosaic.conditions import (
    CounterfactualStates,
    default_n_subsets,
    resolve_conditions,
    subset_masks,
)
from mosaic.core.errors import MosaicError
from mosaic.core.schema import MISSING, AttributeSchema

SCHEMA = AttributeSchema.from_dict(
    {
        "name": "toy",
        "groups": [
            {"name": "gender", "family": "intrinsic", "states": ["male", "female"]},
            {"name": "upcolour", "family": "extrinsic-colour", "states": ["black", "white", "red", "other"]},
            {"name": "hat", "family": "extrinsic-accessory", "states": ["no", "yes"]},
            {"name": "bag", "family": "extrinsic-accessory", "states": ["no", "yes"]},
        ],
    }
)
G = len(SCHEMA.groups)


def by_name(conditions):
    return {c.name: c for c in conditions}


def _binary_schema(n_groups: int) -> AttributeSchema:
    groups = [{"name": f"g{i}", "family": "intrinsic", "states": ["no", "yes"]} for i in range(n_groups)]
    return AttributeSchema.from_dict({"name": f"binary{n_groups}", "groups": groups})


def test_default_set_has_every_kind_and_enough_configurations():
    schema = _binary_schema(6)
    G = len(schema.groups)
    conds = resolve_conditions(None, schema, seed=0)
    kinds = [c.kind for c in conds]
    assert kinds.count("oracle") == 1 and kinds.count("none") == 1
    assert kinds.count("drop") == G and kinds.count("only") == G and kinds.count("counterfactual") == G
    assert "learned" not in kinds
    configurations = [c for c in conds if c.kind in ("oracle", "none", "drop", "only", "subset")]
    assert len(configurations) >= 5 * (G + 1)
    assert kinds.count("subset") == default_n_subsets(schema) == 5 * (G + 1) - (2 + 2 * G)
    # every configuration is a distinct enabled mask: a duplicate would be a wasted GLM row
    assert len({c.enabled for c in configurations}) == len(configurations)
    assert "learned" in by_name(resolve_conditions(None, schema, has_learned=True))
    # a schema too small for that many distinct masks gets all of them, once
    small = resolve_conditions(None, SCHEMA)
    assert sum(c.kind == "subset" for c in small) == 2**4 - (2 + 2 * 4)


def test_masks_and_routers_per_kind():
    conds = by_name(resolve_conditions("oracle,none,drop:*,only:*,counterfactual:hat", SCHEMA))
    assert conds["oracle"].enabled == (True,) * G and conds["oracle"].router == "oracle"
    assert conds["none"].enabled == (False,) * G and conds["none"].router == "none"
    for i, g in enumerate(SCHEMA.group_names):
        drop, only = conds[f"drop:{g}"], conds[f"only:{g}"]
        assert drop.group == only.group == g
        assert [not e for e in drop.enabled] == [j == i for j in range(G)]
        assert list(only.enabled) == [j == i for j in range(G)]
    cf = conds["counterfactual:hat"]
    assert cf.enabled == (True,) * G and cf.kind == "counterfactual" and cf.group == "hat"


def test_patterns_order_dedup_and_fnmatch():
    conds = resolve_conditions(["only:up*", "oracle,only:*"], SCHEMA)
    assert [c.name for c in conds][:2] == ["only:upcolour", "oracle"]
    assert [c.name for c in conds].count("only:upcolour") == 1
    assert len(conds) == 2 + G - 1


def test_unknown_pattern_lists_kinds():
    with pytest.raises(MosaicError, match=r"'drop:shoes' matches nothing: unknown group 'shoes' .*groups are gender, upcolour, hat, bag"):
        resolve_conditions("drop:shoes", SCHEMA)
    with pytest.raises(MosaicError, match=r"'bogus' matches nothing: available kinds are oracle, none, drop:<group>.*groups: gender, upcolour, hat, bag"):
        resolve_conditions("bogus", SCHEMA)
    with pytest.raises(MosaicError, match="no learned router"):
        resolve_conditions("learned", SCHEMA)
    with pytest.raises(MosaicError, match="--subsets is 0"):
        resolve_conditions("subset:*", SCHEMA, n_subsets=0)
    with pytest.raises(MosaicError, match="subsets 0..2"):
        resolve_conditions("subset:7", SCHEMA, n_subsets=3)


def test_subsets_seeded_reproducible_and_prefix_stable():
    a = subset_masks(SCHEMA, 5, seed=1)
    assert a == subset_masks(SCHEMA, 5, seed=1)
    assert subset_masks(SCHEMA, 8, seed=1)[:5] == a
    assert a != subset_masks(SCHEMA, 5, seed=2)
    # with G = 4 there are 16 - (2 + 8) = 6 masks left; asking for more gives all of them once
    assert len(set(subset_masks(SCHEMA, 50, seed=0))) == len(subset_masks(SCHEMA, 50, seed=0)) == 6
    big = _binary_schema(16)
    masks = subset_masks(big, 40, seed=3)
    assert len(set(masks)) == 40 and masks == subset_masks(big, 40, seed=3)
    assert 0.3 < np.mean(masks) < 0.7


def _world(seed=0, n_ids=30, per_id=4):
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(1, n_ids + 1), per_id)
    id_states = np.stack([rng.integers(0, len(g.states), n_ids) for g in SCHEMA.groups], axis=1)
    states = id_states[pids - 1].astype(np.int16)
    states[rng.random(len(pids)) < 0.1, 1] = MISSING  # some images unannotated
    distractors = np.zeros(5, dtype=pids.dtype)
    return np.concatenate([pids, distractors]), np.concatenate([states, np.full((5, G), MISSING, np.int16)])


def test_counterfactual_reroutes_only_the_queries():
    pids, states = _world()
    cf = by_name(resolve_conditions("counterfactual:upcolour", SCHEMA, seed=5))["counterfactual:upcolour"]
    is_query = np.zeros(len(pids), bool)
    is_query[::4] = True  # one query per identity, the rest is gallery
    out = cf.route_states(states, pids, is_query)
    np.testing.assert_array_equal(out[~is_query], states[~is_query])
    everywhere = cf.route_states(states, pids)
    np.testing.assert_array_equal(out[is_query], everywhere[is_query])  # the same donors either way
    assert (out[is_query, 1] != states[is_query, 1])[states[is_query, 1] != MISSING].all()


def test_counterfactual_of_a_group_everyone_shares_is_the_oracle():
    pids, states = _world()
    states[states[:, 1] != MISSING, 1] = 2
    cf = by_name(resolve_conditions("counterfactual:upcolour", SCHEMA, seed=5))["counterfactual:upcolour"]
    np.testing.assert_array_equal(cf.route_states(states, pids, np.ones(len(pids), bool)), states)


def test_counterfactual_identity_consistent_and_different():
    pids, states = _world()
    cf = by_name(resolve_conditions("counterfactual:*", SCHEMA, seed=5))["counterfactual:upcolour"]
    out = cf.route_states(states, pids)
    g = 1
    # other groups untouched, missing stays missing, distractors untouched
    np.testing.assert_array_equal(np.delete(out, g, axis=1), np.delete(states, g, axis=1))
    assert ((states[:, g] == MISSING) == (out[:, g] == MISSING)).all()
    # one replacement state per identity, over query and gallery images alike
    known = out[:, g] != MISSING
    for pid in np.unique(pids[known]):
        assert len(np.unique(out[known & (pids == pid), g])) == 1
    # the state really changes for every identity when no state holds half of the identities
    changed = out[known, g] != states[known, g]
    assert changed.all()
    # donors form a derangement of the identities
    donors = cf.transform.donors(states, pids)
    assert sorted(donors) == sorted(donors.values())
    assert all(a != b for a, b in donors.items())


def test_counterfactual_is_seeded():
    pids, states = _world()
    a = CounterfactualStates(group_index=1, seed=11)
    assert a.donors(states, pids) == CounterfactualStates(group_index=1, seed=11).donors(states, pids)
    assert a.donors(states, pids) != CounterfactualStates(group_index=1, seed=12).donors(states, pids)
    first = by_name(resolve_conditions("counterfactual:*", SCHEMA, seed=0))
    again = by_name(resolve_conditions("counterfactual:*", SCHEMA, seed=0))
    other = by_name(resolve_conditions("counterfactual:*", SCHEMA, seed=1))
    assert first["counterfactual:hat"].transform == again["counterfactual:hat"].transform
    assert first["counterfactual:hat"].transform != other["counterfactual:hat"].transform


def test_counterfactual_with_a_dominant_state_changes_as_many_as_possible():
    pids = np.arange(1, 11)
    states = np.zeros((10, G), np.int16)
    states[:3, 2] = 1  # hat: 7 "no", 3 "yes"
    out = CounterfactualStates(group_index=2, seed=0).apply(states, pids)
    # only 3 "yes" donors exist for 7 "no" identities: 3 + 3 identities can change, no more
    assert (out[:, 2] != states[:, 2]).sum() == 6
    assert sorted(out[:, 2].tolist()) == sorted(states[:, 2].tolist())  # donors are a permutation


def test_tiny_schema_default_set_skips_missing_subsets():
    tiny = _binary_schema(3)  # 8 masks, all taken by oracle/none/drop/only
    conds = resolve_conditions(None, tiny)
    # oracle, none, 3 x (drop, only, counterfactual, relabel), code; no fixed:* without state shares
    assert [c.kind for c in conds].count("subset") == 0 and len(conds) == 2 + 3 * 4 + 1
    with pytest.raises(MosaicError, match="already oracle, none, a drop or an only"):
        resolve_conditions("subset:*", tiny)
