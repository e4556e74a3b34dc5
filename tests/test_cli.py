"""Usage errors of every kind are one line on stderr, exit 2, no traceback (whichever click typer runs on);
progress follows one convention on every long-running command."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from mosaic.app.cli import main


@pytest.mark.parametrize("args, expected", [
    (["synth", "--out", "w", "--bogus"], "No such option: --bogus"),
    (["synth", "--out", "w", "--ids", "many"], "Invalid value for '--ids'"),
    (["trace"], "Missing option '--ckpt'"),
    (["configs", "copy"], "Missing argument 'name'"),
    (["nosuch"], "No such command 'nosuch'"),
])
def test_usage_errors_are_one_line_naming_the_help(args, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1
    assert "--help')" in err
    assert list(tmp_path.iterdir()) == []


def test_the_console_script_prints_no_traceback_for_a_usage_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mosaic", "synth", "--out", "w", "--ids", "many"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


# ------------------------------------------------------------------------------- progress
# The long-running commands: each takes the one progress switch (mosaic.core.progress).
LONG_RUNNING = ("synth", "train", "trace", "report", "study", "demo", "data get-attributes")


def _command(path: str):
    import typer

    from mosaic.app.cli import app

    command = typer.main.get_command(app)
    for name in path.split():  # "" is the group itself
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", LONG_RUNNING)
def test_every_long_running_command_takes_the_one_progress_switch(path):
    (option,) = [p for p in _command(path).params if p.name == "progress"]
    assert option.opts == ["--progress"] and set(option.secondary_opts) == {"--no-progress", "--quiet", "-q"}
    assert option.default is True


def test_no_command_has_a_switch_of_its_own_for_progress():
    import click

    def leaves(command, path=()):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from leaves(sub, (*path, name))
        else:
            yield " ".join(path), command

    for path, command in leaves(_command("")):
        names = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        assert not {"--quiet", "-q", "--progress"} & names or path in LONG_RUNNING, path


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_away_from_a_terminal_and_a_bar_on_one():
    from tqdm import tqdm

    from mosaic.core.progress import PlainProgress, progress_bar

    log = io.StringIO()
    with progress_bar(200, "work", unit="img", stream=log) as bar:
        assert isinstance(bar, PlainProgress)
        for _ in range(200):
            bar.update(1)
    assert log.getvalue().count("\n") == 1 and "\r" not in log.getvalue()  # a fast stage: its last line only
    assert "work: 200/200 img (100%)" in log.getvalue()
    log = io.StringIO()
    with PlainProgress(100, "slow", stream=log, min_gap_s=0.0) as bar:
        bar.set_postfix(loss="0.5")
        for _ in range(100):
            bar.update(1)
    assert [line.split(" in ")[0] for line in log.getvalue().splitlines()] == [
        f"  slow: {n}/100 it ({n}%)" for n in (25, 50, 75, 100)]
    assert log.getvalue().rstrip().endswith("loss=0.5")
    log = io.StringIO()
    with PlainProgress(100, "stopped", stream=log) as bar:
        bar.update(37)  # Ctrl-C or an error: close() says where it stopped
    assert "stopped: 37/100 it (37%)" in log.getvalue()
    quiet = io.StringIO()
    with progress_bar(10, "off", stream=quiet, enabled=False) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""
    terminal = _Terminal()
    bar = progress_bar(10, "bar", stream=terminal)
    assert isinstance(bar, tqdm)
    bar.close()


def test_a_command_logs_plain_lines_and_is_silent_when_quiet(tmp_path, capsys):
    args = ["synth", "--ids", "6", "--images-per-id", "4", "--seed", "5"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and 1 <= err.count("\n") <= 4 and "synth:" in err
    for quiet in ("-q", "--quiet", "--no-progress"):
        assert main([*args, "--out", str(tmp_path / quiet.strip("-")), quiet]) == 0
        assert capsys.readouterr().err == ""
