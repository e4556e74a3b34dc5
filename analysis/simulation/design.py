"""The design of a simulated experiment (:mod:`analysis.simulation.trace`): the attribute schema, the planted
effects and their spread over identities, the missing annotations, and which conditions remove
which group's information for whom."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from mosaic.core.errors import MosaicError
from mosaic.core.schema import FAMILIES, AttributeGroup, AttributeSchema, load_schema

__all__ = ["DEFAULT_KINDS", "condition_plan", "resolve_effect_sd", "resolve_effects", "resolve_missing", "resolve_schema",
           "synthetic_schema"]

DEFAULT_KINDS = ("oracle", "none", "drop", "only", "counterfactual", "subset")


def synthetic_schema(n_groups: int, *, n_states: int = 3) -> AttributeSchema:
    """A schema of ``n_groups`` groups ``g00, g01, ...`` spread over the four fine families in turn."""
    if n_groups < 1:
        raise MosaicError(f"a synthetic schema needs at least one group, got {n_groups}")
    groups = tuple(
        AttributeGroup(
            name=f"g{i:02d}",
            family=FAMILIES[i % len(FAMILIES)],
            states=tuple(f"s{j}" for j in range(n_states)),
            description=f"synthetic group {i}",
        )
        for i in range(n_groups)
    )
    return AttributeSchema(name=f"synthetic-{n_groups}", groups=groups, description="simulated groups")


def resolve_schema(groups: AttributeSchema | str | int | os.PathLike | None) -> AttributeSchema:
    if groups is None:
        return load_schema("market1501")
    if isinstance(groups, AttributeSchema):
        return groups
    if isinstance(groups, (int, np.integer)) and not isinstance(groups, bool):
        return synthetic_schema(int(groups))
    if isinstance(groups, (str, os.PathLike)):
        return load_schema(groups)
    raise MosaicError(
        f"groups must be None, a number of groups, a schema name/path or an AttributeSchema, got {type(groups).__name__}"
    )


def resolve_effects(schema: AttributeSchema, effects: Mapping[str, float] | None) -> np.ndarray:
    out = np.zeros(len(schema.groups))
    for name, value in dict(effects or {}).items():
        value = float(value)
        if not np.isfinite(value):
            raise MosaicError(f"planted effect of group {name!r} is {value}: use a finite number")
        out[schema.group_index(name)] = value
    return out


def resolve_effect_sd(schema: AttributeSchema, effect_sd: float | Mapping[str, float]) -> np.ndarray:
    """Per-group sd of the identity-level effect; a mapping sets it per group (others 0)."""
    if isinstance(effect_sd, Mapping):
        out = np.zeros(len(schema.groups))
        for name, value in effect_sd.items():
            out[schema.group_index(name)] = float(value)
    else:
        out = np.full(len(schema.groups), float(effect_sd))
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise MosaicError(f"effect_sd must be a finite number >= 0 (or {{group: sd}}), got {effect_sd}")
    return out


def resolve_missing(schema: AttributeSchema, missing_rate: float | Mapping[str, float]) -> np.ndarray:
    """Per-group share of unannotated identities; a mapping overrides the 0.05 default per group."""
    if isinstance(missing_rate, Mapping):
        out = np.full(len(schema.groups), 0.05)
        for name, value in missing_rate.items():
            out[schema.group_index(name)] = float(value)
    else:
        out = np.full(len(schema.groups), float(missing_rate))
    if np.any((out < 0) | (out > 1)):
        raise MosaicError(f"missing_rate must lie in [0, 1], got {missing_rate}")
    return out


def condition_plan(schema: AttributeSchema, kinds: Sequence[str], n_subsets: int, rng) -> tuple[list, list, list, np.ndarray]:
    """Names, kinds, target groups and enabled-group masks of the simulated conditions."""
    unknown = sorted(set(kinds) - set(DEFAULT_KINDS))
    if unknown:
        raise MosaicError(f"cannot simulate condition kinds {unknown}: choose from {list(DEFAULT_KINDS)}")
    if "oracle" not in kinds:
        raise MosaicError("a simulated trace needs the 'oracle' condition: every comparison is made against it")
    G = len(schema.groups)
    names, kind_of, target, enabled = [], [], [], []

    def add(name: str, kind: str, group: str, mask: np.ndarray) -> None:
        names.append(name), kind_of.append(kind), target.append(group), enabled.append(mask)

    for kind in DEFAULT_KINDS:  # fixed order, whatever order the caller listed them in
        if kind not in kinds:
            continue
        if kind == "oracle":
            add("oracle", "oracle", "", np.ones(G, bool))
        elif kind == "none":
            add("none", "none", "", np.zeros(G, bool))
        elif kind in ("drop", "only", "counterfactual"):
            for g, group in enumerate(schema.groups):
                # drop: all but g; only: g alone; counterfactual: all, g routed by another identity
                mask = np.zeros(G, bool) if kind == "only" else np.ones(G, bool)
                mask[g] = kind != "drop"
                add(f"{kind}:{group.name}", kind, group.name, mask)
        elif kind == "subset":
            for i in range(n_subsets):
                add(f"subset:{i}", "subset", "", rng.random(G) < 0.5)
    return names, kind_of, target, np.asarray(enabled, dtype=bool).reshape(len(names), G)
