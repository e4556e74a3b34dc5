"""Options every long-running command shares, declared once so that they read alike everywhere."""

from __future__ import annotations

import typer

PROGRESS_HELP = ("Progress on stderr: bars on a terminal, a few plain lines when stderr is a file or a pipe. "
                 "-q/--quiet is --no-progress.")


def progress_option() -> bool:
    """``--progress/--no-progress``, with ``-q``/``--quiet`` as the same switch (:mod:`mosaic.core.progress`)."""
    return typer.Option(True, "--progress/--no-progress", " /--quiet", " /-q", help=PROGRESS_HELP)
