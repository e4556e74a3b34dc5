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


def parameter_groups(model: nn.Module, weight_decay: float, no_decay_norm_bias: bool) -> list[dict]:
    """Trainable parameters split into decayed and non-decayed groups."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = no_decay_norm_bias and (param.ndim <= 1 or any(n in name for n in NO_DECAY_NAMES))
        (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


OPTIMIZERS: dict[str, Callable[[list[dict], OptimConfig], torch.optim.Optimizer]] = {
    "adamw": lambda groups, cfg: torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas)),
    "sgd": lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=False),
}


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay, config.no_decay_norm_bias)
    return OPTIMIZERS[config.name](groups, config)


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
