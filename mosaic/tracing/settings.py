"""How a trace is made, as settings: what each condition keeps, the feature and distance, the memory
budget of the trunk cache (saved in the trace's provenance). Torch-free, so the library API can
offer it without loading the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mosaic.core.settings import check_fields

__all__ = ["DISTANCES", "FEATURES", "PRECISIONS", "TraceSettings", "default_batch_size"]

DISTANCES = ("cosine", "euclidean")
PRECISIONS = ("fp32", "tf32", "bf16")  # mosaic.tracing.precision implements them (torch-free here)
# images per pass when unset: on a GPU a larger batch halves the launches per image at no cost in
# GEMM efficiency (the head's GEMMs have B x 129 rows); on the CPU it buys nothing
BATCH_SIZES = {"cpu": 128, "cuda": 256}


def default_batch_size(device_type: str) -> int:
    return BATCH_SIZES.get(device_type, BATCH_SIZES["cpu"])
FEATURES = {"bn": "bn_features", "pre_bn": "features"}


@dataclass
class TraceSettings:
    """How to trace (saved in the trace's provenance).

    Attributes:
        top_k: nearest gallery images kept per query and condition.
        max_rank: CMC ranks 1..max_rank.
        batch_size: images per trunk / head pass; ``None``: 128 on the CPU, 256 on CUDA.
        feature: ``bn`` (after the BNNeck, the usual retrieval feature) or ``pre_bn``; ``None``: the
            checkpoint's ``eval.feature`` (resolved by :func:`mosaic.tracing.checkpoint.trace_checkpoint`).
        distance: ``cosine`` (1 - cosine similarity) or ``euclidean``, on L2-normalised features.
        cache_budget_mb: memory the cached trunk tokens may take on the compute device before they
            spill to a memmap on disk; ``None`` = half of the free memory of the device.
        spill_dir: folder for the memmap; ``None`` = the system temporary folder.
        progress: progress bars on stderr.
        precision: arithmetic of the network, ``fp32``, ``tf32`` (CUDA only; on the CPU the same as
            fp32) or ``bf16`` (autocast); distances, ranking and routing decisions stay float32
            (:mod:`mosaic.tracing.precision`; ``docs/validation.md`` for what each changes).
        reuse: skip work whose result is already known, exactly: features of images whose routing
            equals one already computed are reused (the gallery of ``counterfactual:<g>``), a
            condition with every gate off runs no mixture, and the mixture computes only the experts
            of enabled groups. ``False`` computes everything (for checking and benchmarks).
    """

    top_k: int = 10
    max_rank: int = 50
    batch_size: int | None = None
    feature: str | None = "bn"
    distance: str = "cosine"
    cache_budget_mb: float | None = None
    spill_dir: str | None = None
    progress: bool = True
    precision: str = "fp32"
    reuse: bool = True

    bounds: ClassVar[dict[str, tuple]] = {"top_k": (0, None), "max_rank": (1, None), "batch_size": (1, None),
                                          "cache_budget_mb": (0, None)}
    choices: ClassVar[dict[str, Any]] = {"feature": tuple(FEATURES), "distance": DISTANCES, "precision": PRECISIONS}

    def __post_init__(self) -> None:
        check_fields(self)

    def for_device(self, device_type: str) -> "TraceSettings":
        """These settings with the batch size resolved for a device (``cpu``, ``cuda``)."""
        from dataclasses import replace

        return self if self.batch_size is not None else replace(self, batch_size=default_batch_size(device_type))
