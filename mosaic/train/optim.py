"""Optimisers and the per-step learning-rate schedule (linear warm-up, then cosine or step decay)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from mosaic.train.config import OptimConfig

# Parameter names that never get weight decay (timm's convention plus LayerNorm/BatchNorm 1-d weights).
NO_DECAY_NAMES = ("pos_embed", "cls_token", "dist_token", "reg_token")

# Model parts (mosaic.model.parameter_part) that learn at optim.lr; every other part was
# initialised here (LoRA experts, router heads, BNNeck, classifier) and learns at optim.new_lr.
BACKBONE_PARTS = ("backbone",)


def _part_of(name: str) -> str:
    from mosaic.model import parameter_part

    return parameter_part(name)


def parameter_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """Trainable parameters in groups of one learning rate and one weight decay each.

    Three choices make the groups (CLIP-ReID's recipe, ``configs/person/vit_base.yml``):

    - the rate: ``optim.lr`` for the backbone, ``optim.new_lr`` (default ``lr``) for the parts
      initialised here, which start from nothing (LoRA ``B`` at zero, a random classifier) and
      barely move at a fine-tuning rate such as 5e-6;
    - biases learn ``optim.bias_lr_factor`` times faster (CLIP-ReID and TransReID use 2);
    - no weight decay on biases, norm weights and position/class tokens
      (``optim.no_decay_norm_bias``): decaying them pulls scales and offsets towards zero
      rather than regularising.

    Each group carries a ``name`` (``backbone``, ``backbone/bias``, ``backbone/no_decay``,
    ``new``, ``new/bias``, ``new/no_decay``) for logs and tests; empty groups are left out.
    """
    new_lr = config.new_lr if config.new_lr is not None else config.lr
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        owner = "backbone" if _part_of(name) in BACKBONE_PARTS else "new"
        lr = config.lr if owner == "backbone" else new_lr
        is_bias = name.endswith(".bias")
        no_decay = config.no_decay_norm_bias and (param.ndim <= 1 or any(n in name for n in NO_DECAY_NAMES))
        if is_bias:
            kind, lr = "bias", lr * config.bias_lr_factor
        else:
            kind = "no_decay" if no_decay else ""
        key = f"{owner}/{kind}" if kind else owner
        group = groups.setdefault(
            key, {"name": key, "params": [], "lr": lr, "weight_decay": 0.0 if no_decay else config.weight_decay}
        )
        group["params"].append(param)
    return list(groups.values())


def fused_by_default(groups: list[dict]) -> bool:
    """Whether Adam runs fused: when every parameter is on CUDA. One kernel per step instead of
    about 150 foreach launches, and its step counters stay on the device; elsewhere PyTorch's
    default (foreach on accelerators, a loop on the CPU)."""
    params = [p for group in groups for p in group["params"]]
    return bool(params) and all(p.device.type == "cuda" for p in params)


OPTIMIZERS: dict[str, Callable[[list[dict], OptimConfig, bool], torch.optim.Optimizer]] = {
    # decoupled weight decay (Loshchilov & Hutter)
    "adamw": lambda groups, cfg, fused: torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None),
    # L2 added to the gradient, as CLIP-ReID's Adam; at lr 5e-6 and decay 1e-4 the two barely differ
    "adam": lambda groups, cfg, fused: torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None),
    "sgd": lambda groups, cfg, fused: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=False),
}


def build_optimizer(model: nn.Module, config: OptimConfig, fused: bool | None = None) -> torch.optim.Optimizer:
    """The optimiser over :func:`parameter_groups`; the scheduler scales every group's rate alike.

    Build it after the model is on its device: ``fused=None`` fuses Adam when every parameter is
    on CUDA (:func:`fused_by_default`); ``True`` asks for the fused kernel on any device that has one.
    """
    groups = parameter_groups(model, config)
    return OPTIMIZERS[config.name](groups, config, fused_by_default(groups) if fused is None else fused)


@dataclass
class WarmupDecay:
    """Learning-rate multiplier per step: linear warm-up from ``warmup_factor``, then the decay.

    A plain object (not a closure) so that :class:`torch.optim.lr_scheduler.LambdaLR` can save
    and restore it with the checkpoint.
    """

    total_steps: int
    warmup_steps: int
    steps_per_epoch: int
    schedule: str = "cosine"
    warmup_factor: float = 0.01
    min_lr_factor: float = 0.01
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            alpha = step / max(1, self.warmup_steps)
            return self.warmup_factor + (1.0 - self.warmup_factor) * alpha
        return DECAYS[self.schedule](self, step)


def _cosine(s: WarmupDecay, step: int) -> float:
    span = max(1, s.total_steps - s.warmup_steps)
    progress = min(1.0, (step - s.warmup_steps) / span)
    return s.min_lr_factor + (1.0 - s.min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _step(s: WarmupDecay, step: int) -> float:
    passed = sum(step >= round(m * s.steps_per_epoch) for m in s.milestones)
    return s.gamma**passed


DECAYS: dict[str, Callable[[WarmupDecay, int], float]] = {
    "cosine": _cosine,
    "step": _step,
    "constant": lambda s, step: 1.0,
}


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, steps_per_epoch: int
) -> tuple[torch.optim.lr_scheduler.LambdaLR, int]:
    """The per-step scheduler and the run's total number of steps."""
    total = config.steps if config.steps is not None else config.epochs * steps_per_epoch
    warmup = config.warmup_steps if config.warmup_steps is not None else round(config.warmup_epochs * steps_per_epoch)
    rule = WarmupDecay(
        total_steps=total,
        warmup_steps=min(warmup, total),
        steps_per_epoch=steps_per_epoch,
        schedule=config.schedule,
        warmup_factor=config.warmup_factor,
        min_lr_factor=config.min_lr_factor,
        milestones=tuple(config.milestones),
        gamma=config.gamma,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, rule), total
