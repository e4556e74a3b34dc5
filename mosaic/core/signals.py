"""Stop signals: what a scheduler sends before it kills a job, turned into a clean stop.

Slurm sends SIGTERM at the time limit or on preemption (and, with ``#SBATCH --signal=USR1@120``,
SIGUSR1 two minutes before), Kubernetes SIGTERM on eviction. Python's default for both is to die
at once, with no message and nothing cleaned up. Here:

* :func:`stop_on` turns the named signals into :class:`Terminated`, raised in the main thread
  wherever it is, like Ctrl-C's ``KeyboardInterrupt``: a ``BaseException``, so no ``except
  Exception`` swallows it and every cleanup that Ctrl-C runs -- partial outputs removed by
  :func:`mosaic.core.fileio.atomic_path`, ``finally`` blocks -- runs too;
  the command line installs it for SIGTERM around every command and exits with
  :func:`exit_status` (128 + the signal number, the shell's convention);
* training catches the configured ``run.stop_signals`` itself and checkpoints first
  (:mod:`mosaic.train.interrupt`).

Torch-free.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterable, Iterator

from mosaic.core.errors import MosaicError

__all__ = ["DEFAULT_STOP_SIGNALS", "Terminated", "exit_status", "handling", "signal_name", "stop_on", "to_signals"]

DEFAULT_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")
_UNCATCHABLE = {"SIGKILL", "SIGSTOP"}


def _known() -> list[str]:
    return sorted(s.name for s in signal.Signals if s.name not in _UNCATCHABLE and not s.name.startswith("SIG_"))


def to_signals(names: Iterable[str], *, key: str = "run.stop_signals") -> tuple[signal.Signals, ...]:
    """``("TERM", "SIGUSR1")`` -> the signals; an unknown or uncatchable name is one :class:`MosaicError` line."""
    out = []
    for name in names:
        text = str(name).strip().upper()
        text = text if text.startswith("SIG") else f"SIG{text}"
        if text in _UNCATCHABLE or text not in signal.Signals.__members__:
            raise MosaicError(f"{key} has {name!r}, not a signal a process can catch: use names such as "
                              f"{', '.join(DEFAULT_STOP_SIGNALS)} (any of {', '.join(_known())})")
        out.append(signal.Signals[text])
    return tuple(dict.fromkeys(out))


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_status(signum: int) -> int:
    """128 + the signal's number: what a shell reports for a process the signal ended (130 for Ctrl-C)."""
    return 128 + int(signum)


class Terminated(BaseException):
    """A stop signal arrived: the work was abandoned and its partial outputs removed."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = int(signum)
        self.exit_code = exit_status(signum)

    def __str__(self) -> str:
        return (f"stopped by {signal_name(self.signum)}: nothing was left half-written at the target; "
                "run the command again to redo the work")


@contextlib.contextmanager
def handling(signals: Iterable[int], handler) -> Iterator[None]:
    """``handler`` for each of ``signals`` inside the block; the previous handlers restored after.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """
    previous = {}
    try:
        if threading.current_thread() is threading.main_thread():
            for signum in signals:
                previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)


def stop_on(signals: Iterable[int]) -> contextlib.AbstractContextManager[None]:
    """Raise :class:`Terminated` in the main thread when one of ``signals`` arrives; restore the handlers after.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def handle(signum, frame):
        raise Terminated(signum)

    return handling(signals, handle)
