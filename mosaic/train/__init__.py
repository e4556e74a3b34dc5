"""Training: validated YAML configs, P x K sampling, batch-wise augmentation, the ReID loss,
the training loop with exact-resume checkpoints, and multi-GPU through ``torchrun``.

Typical use::

    from mosaic.train import load_config, Trainer
    trainer = Trainer(load_config("synthetic_micro"), "runs/micro")
    result = trainer.fit()

    from mosaic.train import load_checkpoint       # inference (the tracer)
    ckpt = load_checkpoint("runs/micro/checkpoints/last.pt", schema=dataset.schema)

Submodules are imported on first use, so ``mosaic.train.config`` can be read without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrainConfig": "config",
    "DataConfig": "config",
    "SamplerConfig": "config",
    "OptimConfig": "config",
    "LossConfig": "config",
    "AugmentConfig": "config",
    "EvalConfig": "config",
    "RunConfig": "config",
    "load_config": "config",
    "PKSampler": "sampler",
    "BatchAugment": "augment",
    "ReIDLoss": "losses",
    "BatchHardTripletLoss": "losses",
    "Trainer": "loop",
    "TrainResult": "run",
    "TrainingDiverged": "interrupt",
    "TrainingInterrupted": "interrupt",
    "RunPaths": "run",
    "resolve_run": "run",
    "LoadedCheckpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "evaluate_model": "evaluate",
    "EvalSet": "evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"mosaic.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mosaic.train' has no attribute {name!r}")
