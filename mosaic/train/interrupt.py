"""How a training run stops early: Ctrl-C (checkpoint, then exit 130) and a diverged loss (exit 3).

Both are :class:`MosaicError` subclasses, so the command line prints one line, exits with their status and
the library API raises them typed.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from mosaic.core.errors import MosaicError

__all__ = ["StopFlag", "TrainingDiverged", "TrainingInterrupted"]


class TrainingDiverged(MosaicError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3

    def __init__(self, message: str, step: int, checkpoint: Path | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


class TrainingInterrupted(MosaicError):
    """Ctrl-C: a checkpoint was written at ``step``; resume with ``mosaic train --resume RUN``.

    A :class:`MosaicError` so that the command line prints its one line and exits 130, the
    shell's status for Ctrl-C.
    """

    exit_code = 130

    def __init__(self, step: int, checkpoint: Path | None, run_dir: Path):
        super().__init__(
            f"interrupted at step {step}; checkpoint written to {checkpoint}; "
            f"resume with: mosaic train --resume {run_dir}"
        )
        self.step, self.checkpoint, self.run_dir = step, checkpoint, run_dir


class StopFlag:
    """First Ctrl-C asks the loop to checkpoint and stop at the next step boundary; the second aborts."""

    def __init__(self, announce: bool):
        self.requested = False
        self._announce = announce
        self._previous = None

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self._announce:
            print("\nstopping after this step to write a checkpoint (Ctrl-C again aborts without one)", file=sys.stderr)
