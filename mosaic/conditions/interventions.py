"""The condition kinds that take one group's contribution apart, and the routing of unannotated images.

=====================  =======================================================================
``fixed:<group>``      every image, query and gallery alike, gets the same gates for the group:
                       each of its experts weighted by its state's share among the *training*
                       identities (``--fixed-gates shares``, the default), or the majority
                       state's expert alone (``--fixed-gates majority``). The group keeps its
                       capacity and loses its identity information; nobody is misled.
``relabel:<group>``    the group's states permuted by a seeded derangement, the same for every
                       image: the identity partition the states induce equals the oracle's, but
                       every image gets the expert of another state. Experts that learned what
                       their state looks like lose accuracy; experts that only inject an
                       identity code do not.
``code``               no model: each query ranks the gallery by the distance between attribute
                       codes (:mod:`mosaic.conditions.codes`), with the same protocol as any condition.
=====================  =======================================================================

Read per group against ``oracle`` (information = fixed - oracle, capacity = drop - fixed,
misrouting = counterfactual - oracle, semantics = relabel - oracle), and ``code`` against
``oracle`` and ``none``.

:func:`fill_missing_routes` makes routing symmetric: an image whose state is missing for an
enabled group is routed like an annotated one (by the learned router's prediction, else by the
group's fixed gates), never left off while the annotated images are on, which would tell the
model which images are unannotated (e.g. Market-1501's distractors).

Torch-free; registered after the kinds of :mod:`.kinds` (by the package, :mod:`mosaic.conditions`).
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
    register_condition_kind,
    unknown_group,
)
from mosaic.conditions.state_shares import majority_codes
from mosaic.core.schema import FIXED, MISSING

__all__ = ["FixedStates", "RelabelStates", "derangement", "fill_missing_routes"]


# ----------------------------------------------------------------------------- transforms

@dataclass(frozen=True)
class FixedStates:
    """Route one group of every image by the same code: ``FIXED`` (the fixed gates) or one state."""

    group_index: int
    code: int = FIXED

    @property
    def uses_fixed_gates(self) -> bool:
        return self.code == FIXED

    def apply(self, states: np.ndarray, pids: np.ndarray, is_query: np.ndarray | None = None) -> np.ndarray:
        out = np.array(states, copy=True)
        out[:, self.group_index] = self.code
        return out

    def __str__(self) -> str:
        what = "fixed gates (training state shares)" if self.code == FIXED else f"state code {self.code}"
        return f"group {self.group_index} routed by {what} for every image"


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded uniformly random permutation of ``range(n)`` without fixed points (``n >= 2``)."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    rng = np.random.default_rng(seed)
    while True:  # rejection: a random permutation is a derangement with probability about 1/e
        perm = rng.permutation(n)
        if not (perm == np.arange(n)).any():
            return perm


@dataclass(frozen=True)
class RelabelStates:
    """Route one group of every image by ``permutation[state]``: a consistent relabelling.

    Query and gallery share the permutation, so two images share a routed state exactly when
    they share a true one (the partition is kept) while no image gets its own state's expert.
    A missing state stays missing (and is filled like any other, relabelled too).
    """

    group_index: int
    permutation: tuple[int, ...]

    def _relabel(self, column: np.ndarray) -> np.ndarray:
        perm = np.asarray(self.permutation, dtype=column.dtype)
        known = column >= 0
        return np.where(known, perm[np.where(known, column, 0)], column)

    def apply(self, states: np.ndarray, pids: np.ndarray, is_query: np.ndarray | None = None) -> np.ndarray:
        return self.fill_codes(states)

    def fill_codes(self, codes: np.ndarray) -> np.ndarray:
        out = np.array(codes, copy=True)
        out[:, self.group_index] = self._relabel(out[:, self.group_index])
        return out

    def __str__(self) -> str:
        return f"group {self.group_index} relabelled by state permutation {list(self.permutation)}"


# ----------------------------------------------------------------------------- symmetric routing

def fill_missing_routes(condition: Condition, routed: np.ndarray, fill: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Route codes with every missing state of an enabled group filled from ``fill``.

    ``routed`` ``(N, G)`` are the codes from ``condition.route_states``; ``fill`` ``(N, G)`` the
    codes an unannotated image is routed by (the learned router's predictions, or ``FIXED`` for
    the fixed gates). They pass through the condition's transform where it relabels codes
    (``fill_codes``), so a relabelling relabels a predicted state as it does a true one. Only
    conditions routed by states fill anything. Returns the codes and the ``(N, G)`` mask of
    filled routes.
    """
    routed = np.asarray(routed)
    holes = np.zeros(routed.shape, bool)
    if fill is None or condition.router != "oracle" or condition.by_code:
        return routed, holes
    holes = (routed == MISSING) & condition.enabled_mask[None, :]
    if not holes.any():
        return routed, holes
    relabel = getattr(condition.transform, "fill_codes", None)
    fill = np.asarray(fill) if relabel is None else relabel(np.asarray(fill))
    return np.where(holes, fill, routed).astype(routed.dtype), holes


# ----------------------------------------------------------------------------- the kinds

def _fixed_unavailable(ctx: ConditionContext) -> str | None:
    if ctx.state_shares is None:
        return ("the training state shares are unknown: the checkpoint predates them and its training "
                "split is not available (pass --data with the training dataset)")
    return None


def _fixed(ctx: ConditionContext, i: int, g: str) -> Condition:
    code = majority_codes(ctx.state_shares, ctx.schema)[g] if ctx.fixed_gates == "majority" else FIXED
    return Condition(f"fixed:{g}", "fixed", g, group_mask(ctx.schema), transform=FixedStates(group_index=i, code=code))


def _expand_fixed(ctx: ConditionContext) -> list[Condition]:
    if _fixed_unavailable(ctx):
        return []
    return [_fixed(ctx, i, g) for i, g in enumerate(ctx.schema.group_names)]


def _expand_relabel(ctx: ConditionContext) -> list[Condition]:
    return [
        Condition(
            f"relabel:{group.name}", "relabel", group.name, group_mask(ctx.schema),
            transform=RelabelStates(i, tuple(int(v) for v in derangement(len(group.states), group_seed(ctx.seed, "relabel:" + group.name)))),
        )
        for i, group in enumerate(ctx.schema.groups)
        if len(group.states) >= 2
    ]


def _relabel_why_not(ctx: ConditionContext, pattern: str) -> str | None:
    _, _, name = pattern.partition(":")
    if name in ctx.schema.group_names and len(ctx.schema.group(name).states) < 2:
        return f"group {name!r} has one state, so relabel:{name} has nothing to permute: leave it out"
    return unknown_group(ctx, pattern)


def _expand_code(ctx: ConditionContext) -> list[Condition]:
    if not ctx.has_annotations:
        return []
    return [Condition("code", "code", "", group_mask(ctx.schema, on=()), router="none", code_tie_seed=group_seed(ctx.seed, "code"))]


register_condition_kind(ConditionKind(
    "fixed", "fixed:<group>",
    "every group, <group> routed by the same fixed gates for every image (information removed, capacity kept)",
    _expand_fixed, unavailable=_fixed_unavailable, why_not=unknown_group,
))
register_condition_kind(ConditionKind(
    "relabel", "relabel:<group>",
    "every group, <group>'s states permuted consistently for every image (semantics removed, identity partition kept)",
    _expand_relabel, why_not=_relabel_why_not,
))
register_condition_kind(ConditionKind(
    "code", "code",
    "no model: retrieval by the distance between attribute codes",
    _expand_code,
    unavailable=lambda ctx: None if ctx.has_annotations else "the query or gallery images carry no attribute annotations",
))
