"""Training state shares: how often each state of a group occurs among the training identities.

They define the *fixed gates* of a group: each of the group's experts weighted by its state's
share. Every image routed by fixed gates gets the same mixture, so the group keeps its capacity
(its experts still fire, in the proportions the training identities used them) while carrying no
information about the image. The ``fixed:<group>`` condition routes every query and gallery image
this way, training routes a group this way with probability ``routing.fixed_prob``, and a model
without a learned router routes an unannotated image's group this way.

Shares count *identities*, not images: an identity with many images is one person, and the
analyses resample identities. An identity's state is the most frequent annotated state over its
images (the smallest code on ties); identities with no annotated state for a group are left out
of that group's shares. A group that no training identity has annotated gets equal shares.

Training stores the shares in the checkpoint (``state_shares``); a checkpoint written before
that can have them recomputed from its dataset's training split. This module is torch-free.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mosaic.core.errors import MosaicError
from mosaic.core.schema import MISSING, AttributeSchema

__all__ = ["identity_state_codes", "majority_codes", "shares_as_gates", "training_state_shares", "validate_shares"]


def identity_state_codes(codes: np.ndarray, pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct identities with an annotated state in ``codes`` ``(N,)`` and each one's state.

    The state of an identity is its most frequent annotated code (the smallest on ties).
    """
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    pids = np.asarray(pids, dtype=np.int64).reshape(-1)
    known = codes != MISSING
    if not known.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs, counts = np.unique(np.stack([pids[known], codes[known]], axis=1), axis=0, return_counts=True)
    # sort by pid, then count descending, then code ascending; the first row of each pid wins
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    pairs = pairs[order]
    first = np.ones(len(pairs), bool)
    first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    return pairs[first, 0], pairs[first, 1]


def training_state_shares(states: np.ndarray, pids: np.ndarray, schema: AttributeSchema) -> dict[str, list[float]]:
    """Per group, the share of each state among the identities of ``states`` ``(N, G)``.

    Distractors (pid 0) and junk (pid -1) are no identities and are left out.
    """
    states = np.asarray(states).reshape(len(pids), len(schema.groups))
    pids = np.asarray(pids, dtype=np.int64)
    people = pids > 0
    out: dict[str, list[float]] = {}
    for g, group in enumerate(schema.groups):
        _, codes = identity_state_codes(states[people, g], pids[people])
        counts = np.bincount(codes, minlength=len(group.states)).astype(np.float64)
        total = counts.sum()
        shares = counts / total if total else np.full(len(group.states), 1.0 / len(group.states))
        out[group.name] = [float(v) for v in shares]
    return out


def validate_shares(shares: Mapping[str, Sequence[float]], schema: AttributeSchema, *, source: str = "state shares") -> dict[str, list[float]]:
    """``shares`` checked against ``schema``: one non-negative share per state, summing to 1 per group."""
    missing = [g for g in schema.group_names if g not in shares]
    extra = sorted(set(shares) - set(schema.group_names))
    if missing or extra:
        raise MosaicError(
            f"{source} do not match schema {schema.name!r}: missing groups {missing}, unknown groups {extra}; "
            "recompute them from the training split of the model's dataset"
        )
    out: dict[str, list[float]] = {}
    for group in schema.groups:
        values = np.asarray(shares[group.name], dtype=np.float64).reshape(-1)
        if len(values) != len(group.states) or not np.all(np.isfinite(values)) or (values < 0).any() or abs(values.sum() - 1) > 1e-6:
            raise MosaicError(
                f"{source} of group {group.name!r} must be {len(group.states)} non-negative numbers summing to 1, "
                f"got {values.tolist()}"
            )
        out[group.name] = [float(v) for v in values]
    return out


def shares_as_gates(shares: Mapping[str, Sequence[float]], schema: AttributeSchema) -> np.ndarray:
    """The fixed gates ``(E,)`` in ``schema.experts`` order: each expert's state share."""
    shares = validate_shares(shares, schema)
    return np.concatenate([np.asarray(shares[g], dtype=np.float32) for g in schema.group_names]) if schema.groups else np.zeros(0, np.float32)


def majority_codes(shares: Mapping[str, Sequence[float]], schema: AttributeSchema) -> dict[str, int]:
    """Per group, the code of the state most training identities have (the smallest code on ties)."""
    shares = validate_shares(shares, schema)
    return {g: int(np.argmax(shares[g])) for g in schema.group_names}
