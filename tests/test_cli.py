"""Usage errors of every kind are one line on stderr, exit 2, no traceback (whichever click typer runs on)."""

from __future__ import annotations

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
