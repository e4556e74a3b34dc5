"""Launching a training run, new or resumed, as :func:`mosaic.api.train` does: resolve the run
(:mod:`.run`), build the :class:`~mosaic.train.loop.Trainer`, fit, and leave the process group.

Torch-free at import: the trainer is loaded inside the call.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from mosaic.train.run import TrainResult, resolve_run

__all__ = ["train"]


def train(
    config: Optional[str | os.PathLike] = None,
    out: Optional[str | os.PathLike] = None,
    *,
    resume: Optional[str | os.PathLike] = None,
    overrides: Sequence[str] = (),
    stop_at: Optional[int] = None,
    progress: bool = True,
) -> TrainResult:
    """Train a model from a YAML config (or continue the run in ``resume``).

    ``overrides`` are ``"dotted.key=value"`` strings (values parsed as YAML), as ``mosaic train --set``.
    Ctrl-C raises :class:`mosaic.train.TrainingInterrupted` after writing a checkpoint; a NaN loss
    raises :class:`mosaic.train.TrainingDiverged`. Both are :class:`MosaicError` subclasses.
    """
    from mosaic.train.distributed import shutdown_distributed
    from mosaic.train.loop import Trainer

    cfg, run_dir, resuming = resolve_run(config, tuple(overrides or ()), resume=resume, out=out)
    trainer = Trainer(cfg, run_dir, resume=resuming, progress=progress)
    try:
        result = trainer.fit(stop_at=stop_at)
    finally:
        shutdown_distributed(trainer.dist)
    result.is_main = bool(trainer.main)
    return result
