"""How the tracer routes images whose state is missing, and checks a condition list before computing.

An image with a missing state for a group (Market-1501 distractors: every group; DukeMTMC-reID:
``top`` for some identities) is routed like every other image: by the learned router's
prediction when the model has a learned router, otherwise by the group's fixed gates (each
expert weighted by its state's training share). Left off while every annotated image has the
group on, the routing itself would mark those images (under ``oracle`` the distractors would be
the only images without experts). Per condition the trace records how many (image, group)
routes were filled (``conditions/filled_routes``) and how (``conditions/fill_method``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mosaic.conditions import CONDITION_KINDS, Condition
from mosaic.core.errors import MosaicError
from mosaic.core.schema import FIXED, MISSING

__all__ = ["check_condition_inputs", "fill_codes", "fill_method_of"]


def fill_method_of(model) -> str:
    """``learned`` when the model has a learned router, else ``fixed``."""
    return "learned" if model.learned_router is not None else "fixed"


@torch.inference_mode()
def fill_codes(model, cache, states: np.ndarray, batch_size: int) -> np.ndarray | None:
    """``(N, G)`` codes to route unannotated images by, for every image of ``cache``; ``None``
    when no state is missing. The learned router's predictions from the cached trunk tokens, or
    ``FIXED`` everywhere (the fixed gates) for a model without a learned router."""
    states = np.asarray(states)
    if not (states == MISSING).any():
        return None
    router = model.learned_router
    if router is None:
        return np.full(states.shape, FIXED, dtype=states.dtype)
    predicted = [router.predict(cache.read(start, min(cache.n, start + batch_size))) for start in range(0, cache.n, batch_size)]
    return torch.cat(predicted).cpu().numpy().astype(states.dtype)  # one copy to the host, not one per batch


def check_condition_inputs(model, conditions: Sequence[Condition], query_states: np.ndarray, gallery_states: np.ndarray) -> None:
    """Refuse, before any image is computed, what a condition list cannot trace on this model and data."""
    from mosaic.conditions.codes import check_annotated

    unknown = sorted({c.kind for c in conditions} - set(CONDITION_KINDS))
    if unknown:
        raise MosaicError(
            f"unknown condition kinds {unknown}: register them with mosaic.conditions.register_condition_kind "
            f"(registered: {', '.join(CONDITION_KINDS)})"
        )
    if any(c.by_code for c in conditions):
        check_annotated(query_states, gallery_states)
    has_fixed = model.routers["oracle"].has_fixed_gates
    if not has_fixed:
        users = [c.name for c in conditions if c.needs_fixed_gates]
        missing = bool((np.asarray(query_states) == MISSING).any() or (np.asarray(gallery_states) == MISSING).any())
        if missing and model.learned_router is None:
            users += [c.name for c in conditions if c.router == "oracle" and not c.by_code and any(c.enabled)]
        if users:
            raise MosaicError(
                f"condition(s) {', '.join(sorted(set(users)))} route by the fixed gates but the model has no training "
                "state shares: trace a checkpoint written by this mosaic, or give the dataset it was trained on"
            )
