"""The registry of condition kinds, and how patterns select conditions from it.

A condition is one routing of experts applied to every query and gallery image alike; a
:class:`ConditionKind` is a family of them (``drop:<group>``), registered in
:data:`CONDITION_KINDS`. The built-in kinds register themselves from :mod:`.kinds` and
:mod:`.interventions`; this module imports neither, so a kind from user code registers the same way.

Conditions are selected with comma-separated fnmatch patterns over their names
(``"oracle,drop:*,only:upcolour"``). A condition resolves to a name, kind, target group, enabled
mask ``(G,)``, router name, and a state transform that the tracer applies to the state codes
before routing. Torch-free.
"""

from __future__ import annotations

import fnmatch
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from mosaic.core.errors import MosaicError
from mosaic.core.schema import AttributeSchema

__all__ = [
    "Condition",
    "ConditionContext",
    "ConditionKind",
    "CONDITION_KINDS",
    "FIXED_GATE_MODES",
    "IdentityStates",
    "StateTransform",
    "available_conditions",
    "default_patterns",
    "group_mask",
    "group_seed",
    "per_group",
    "register_condition_kind",
    "resolve_conditions",
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
            condition is scored by attribute-code distances (:mod:`mosaic.conditions.codes`), ties broken in
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
FIXED_GATE_MODES = ("shares", "majority")  # how fixed:<group> gates its experts


def register_condition_kind(kind: ConditionKind, *, overwrite: bool = False) -> ConditionKind:
    if kind.name in CONDITION_KINDS and not overwrite:
        raise ValueError(f"condition kind {kind.name!r} is already registered")
    CONDITION_KINDS[kind.name] = kind
    return kind


def group_mask(schema: AttributeSchema, on: Iterable[str] | None = None, off: Iterable[str] = ()) -> tuple[bool, ...]:
    on_set = set(schema.group_names if on is None else on)
    off_set = set(off)
    return tuple(g in on_set and g not in off_set for g in schema.group_names)


def group_seed(seed: int, name: str) -> int:
    # stable across processes (unlike hash()), so a condition's randomness depends on its name only
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**32)


def per_group(build: Callable[[ConditionContext, int, str], Condition]):
    def expand(ctx: ConditionContext) -> list[Condition]:
        return [build(ctx, i, g) for i, g in enumerate(ctx.schema.group_names)]

    return expand


def unknown_group(ctx: ConditionContext, pattern: str) -> str | None:
    """For a per-group kind: the pattern names a group the schema lacks (no wildcard in it)."""
    kind, _, group = pattern.partition(":")
    if group and not any(ch in group for ch in "*?[") and group not in ctx.schema.group_names:
        return f"unknown group {group!r} in {pattern!r}: groups are {', '.join(ctx.schema.group_names)}"
    return None


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
