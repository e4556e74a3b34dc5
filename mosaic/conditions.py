"""Routing conditions: which experts the router may switch on, and from which states.

A condition is one routing of experts applied to every query and gallery image alike. The kinds
(:data:`CONDITION_KINDS`, a registry) are

============================  ===============================================================
``oracle``                    every group routed by its ground-truth state
``none``                      no expert: the backbone alone
``drop:<group>``              every group but one
``only:<group>``              one group alone
``counterfactual:<group>``    every group, but ``<group>`` routed by *another identity's* state
``subset:<i>``                a seeded random set of enabled groups (the paper's configurations)
``learned``                   every group routed by the model's learned router (if it has one)
``fixed:<group>``             every group, ``<group>`` routed by the same fixed gates for every image
``relabel:<group>``           every group, ``<group>``'s states consistently permuted (a derangement)
``code``                      no model: retrieval by the distance between attribute codes
============================  ===============================================================

(the last three live in :mod:`mosaic.interventions`). Per group they separate what a group's
experts contribute: ``fixed`` removes the group's information and keeps its capacity, ``drop``
removes both, ``counterfactual`` misroutes the queries (how far a wrong route misleads
retrieval), ``relabel`` keeps the identity partition and breaks the states' meaning, and ``code``
is what the attribute code alone retrieves.

Routing carries no information of its own: an image whose state is missing for an enabled group
is routed like any other image (:func:`mosaic.interventions.fill_missing_routes`: the learned
router's prediction, else the group's fixed gates), never left off while annotated images are on.

Conditions are selected with comma-separated fnmatch patterns over their names
(``"oracle,drop:*,only:upcolour"``). This module is torch-free: a condition resolves to a name,
kind, target group, enabled mask ``(G,)``, router name, and a state transform that the tracer
applies to the state codes before routing.
"""

from __future__ import annotations

import fnmatch
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from mosaic.errors import MosaicError
from mosaic.schema import MISSING, AttributeSchema

__all__ = [
    "Condition",
    "ConditionContext",
    "ConditionKind",
    "CONDITION_KINDS",
    "CounterfactualStates",
    "FIXED_GATE_MODES",
    "IdentityStates",
    "StateTransform",
    "available_conditions",
    "default_n_subsets",
    "default_patterns",
    "register_condition_kind",
    "resolve_conditions",
    "subset_masks",
    "unknown_group",
]


# ----------------------------------------------------------------------------- state transforms

class StateTransform(Protocol):
    """Maps the state codes of a set of images (and their identities) to the codes to route by.

    ``is_query`` marks the query images among them (``None``: treat every image as a query).
    """

    def apply(self, states: np.ndarray, pids: np.ndarray, is_query: np.ndarray | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class IdentityStates:
    """Route by the ground-truth states, unchanged."""

    def apply(self, states: np.ndarray, pids: np.ndarray, is_query: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(states)

    def __str__(self) -> str:
        return "ground truth"


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


# ----------------------------------------------------------------------------------- conditions

@dataclass(frozen=True)
class Condition:
    """One routing of experts.

    Attributes:
        name: unique, e.g. ``drop:hat``.
        kind: a key of :data:`CONDITION_KINDS`.
        group: the group a ``drop`` / ``only`` / ``counterfactual`` acts on, ``""`` otherwise.
        enabled: ``(G,)`` bools in schema group order: groups whose experts may switch on.
        router: ``"oracle"``, ``"learned"`` or ``"none"``.
        transform: maps ground-truth state codes to the codes the router sees.
        code_tie_seed: ``None`` for a condition scored by the model's features; otherwise the
            condition is scored by attribute-code distances (:mod:`mosaic.codes`), ties broken in
            the gallery order this seed permutes.
    """

    name: str
    kind: str
    group: str
    enabled: tuple[bool, ...]
    router: str = "oracle"
    transform: StateTransform = field(default_factory=IdentityStates)
    code_tie_seed: int | None = None

    @property
    def enabled_mask(self) -> np.ndarray:
        return np.array(self.enabled, dtype=bool)

    @property
    def n_enabled(self) -> int:
        return int(sum(self.enabled))

    @property
    def by_code(self) -> bool:
        return self.code_tie_seed is not None

    @property
    def needs_fixed_gates(self) -> bool:
        """Whether the routes use the groups' fixed gates (``FIXED`` codes) whatever the images."""
        return bool(getattr(self.transform, "uses_fixed_gates", False))

    def route_states(self, states: np.ndarray, pids: np.ndarray, is_query: np.ndarray | None = None) -> np.ndarray:
        """The state codes the router sees for these images (all images that share a mapping);
        ``is_query`` marks the queries (``None``: every image is one)."""
        return self.transform.apply(states, pids, is_query)


@dataclass(frozen=True)
class ConditionContext:
    """What expanding the condition kinds depends on."""

    schema: AttributeSchema
    n_subsets: int | None = None  # None: default_n_subsets(schema)
    seed: int = 0
    has_learned: bool = False
    # per group, each state's share among the training identities (None: unknown -> no fixed:*)
    state_shares: Mapping[str, Sequence[float]] | None = None
    fixed_gates: str = "shares"  # fixed:<g> gates: "shares" (share-weighted mixture) or "majority"
    has_annotations: bool = True  # whether query and gallery carry attribute states (code needs them)

    @property
    def subsets(self) -> int:
        return default_n_subsets(self.schema) if self.n_subsets is None else int(self.n_subsets)


@dataclass(frozen=True)
class ConditionKind:
    """A family of conditions: how to name them (for help texts) and how to list them."""

    name: str
    syntax: str
    help: str
    expand: Callable[[ConditionContext], list[Condition]]
    # why the kind offers nothing in this context (shown when a pattern asks for it), or None
    unavailable: Callable[[ConditionContext], str | None] = lambda ctx: None
    # why a pattern of this kind that matched nothing cannot (e.g. "group 'hat' has one state"), or None
    why_not: Callable[[ConditionContext, str], str | None] = lambda ctx, pattern: None
    in_default: bool = True  # part of the default selection (name, or name:* for per-group kinds)

    @property
    def default_pattern(self) -> str:
        return self.name + (":*" if ":" in self.syntax else "")


CONDITION_KINDS: dict[str, ConditionKind] = {}


def register_condition_kind(kind: ConditionKind, *, overwrite: bool = False) -> ConditionKind:
    if kind.name in CONDITION_KINDS and not overwrite:
        raise ValueError(f"condition kind {kind.name!r} is already registered")
    CONDITION_KINDS[kind.name] = kind
    return kind


def _mask(schema: AttributeSchema, on: Iterable[str] | None = None, off: Iterable[str] = ()) -> tuple[bool, ...]:
    on_set = set(schema.group_names if on is None else on)
    off_set = set(off)
    return tuple(g in on_set and g not in off_set for g in schema.group_names)


def _group_seed(seed: int, name: str) -> int:
    # stable across processes (unlike hash()), so a condition's randomness depends on its name only
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**32)


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
    rng = np.random.default_rng(_group_seed(seed, "subset"))
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


def _expand_subsets(ctx: ConditionContext) -> list[Condition]:
    return [
        Condition(name=f"subset:{i}", kind="subset", group="", enabled=mask)
        for i, mask in enumerate(subset_masks(ctx.schema, ctx.subsets, ctx.seed))
    ]


def _subsets_unavailable(ctx: ConditionContext) -> str | None:
    if ctx.subsets <= 0:
        return "--subsets is 0"
    if not subset_masks(ctx.schema, 1, ctx.seed):
        G = len(ctx.schema.groups)
        return f"with {G} groups every set of enabled groups is already oracle, none, a drop or an only"
    return None


def _per_group(build: Callable[[ConditionContext, int, str], Condition]):
    def expand(ctx: ConditionContext) -> list[Condition]:
        return [build(ctx, i, g) for i, g in enumerate(ctx.schema.group_names)]

    return expand


def unknown_group(ctx: ConditionContext, pattern: str) -> str | None:
    """For a per-group kind: the pattern names a group the schema lacks (no wildcard in it)."""
    kind, _, group = pattern.partition(":")
    if group and not any(ch in group for ch in "*?[") and group not in ctx.schema.group_names:
        return f"unknown group {group!r} in {pattern!r}: groups are {', '.join(ctx.schema.group_names)}"
    return None


register_condition_kind(ConditionKind(
    "oracle", "oracle", "every group routed by its ground-truth state",
    lambda ctx: [Condition("oracle", "oracle", "", _mask(ctx.schema))],
))
register_condition_kind(ConditionKind(
    "none", "none", "no expert at all (the backbone alone)",
    lambda ctx: [Condition("none", "none", "", _mask(ctx.schema, on=()), router="none")],
))
register_condition_kind(ConditionKind(
    "drop", "drop:<group>", "every group except <group>",
    _per_group(lambda ctx, i, g: Condition(f"drop:{g}", "drop", g, _mask(ctx.schema, off=[g]))),
    why_not=unknown_group,
))
register_condition_kind(ConditionKind(
    "only", "only:<group>", "<group> alone",
    _per_group(lambda ctx, i, g: Condition(f"only:{g}", "only", g, _mask(ctx.schema, on=[g]))),
    why_not=unknown_group,
))
register_condition_kind(ConditionKind(
    "counterfactual", "counterfactual:<group>", "every group, <group> routed by another identity's state",
    _per_group(lambda ctx, i, g: Condition(
        f"counterfactual:{g}", "counterfactual", g, _mask(ctx.schema),
        transform=CounterfactualStates(group_index=i, seed=_group_seed(ctx.seed, g)),
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
    lambda ctx: [Condition("learned", "learned", "", _mask(ctx.schema), router="learned")] if ctx.has_learned else [],
    unavailable=lambda ctx: None if ctx.has_learned else "the checkpoint has no learned router",
))


def available_conditions(ctx: ConditionContext) -> list[Condition]:
    """Every condition the registered kinds offer in this context, in registry order."""
    return [c for kind in CONDITION_KINDS.values() for c in kind.expand(ctx)]


def default_patterns(has_learned: bool = False) -> list[str]:
    """The default selection: every registered kind meant for it, in registry order (``learned``
    only when the model has a learned router)."""
    return [
        kind.default_pattern
        for kind in CONDITION_KINDS.values()
        if kind.in_default and (kind.name != "learned" or has_learned)
    ]


def _split_patterns(patterns: str | Sequence[str] | None) -> list[str]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    return [p.strip() for item in patterns for p in str(item).split(",") if p.strip()]


def _kinds_help(ctx: ConditionContext) -> str:
    parts = []
    for kind in CONDITION_KINDS.values():
        why = kind.unavailable(ctx)
        parts.append(kind.syntax + (f" (unavailable: {why})" if why else ""))
    return ", ".join(parts)


def resolve_conditions(
    patterns: str | Sequence[str] | None,
    schema: AttributeSchema,
    *,
    n_subsets: int | None = None,
    seed: int = 0,
    has_learned: bool = False,
    state_shares: Mapping[str, Sequence[float]] | None = None,
    fixed_gates: str = "shares",
    has_annotations: bool = True,
) -> list[Condition]:
    """Conditions selected by comma-separated fnmatch ``patterns`` (``None``: the default set).

    Order follows the patterns, then the registry order within a pattern; a condition matched twice
    appears once. A pattern that matches nothing raises :class:`MosaicError` naming the kinds and
    groups available.
    """
    ctx = ConditionContext(
        schema=schema, n_subsets=n_subsets, seed=seed, has_learned=has_learned,
        state_shares=state_shares, fixed_gates=fixed_gates, has_annotations=has_annotations,
    )
    if n_subsets is not None and n_subsets < 0:
        raise MosaicError(f"--subsets must be >= 0, got {n_subsets}")
    if fixed_gates not in FIXED_GATE_MODES:
        raise MosaicError(f"--fixed-gates must be one of {list(FIXED_GATE_MODES)}, got {fixed_gates!r}")
    requested = _split_patterns(patterns)
    # the default set takes whatever each kind offers: a small schema may have no subset left
    lenient = not requested
    requested = requested or default_patterns(has_learned)
    offered = available_conditions(ctx)
    by_name = {c.name: c for c in offered}
    n_subsets = sum(c.kind == "subset" for c in offered)
    chosen: dict[str, Condition] = {}
    for pattern in requested:
        hits = [c for c in offered if fnmatch.fnmatchcase(c.name, pattern)]
        if not hits and lenient:
            continue
        if not hits:
            kind = CONDITION_KINDS.get(pattern.split(":", 1)[0])
            why = (kind.unavailable(ctx) or kind.why_not(ctx, pattern)) if kind is not None else None
            if why:
                raise MosaicError(f"condition pattern {pattern!r} matches nothing: {why}")
            raise MosaicError(
                f"condition pattern {pattern!r} matches nothing: available kinds are {_kinds_help(ctx)}; "
                f"groups: {', '.join(schema.group_names)}"
                + (f"; subsets 0..{n_subsets - 1}" if n_subsets else "")
            )
        for c in hits:
            chosen.setdefault(c.name, by_name[c.name])
    return list(chosen.values())


FIXED_GATE_MODES = ("shares", "majority")

# the kinds that separate information, capacity, misrouting, semantics and code (registered last,
# after every name above exists, because that module builds on them)
import mosaic.interventions  # noqa: E402,F401
