"""Progress on stderr: the one mechanism behind every long-running command's ``--progress/--no-progress``.

Two shapes, chosen by where stderr goes:

* a **terminal**: a bar redrawn in place (tqdm), gone when it is done;
* anywhere else -- a log file, a batch job's output, a pipe, a notebook -- a **few plain lines**:
  one when the work is done, one per quarter of it when the quarters are at least
  :data:`PLAIN_MIN_GAP_S` seconds apart, and at least one every :data:`PLAIN_INTERVAL_S` seconds;
  each complete (``desc: done/total unit (pct) in s, rate``), because a bar redrawn into a file
  is every redraw kept: kilobytes of carriage returns per stage.

Stages whose length is unknown (reading, analysing, rendering) print one line each with their
duration (:class:`StageProgress`). Disabled, both print nothing.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import IO, Any, Callable, Iterator

__all__ = ["PLAIN_INTERVAL_S", "PLAIN_MIN_GAP_S", "PLAIN_STEPS", "PlainProgress", "StageProgress", "is_terminal", "progress_bar",
           "stage_lines"]

PLAIN_STEPS = 4  # plain lines per bar: at most one at each quarter of the total
PLAIN_MIN_GAP_S = 5.0  # a quarter's line waits this long after the previous line: a fast stage gets its last only
PLAIN_INTERVAL_S = 60.0  # and one at least this often, so a long stage shows it is alive


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default: stderr) is an interactive terminal, where a bar can redraw itself."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(total: int, desc: str, *, unit: str = "it", enabled: bool = True, initial: int = 0,
                 stream: IO[str] | None = None):
    """A progress bar over ``total`` units: tqdm on a terminal, :class:`PlainProgress` elsewhere.

    The object has ``update(n)``, ``set_postfix(**values)``, ``set_postfix_str(text)``, ``close()``
    and is a context manager.
    ``enabled=False`` gives one that prints nothing.
    """
    stream = sys.stderr if stream is None else stream
    if enabled and is_terminal(stream):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream, leave=False, dynamic_ncols=True)
    return PlainProgress(total, desc, unit=unit, initial=initial, stream=stream, enabled=enabled)


class PlainProgress:
    """Progress as a few complete lines (see the module): for logs, where a redrawn bar piles up."""

    def __init__(self, total: int, desc: str, *, unit: str = "it", initial: int = 0, stream: IO[str] | None = None,
                 enabled: bool = True, steps: int = PLAIN_STEPS, interval_s: float = PLAIN_INTERVAL_S,
                 min_gap_s: float = PLAIN_MIN_GAP_S) -> None:
        self.total, self.desc, self.unit, self.n = int(total or 0), desc, unit, int(initial)
        self.stream, self.enabled = stream, enabled
        self.steps, self.interval_s, self.min_gap_s = max(int(steps), 1), interval_s, min_gap_s
        self.postfix: dict[str, Any] = {}
        self._start = self._last = time.perf_counter()
        self._initial, self._printed = self.n, self.n
        self._step = self._step_of(self.n)

    def _step_of(self, n: int) -> int:
        return (n * self.steps) // self.total if self.total > 0 else 0

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if not self.enabled:
            return
        now, step = time.perf_counter(), self._step_of(self.n)
        since = now - self._last
        finished = self.total > 0 and self.n >= self.total > self._printed
        if finished or (step > self._step and since >= self.min_gap_s) or since >= self.interval_s:
            self._step = step
            self._line(now)

    def set_postfix(self, **values: Any) -> None:
        """Values shown at the end of the next line (e.g. the loss)."""
        self.postfix = values

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        """Text shown at the end of the next line (e.g. the condition being traced), as tqdm's."""
        self.postfix = {"": text}

    def close(self) -> None:
        """A last line when the work stopped between two lines (Ctrl-C, an error, a total overestimated)."""
        if self.enabled and self.n != self._printed:
            self._line(time.perf_counter())
        self.enabled = False

    def _line(self, now: float) -> None:
        elapsed = now - self._start
        done = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
        extra = "".join(f", {key}={value}" if key else f", {value}" for key, value in self.postfix.items())
        stream = sys.stderr if self.stream is None else self.stream
        print(f"  {self.desc}: {done}{share} in {elapsed:.1f} s, {rate:.1f} {self.unit}/s{extra}", file=stream, flush=True)
        self._last, self._printed = now, self.n

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StageProgress:
    """One line per slow stage of unknown length on stderr, with its duration, so long runs show where they are."""

    def __init__(self, enabled: bool = True, stream: IO[str] | None = None) -> None:
        self.enabled, self.stream = enabled, stream
        self._name: str | None = None
        self._start = 0.0

    def __call__(self, name: str) -> None:
        self.finish()
        self._name, self._start = name, time.perf_counter()
        if self.enabled:
            print(f"  {name} ...", end="", file=self.stream or sys.stderr, flush=True)

    def finish(self, failed: bool = False) -> None:
        if self._name is not None and self.enabled:
            print(" failed" if failed else f" {time.perf_counter() - self._start:.1f} s", file=self.stream or sys.stderr,
                  flush=True)
        self._name = None


@contextmanager
def stage_lines(progress: Callable[[str], None] | bool) -> Iterator[Callable[[str], None]]:
    """The callable that receives each stage's name, from a ``progress`` argument of the API.

    ``True``/``False``: a :class:`StageProgress` on stderr (or silent), whose last line ends in its
    duration, or in "failed" when the block raises; a callable is used as it is.
    """
    if callable(progress) and not isinstance(progress, StageProgress):
        yield progress
        return
    lines = progress if isinstance(progress, StageProgress) else StageProgress(enabled=bool(progress))
    try:
        yield lines
    except BaseException:
        lines.finish(failed=True)
        raise
    lines.finish()
