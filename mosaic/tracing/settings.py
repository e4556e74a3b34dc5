"""How a trace is made, as settings: what each condition keeps, the feature and distance, the memory
budget of the trunk cache (saved in the trace's provenance). Torch-free, so the library API can
offer it without loading the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mosaic.core.settings import check_fields

__all__ = ["DISTANCES", "FEATURES", "TraceSettings"]

DISTANCES = ("cosine", "euclidean")
FEATURES = {"bn": "bn_features", "pre_bn": "features"}


@dataclass
class TraceSettings:
    """How to trace (saved in the trace's provenance).

    Attributes:
        top_k: nearest gallery images kept per query and condition.
        max_rank: CMC ranks 1..max_rank.
        batch_size: images per trunk / head pass.
        feature: ``bn`` (after the BNNeck, the usual retrieval feature) or ``pre_bn``; ``None``: the
            checkpoint's ``eval.feature`` (resolved by :func:`mosaic.tracing.checkpoint.trace_checkpoint`).
        distance: ``cosine`` (1 - cosine similarity) or ``euclidean``, on L2-normalised features.
        cache_budget_mb: memory the cached trunk tokens may take on the compute device before they
            spill to a memmap on disk; ``None`` = half of the free memory of the device.
        spill_dir: folder for the memmap; ``None`` = the system temporary folder.
        progress: progress bars on stderr.
    """

    top_k: int = 10
    max_rank: int = 50
    batch_size: int = 128
    feature: str | None = "bn"
    distance: str = "cosine"
    cache_budget_mb: float | None = None
    spill_dir: str | None = None
    progress: bool = True

    bounds: ClassVar[dict[str, tuple]] = {"top_k": (0, None), "max_rank": (1, None), "batch_size": (1, None),
                                          "cache_budget_mb": (0, None)}
    choices: ClassVar[dict[str, Any]] = {"feature": tuple(FEATURES), "distance": DISTANCES}

    def __post_init__(self) -> None:
        check_fields(self)
