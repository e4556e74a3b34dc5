"""The first seven condition kinds: ``oracle``, ``none``, ``drop:<group>``, ``only:<group>``,
``counterfactual:<group>``, ``subset:<i>`` and ``learned`` (the table of every kind is in
:mod:`mosaic.conditions`; ``fixed``, ``relabel`` and ``code`` are in :mod:`.interventions`).

Per group the kinds separate what a group's experts contribute: ``fixed`` removes the group's
information and keeps its capacity, ``drop`` removes both, ``counterfactual`` misroutes the queries
(how far a wrong route misleads retrieval), ``relabel`` keeps the identity partition and breaks the
states' meaning, and ``code`` is what the attribute code alone retrieves.

Routing carries no information of its own: an image whose state is missing for an enabled group
is routed like any other image (:func:`mosaic.conditions.interventions.fill_missing_routes`: the learned
router's prediction, else the group's fixed gates), never left off while annotated images are on.

They register in :data:`mosaic.conditions.registry.CONDITION_KINDS`, in this order. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mosaic.conditions.registry import (
    Condition,
    ConditionContext,
    ConditionKind,
    group_mask,
    group_seed,
    per_group,
    register_condition_kind,
    unknown_group,
)
from mosaic.core.schema import MISSING, AttributeSchema

__all__ = ["CounterfactualStates", "default_n_subsets", "subset_masks"]


@dataclass(frozen=True)
class CounterfactualStates:
    """Route one group of the queries by another identity's state.

    Every identity gets one donor identity (a seeded derangement over the identities that have a
    known state for the group, pairing identities of *different* states wherever the state counts
    allow); each of its query images is routed by the donor's state, while the gallery keeps its
    own annotation. Images whose own state is missing stay missing (the oracle leaves them off
    either way).

    Why the query side only: routing query *and* gallery of every identity by the same donor
    relabels the states but keeps the partition of identities they induce, so the routing would
    still tell true matches apart from the others (an identity code), and a group that separates
    identities would lose nothing. With the gallery keeping its annotation, the query's state no
    longer agrees with its true matches: the group's identity information is gone, the expert
    (its capacity) stays on. A group every identity shares (no information) gets a donor of the
    same state and so exactly the oracle's routing.

    ``apply`` must see all images that should share the mapping at once (the tracer passes query
    and gallery together): the donor assignment is computed from the identities present.
    """

    group_index: int
    seed: int

    def identity_states(self, states: np.ndarray, pids: np.ndarray) -> dict[int, int]:
        """Each identity's state for the group: the most frequent known code over its images."""
        codes = np.asarray(states)[:, self.group_index].astype(np.int64)
        pids = np.asarray(pids).astype(np.int64)
        known = codes != MISSING
        out: dict[int, int] = {}
        if not known.any():
            return out
        pairs, counts = np.unique(np.stack([pids[known], codes[known]], axis=1), axis=0, return_counts=True)
        # np.unique sorts by (pid, code); a stable sort by count keeps the smallest code on ties
        for (pid, code), _ in sorted(zip(pairs.tolist(), counts.tolist()), key=lambda t: -t[1]):
            out.setdefault(int(pid), int(code))
        return out

    def donors(self, states: np.ndarray, pids: np.ndarray) -> dict[int, int]:
        """Identity -> donor identity.

        Identities are shuffled within their state, states are laid out largest first, and each
        identity takes the donor ``m`` places further round the circle, ``m`` being the size of
        the largest state: this gives every identity a donor of a different state whenever no
        state holds more than half of the identities, and as many as possible otherwise.
        """
        own = self.identity_states(states, pids)
        if len(own) < 2:
            return {pid: pid for pid in own}
        rng = np.random.default_rng([self.seed, self.group_index])
        by_state: dict[int, list[int]] = {}
        for pid in sorted(own):
            by_state.setdefault(own[pid], []).append(pid)
        state_order = sorted(by_state, key=lambda s: (-len(by_state[s]), rng.random()))
        circle = [pid for s in state_order for pid in rng.permutation(by_state[s]).tolist()]
        n, m = len(circle), len(by_state[state_order[0]])
        shift = m if m < n else 1  # a single state everywhere: any derangement will do
        return {circle[i]: circle[(i + shift) % n] for i in range(n)}

    def apply(self, states: np.ndarray, pids: np.ndarray, is_query: np.ndarray | None = None) -> np.ndarray:
        states = np.asarray(states)
        own = self.identity_states(states, pids)
        donor_state = {pid: own[donor] for pid, donor in self.donors(states, pids).items()}
        out = states.copy()
        column = out[:, self.group_index]
        known = column != MISSING
        if is_query is not None:
            known &= np.asarray(is_query, dtype=bool)
        replaced = np.array([donor_state.get(int(p), MISSING) for p in np.asarray(pids)[known]], dtype=column.dtype)
        column[known] = np.where(replaced != MISSING, replaced, column[known])
        return out

    def __str__(self) -> str:
        return f"counterfactual (group {self.group_index}, seed {self.seed})"


def default_n_subsets(schema: AttributeSchema) -> int:
    """Random subsets needed for >= 5 configurations per parameter of a configuration-level GLM.

    The GLM has G + 1 parameters (intercept and one indicator per group); oracle, none, the G drops
    and the G onlys already give 2 + 2G configurations. A schema with fewer distinct masks left
    (G <= 4) gets all of them, once (:func:`subset_masks`).
    """
    G = len(schema.groups)
    return max(0, 5 * (G + 1) - (2 + 2 * G))


def subset_masks(schema: AttributeSchema, n: int, seed: int) -> list[tuple[bool, ...]]:
    """``n`` distinct seeded random enabled-group masks, none equal to oracle/none/drop/only.

    Each group is on with probability 1/2, as in the paper's random configurations. The list for
    ``n`` is a prefix of the list for any larger ``n``, and may be shorter than ``n`` when the
    schema has fewer distinct masks left.
    """
    G = len(schema.groups)
    taken = {tuple([True] * G), tuple([False] * G)}
    for i in range(G):
        taken.add(tuple(j != i for j in range(G)))
        taken.add(tuple(j == i for j in range(G)))
    rng = np.random.default_rng(group_seed(seed, "subset"))
    if G <= 12:
        # few enough to enumerate: a seeded permutation of all remaining masks
        every = [tuple(bool((m >> j) & 1) for j in range(G)) for m in range(2**G)]
        remaining = [m for m in every if m not in taken]
        order = rng.permutation(len(remaining))
        return [remaining[i] for i in order[:n]]
    out: list[tuple[bool, ...]] = []
    while len(out) < n:
        mask = tuple(bool(b) for b in rng.random(G) < 0.5)
        if mask not in taken:
            taken.add(mask)
            out.append(mask)
    return out


def _n_subsets(ctx: ConditionContext) -> int:
    return default_n_subsets(ctx.schema) if ctx.n_subsets is None else int(ctx.n_subsets)


def _expand_subsets(ctx: ConditionContext) -> list[Condition]:
    return [
        Condition(name=f"subset:{i}", kind="subset", group="", enabled=mask)
        for i, mask in enumerate(subset_masks(ctx.schema, _n_subsets(ctx), ctx.seed))
    ]


def _subsets_unavailable(ctx: ConditionContext) -> str | None:
    if _n_subsets(ctx) <= 0:
        return "--subsets is 0"
    if not subset_masks(ctx.schema, 1, ctx.seed):
        G = len(ctx.schema.groups)
        return f"with {G} groups every set of enabled groups is already oracle, none, a drop or an only"
    return None


register_condition_kind(ConditionKind(
    "oracle", "oracle", "every group routed by its ground-truth state",
    lambda ctx: [Condition("oracle", "oracle", "", group_mask(ctx.schema))],
))
register_condition_kind(ConditionKind(
    "none", "none", "no expert at all (the backbone alone)",
    lambda ctx: [Condition("none", "none", "", group_mask(ctx.schema, on=()), router="none")],
))
register_condition_kind(ConditionKind(
    "drop", "drop:<group>", "every group except <group>",
    per_group(lambda ctx, i, g: Condition(f"drop:{g}", "drop", g, group_mask(ctx.schema, off=[g]))),
    why_not=unknown_group,
))
register_condition_kind(ConditionKind(
    "only", "only:<group>", "<group> alone",
    per_group(lambda ctx, i, g: Condition(f"only:{g}", "only", g, group_mask(ctx.schema, on=[g]))),
    why_not=unknown_group,
))
register_condition_kind(ConditionKind(
    "counterfactual", "counterfactual:<group>", "every group, <group> routed by another identity's state",
    per_group(lambda ctx, i, g: Condition(
        f"counterfactual:{g}", "counterfactual", g, group_mask(ctx.schema),
        transform=CounterfactualStates(group_index=i, seed=group_seed(ctx.seed, g)),
    )),
    why_not=unknown_group,
))
register_condition_kind(ConditionKind(
    "subset", "subset:<i>", "the i-th seeded random set of enabled groups (--subsets sets how many)",
    _expand_subsets,
    unavailable=_subsets_unavailable,
))
register_condition_kind(ConditionKind(
    "learned", "learned", "every group routed by the model's learned router",
    lambda ctx: [Condition("learned", "learned", "", group_mask(ctx.schema), router="learned")] if ctx.has_learned else [],
    unavailable=lambda ctx: None if ctx.has_learned else "the checkpoint has no learned router",
))
