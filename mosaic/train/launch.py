"""Launching a training run, new or resumed, as :func:`mosaic.api.train` does: resolve the run
(:mod:`.run`), hold its folder (:mod:`mosaic.core.runlock`), build the
:class:`~mosaic.train.loop.Trainer`, fit, and leave the process group.

Torch-free at import: the trainer is loaded inside the call.
"""

from __future__ import annotations

import os
import signal
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
    A stop signal (``run.stop_signals``: Ctrl-C, SIGTERM, SIGUSR1) raises
    :class:`mosaic.train.TrainingInterrupted` after writing a checkpoint; a NaN loss raises
    :class:`mosaic.train.TrainingDiverged`. Both are :class:`MosaicError` subclasses. The run
    folder is held for the whole run (by rank 0 under ``torchrun``): a second process into it is
    refused with :class:`mosaic.core.runlock.RunFolderBusy`, naming the holder.
    """
    from mosaic.core.runlock import hold_folder
    from mosaic.core.signals import stop_on, to_signals
    from mosaic.train.distributed import shutdown_distributed
    from mosaic.train.loop import Trainer

    cfg, run_dir, resuming = resolve_run(config, tuple(overrides or ()), resume=resume, out=out)
    rank0 = int(os.environ.get("RANK", "0")) == 0  # torchrun's global rank; a plain process is rank 0
    with hold_folder(run_dir, enabled=rank0):
        # before the first step there is nothing to checkpoint: a stop signal ends the set-up at once
        with stop_on([s for s in to_signals(cfg.run.stop_signals) if s != signal.SIGINT]):
            trainer = Trainer(cfg, run_dir, resume=resuming, progress=progress)
        try:
            result = trainer.fit(stop_at=stop_at)
        finally:
            shutdown_distributed(trainer.dist)
    result.is_main = bool(trainer.main)
    return result
