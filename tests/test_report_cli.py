"""`mosaic report` on the command line: outputs, bad inputs (one error line, exit 2), no torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mosaic.app.cli import main

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
FAST = ["--bootstrap", "100", "--permutations", "100"]


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory) -> Path:
    from analysis import simulate

    path = tmp_path_factory.mktemp("cli") / "trace.h5"
    simulate(path, n_ids=20, groups=4, effects={"g00": 1.0}, n_subsets=12, seed=5)
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_help_explains_formats_and_defaults(capsys):
    assert main(["report", "--help"]) == 0
    out = capsys.readouterr().out
    for word in ("--format", "--no-images", "--bootstrap", "--permutations", "--seed", "report.html", "json"):
        assert word in out


def test_unknown_format_lists_the_valid_ones(trace_path, capsys):
    assert main(["report", str(trace_path), "--format", "pdf"]) == 2
    line = _error_line(capsys)
    assert "'pdf'" in line and "html, md, json" in line
    assert not list(trace_path.parent.glob("report*")) and not list(trace_path.parent.glob(".report*"))


def test_missing_output_folder(trace_path, tmp_path, capsys):
    assert main(["report", str(trace_path), "--out", str(tmp_path / "nowhere" / "r.html")]) == 2
    assert "does not exist" in _error_line(capsys)


def test_missing_trace(tmp_path, capsys):
    assert main(["report", str(tmp_path / "absent.h5")]) == 2
    assert "does not exist" in _error_line(capsys)


def test_file_that_is_not_a_trace(tmp_path, capsys):
    import h5py

    text = tmp_path / "notes.h5"
    text.write_text("hello")
    assert main(["report", str(text)]) == 2
    assert "not a readable HDF5 file" in _error_line(capsys)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["x"] = [1, 2, 3]
    assert main(["report", str(other)]) == 2
    assert "not a mosaic trace" in _error_line(capsys)
    assert not list(tmp_path.glob("report*"))


def test_trace_with_a_newer_major_schema(trace_path, tmp_path, capsys):
    import shutil

    import h5py

    newer = tmp_path / "newer.h5"
    shutil.copy(trace_path, newer)
    with h5py.File(newer, "r+") as h5:
        h5.attrs["schema_version"] = "99.0.0"
    assert main(["report", str(newer)]) == 2
    assert "newer than this mosaic" in _error_line(capsys)


def test_output_path_resolution(trace_path, tmp_path):
    from mosaic.app.reporting import resolve_output

    assert resolve_output(trace_path, None, None)[1] == trace_path.parent / "report.html"
    fmt, path = resolve_output(trace_path, tmp_path / "r.json", None)
    assert fmt.name == "json" and path == tmp_path / "r.json"
    fmt, path = resolve_output(trace_path, tmp_path, "md")
    assert fmt.name == "md" and path == tmp_path / "report.md"
    fmt, path = resolve_output(trace_path, tmp_path / "r.txt", None)
    assert fmt.name == "html"


def _run_report(args: list[str]) -> subprocess.CompletedProcess:
    """Run the command in a fresh interpreter and fail if torch was imported on the way."""
    code = (
        "import sys, mosaic.app.cli\n"
        f"rc = mosaic.app.cli.main({args!r})\n"
        "assert 'torch' not in sys.modules, 'mosaic report imported torch'\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_report_next_to_the_trace_without_torch(trace_path):
    done = _run_report(["report", str(trace_path), "--no-images", *FAST])
    assert done.returncode == 0, done.stderr
    out = trace_path.parent / "report.html"
    assert done.stdout.strip() == str(out)
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'id="summary-groups"' in html
    # progress of the slow stages on stderr, nothing but the path on stdout
    assert "reading trace" in done.stderr and "analysis: paired" in done.stderr and "rendering html" in done.stderr
    assert "--no-images" in html and "--bootstrap 100" in html  # the command is in the provenance
    assert not list(trace_path.parent.glob(".report*"))  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not a private (0600) temp file


@pytest.mark.slow
def test_cli_is_deterministic_apart_from_the_timestamp(trace_path, tmp_path):
    created = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
    texts = []
    for i in range(2):
        out = tmp_path / f"r{i}"
        out.mkdir()
        done = _run_report(["report", str(trace_path), "--format", "json", "--out", str(out), "--no-images", *FAST])
        assert done.returncode == 0, done.stderr
        texts.append((out / "report.json").read_text(encoding="utf-8").replace(str(out), "OUT"))
    assert created.sub("T", texts[0]) == created.sub("T", texts[1])
    assert json.loads(texts[0])["format"] == "mosaic-report"


def test_ci_level_sets_every_interval_and_alpha_only_the_decisions(trace_path, tmp_path, capsys):
    from scipy import stats

    out = tmp_path / "r.json"
    assert main(["report", str(trace_path), "--format", "json", "--out", str(out), "--no-images", "-q",
                 "--alpha", "0.01", "--ci-level", "0.8", *FAST]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["metadata"]["analysis_settings"]["ci_level"] == 0.8
    assert "--ci-level 0.8" in report["metadata"]["command"]
    table = report["analysis"]["tables"]["config_glm_gaussian"]
    gaussian = [r for r in (dict(zip(table["columns"], row)) for row in table["data"]) if r["status"] == "ok"]
    assert gaussian
    for row in gaussian:
        multiplier = stats.t.ppf(0.9, row["df"])             # 80 % two-sided, whatever alpha is
        assert row["ci_high"] - row["coef"] == pytest.approx(multiplier * row["se"], rel=1e-6, abs=1e-9)
        assert row["reject_holm"] == (row["p_holm"] is not None and row["p_holm"] <= 0.01)


def test_ci_level_out_of_range_is_one_error_line(trace_path, capsys):
    assert main(["report", str(trace_path), "--ci-level", "95", *FAST]) == 2
    assert "ci_level must lie strictly between 0 and 1" in _error_line(capsys)
