"""How a training run stops early: a stop signal (checkpoint, then exit 128 + the signal's number) and
a diverged loss (exit 3).

The stop signals are ``run.stop_signals``: by default Ctrl-C (SIGINT, exit 130), SIGTERM (a scheduler's
time limit, preemption or eviction; exit 143) and SIGUSR1 (Slurm's ``--signal=USR1@120`` warning;
exit 138). Each asks the loop to write a checkpoint at the next step boundary (under ``torchrun`` at
the next step where the processes agree, every ``run.log_every`` steps) and stop; an evaluation in
progress is abandoned. Both errors are :class:`MosaicError` subclasses, so the command line prints one
line, exits with their status and the library API raises them typed.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path

from mosaic.core.errors import MosaicError
from mosaic.core.signals import DEFAULT_STOP_SIGNALS, exit_status, handling, signal_name, to_signals

__all__ = ["StopFlag", "TrainingDiverged", "TrainingInterrupted"]


class TrainingDiverged(MosaicError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3

    def __init__(self, message: str, step: int, checkpoint: Path | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


class TrainingInterrupted(MosaicError):
    """A stop signal: a checkpoint was written at ``step``; resume with ``mosaic train --resume RUN``.

    A :class:`MosaicError` so that the command line prints its one line and exits with
    128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM, 138 for SIGUSR1 (a job script
    tells a preempted run from a failed one by it).
    """

    def __init__(self, step: int, checkpoint: Path | None, run_dir: Path, signum: int | None = None):
        signum = int(signum) if signum is not None else int(signal.SIGINT)  # another process's stop: theirs
        cause = "interrupted" if signum == signal.SIGINT else f"stopped by {signal_name(signum)}"
        super().__init__(
            f"{cause} at step {step}; checkpoint written to {checkpoint}; "
            f"resume with: mosaic train --resume {run_dir}"
        )
        self.step, self.checkpoint, self.run_dir, self.signum = step, checkpoint, run_dir, signum
        self.exit_code = exit_status(signum)


class StopFlag:
    """The first stop signal asks the loop to checkpoint and stop at the next step boundary.

    A second Ctrl-C aborts without a checkpoint; other signals repeated meanwhile (a scheduler
    may send SIGTERM after its SIGUSR1 warning) leave the checkpoint being written alone.
    ``signal`` is the first signal received (``None`` while none has).
    """

    def __init__(self, announce: bool, signals=DEFAULT_STOP_SIGNALS):
        self.requested = False
        self.signal: int | None = None
        self._announce = announce
        self._signals = to_signals(signals)
        self._handlers = contextlib.ExitStack()

    def __enter__(self) -> "StopFlag":
        self._handlers.enter_context(handling(self._signals, self._handle))
        return self

    def __exit__(self, *exc) -> None:
        self._handlers.close()

    def _handle(self, signum, frame) -> None:
        if self.requested:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.requested, self.signal = True, int(signum)
        if self._announce:
            again = " (Ctrl-C again aborts without one)" if signum == signal.SIGINT else ""
            print(f"\n{signal_name(signum)}: stopping after this step to write a checkpoint{again}", file=sys.stderr)
