"""The ``mosaic`` command line.

Each sub-command lives in its own module under :mod:`mosaic.app.commands` and registers itself
through a ``register(app)`` function; heavy imports (torch) happen inside the commands that
need them, so ``mosaic --help``, ``mosaic report`` and ``mosaic inspect`` start fast and never
load torch.
"""

from __future__ import annotations

import importlib
import sys

import typer

from mosaic import __version__
from mosaic.core.errors import MosaicError

# Order is the order shown by ``mosaic --help``.
COMMAND_MODULES = (
    "demo",
    "synth",
    "data",
    "configs",
    "train",
    "trace",
    "inspect",
    "report",
    "study",
)

app = typer.Typer(
    name="mosaic",
    help=(
        "Measure which semantic attributes a person re-identification model relies on: "
        "train a ViT with one LoRA expert per attribute state, trace retrieval under controlled "
        "routing conditions, and rank the attributes."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mosaic {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Measure which semantic attributes a person re-identification model relies on."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"mosaic.app.commands.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2.

    SIGTERM (a scheduler's stop) ends a command like Ctrl-C: partial outputs removed, one line,
    exit 143 (:mod:`mosaic.core.signals`); training checkpoints first (:mod:`mosaic.train.interrupt`).
    """
    import signal

    from mosaic.core.signals import Terminated, stop_on

    try:
        # Outside standalone mode click returns typer.Exit's code instead of raising it.
        with stop_on([signal.SIGTERM]):
            returned = app(args=argv, prog_name="mosaic", standalone_mode=False)
    except MosaicError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except Terminated as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except _CLICK_ERROR as exc:  # usage errors (unknown option, wrong type) arrive here in non-standalone mode
        typer.echo(f"error: {_usage_line(exc)}", err=True)
        return exc.exit_code
    return returned if isinstance(returned, int) else 0


# The click that typer runs on: typer >= 0.26 carries its own copy (typer._click), older typer
# uses the click package. Its BadParameter, re-exported by typer, leads to the right base class.
_CLICK_ERROR = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def _usage_line(exc: Exception) -> str:
    """A usage error as one line that names the problem and where the options are described."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see '{ctx.command_path} --help')" if ctx is not None else message


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
