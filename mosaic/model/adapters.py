"""Adapters: how each ``ModelConfig.adapter`` modifies the backbone of a :class:`~mosaic.model.reid.MosaicReID`."""

from __future__ import annotations

from typing import Callable

from .experts import LoRAExpertMixture, attach_experts, inject_plain_lora

__all__ = ["ADAPTERS"]


def _add_experts(model: "MosaicReID") -> tuple[tuple[LoRAExpertMixture, ...], ...]:
    cfg = model.config
    return tuple(
        attach_experts(
            model.backbone.blocks[i], cfg.lora_targets, model.schema.n_experts, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout
        )
        for i in model.expert_layers
    )


def _add_plain_lora(model: "MosaicReID") -> tuple:
    inject_plain_lora(model.backbone, model.lora_config)
    return tuple(() for _ in model.expert_layers)


def _add_nothing(model: "MosaicReID") -> tuple:
    return tuple(() for _ in model.expert_layers)


# adapter name -> how it modifies the backbone; returns the expert mixtures per expert layer.
ADAPTERS: dict[str, Callable[["MosaicReID"], tuple]] = {
    "experts": _add_experts,
    "lora": _add_plain_lora,
    "none": _add_nothing,
}
