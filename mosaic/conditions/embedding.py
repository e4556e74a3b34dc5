"""The ``embedding`` kind: retrieval by an external model's exported features (torch-free).

An ``embedding:<model>`` condition is not a routing of mosaic's experts: it is the retrieval of
another ReID model (OSNet, fast-reid, ...) whose query and gallery features were exported to a file
and traced with ``mosaic trace --features`` (:mod:`mosaic.tracing.embeddings`). It routes nothing
(router ``none``, no group enabled, no gates), so a tracer of checkpoints never offers it; it is
registered so that a trace holding it is a valid trace for the reader, ``mosaic inspect --check``
and the analyses, like any other kind.
"""

from __future__ import annotations

from mosaic.conditions.registry import ConditionKind, register_condition_kind

__all__ = ["EMBEDDING_KIND", "embedding_condition_name"]

EMBEDDING_KIND = "embedding"


def embedding_condition_name(model: str) -> str:
    """The condition name of an external model's features, e.g. ``embedding:osnet_x1_0``."""
    return f"{EMBEDDING_KIND}:{model}"


register_condition_kind(ConditionKind(
    EMBEDDING_KIND, "embedding:<model>", "an external model's exported features (mosaic trace --features), no experts",
    lambda ctx: [],
    unavailable=lambda ctx: "embedding conditions come from a features file: mosaic trace --features FILE",
    in_default=False,
))
