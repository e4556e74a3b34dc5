"""The model's configuration: architecture and adapters, as data saved with every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from mosaic.core.errors import MosaicError
from mosaic.core.settings import check_fields

from .adapters import ADAPTERS
from .backbones import get_backbone_spec
from .experts import LORA_TARGETS
from .routers import LearnedRouter

__all__ = ["ModelConfig"]


def _adapter_names() -> list[str]:
    return sorted(ADAPTERS)


@dataclass
class ModelConfig:
    """Everything that defines the model's architecture and adapters (saved with checkpoints).

    Attributes:
        backbone: a name in :data:`mosaic.model.BACKBONES`.
        img_size: ``(height, width)``; ``None`` uses the backbone's default.
        pretrained: load the backbone's hub weights (needs network once).
        pretrained_file: load backbone weights from this local file instead (offline).
        pretrained_img_size: ``(height, width)`` the file's weights were trained at (fixes the grid
            their position embeddings are resampled from); ``None`` -> see ``create_backbone``.
        expert_blocks: number N of last blocks that carry experts; the trunk is everything before.
        lora_rank, lora_alpha, lora_dropout: LoRA rank r, alpha (update scaled by alpha/r), input dropout.
        lora_targets: projections adapted in each expert block, among qkv, proj, fc1, fc2.
        adapter: ``experts`` (one LoRA per attribute state, routed), ``lora`` (one shared peft LoRA on
            the same targets: the plain-LoRA baseline) or ``none`` (backbone only).
        learned_router: add the learned router's attribute heads (trained with attribute_loss).
        router_hidden: hidden width of each router head; 0 = one linear layer per group.
        router_detach: the learned router reads detached trunk tokens, so its attribute loss
            trains the router heads only (``False``: it also trains the trunk, making the backbone
            attribute-multitask).
        router_gates: ``hard`` (argmax one-hot, the gates the experts were trained under) or
            ``soft`` (each group's state probabilities) for the learned router.
        freeze_backbone: train only adapters, router, BNNeck and classifier.
        drop_path: stochastic-depth rate of the backbone.
        pixel_mean, pixel_std: input normalisation; ``None`` takes the backbone's (for CLIP, the
            statistics its weights were trained with).
    """

    backbone: str = "vit_micro"
    img_size: tuple[int, int] | None = None
    pretrained: bool = False
    pretrained_file: str | None = None
    pretrained_img_size: tuple[int, int] | None = None
    expert_blocks: int = 2
    lora_rank: int = 4
    lora_alpha: float = 8.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("qkv", "proj", "fc1", "fc2")
    adapter: str = "experts"
    learned_router: bool = True
    router_hidden: int = 0
    router_detach: bool = True
    router_gates: str = "hard"
    freeze_backbone: bool = False
    drop_path: float = 0.0
    pixel_mean: tuple[float, float, float] | None = None
    pixel_std: tuple[float, float, float] | None = None

    # ranges and registry-backed choices, checked by mosaic.core.settings.check_fields (the registries are
    # read when the check runs, so a backbone or adapter registered from user code counts)
    bounds: ClassVar[dict[str, tuple]] = {
        "expert_blocks": (1, None), "lora_rank": (1, None), "lora_alpha": (0, None, "(]"), "lora_dropout": (0, 1, "[)"),
        "router_hidden": (0, None), "drop_path": (0, 1, "[)"), "pixel_std": (0, None, "(]"),
    }
    choices: ClassVar[dict[str, Any]] = {
        "router_gates": lambda: LearnedRouter.GATES, "adapter": _adapter_names,
        "lora_targets": lambda: list(LORA_TARGETS),
    }

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.lora_targets:
            raise MosaicError(f"lora_targets is empty: choose among {list(LORA_TARGETS)}")
        get_backbone_spec(self.backbone)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key in ("img_size", "pretrained_img_size", "pixel_mean", "pixel_std"):
            out[key] = list(out[key]) if out[key] is not None else None
        out["lora_targets"] = list(self.lora_targets)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MosaicError(f"unknown model setting(s) {unknown}: valid ones are {sorted(known)}")
        return cls(**dict(data))

    def without_pretrained(self) -> "ModelConfig":
        """The same architecture with random initial weights, for building a model to load a checkpoint
        into (the checkpoint holds the weights; the original pretrained file need not exist any more)."""
        return dataclasses.replace(self, pretrained=False, pretrained_file=None)
