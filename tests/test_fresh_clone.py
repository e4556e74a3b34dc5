"""A fresh clone passes its test suite with nothing beside it: no real attribute files anywhere.

The repository (its committed state) is cloned into an empty temporary folder and the default
suite runs there with the real files hidden: ``MOSAIC_SHARED_DATA`` pointing nowhere, an empty
home and cache, no ``shared/`` beside the clone. It must end with no failure and no error, and
the tests of the real files must skip with their one reason. The suite runs in this interpreter
(the installed environment), with the clone first on the path. Slow: it runs the whole suite
again, so `.ci/run` runs it after the default suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REAL_FILES_MISSING, REPO_ROOT, SHARED_DATA_ENV, clone_checkout

pytestmark = pytest.mark.slow

THIS_TEST = Path(__file__).relative_to(REPO_ROOT).as_posix()


def _hidden_environment(base: Path, clone: Path) -> dict[str, str]:
    home = base / "home"
    (home / ".cache").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSAIC_") and k not in ("PYTEST_ADDOPTS",)}
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        PYTHONPATH=str(clone),
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
    )
    env[SHARED_DATA_ENV] = str(base / "nowhere")
    return env


def test_a_fresh_clone_passes_with_the_real_files_hidden(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    base = tmp_path / "empty"
    base.mkdir()
    clone = clone_checkout(base / "mosaic")
    assert not (base / "shared").exists() and not (clone / ".venv").exists()
    env = _hidden_environment(base, clone)

    where = subprocess.run([sys.executable, "-c", "import mosaic; print(mosaic.__file__)"], cwd=clone, env=env,
                           capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(clone), where.stdout  # the clone's code, not this checkout's

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--deselect", THIS_TEST],
        cwd=clone, env=env, capture_output=True, text=True, timeout=3000,
    )
    tail = result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, tail
    assert not re.search(r"\d+ (failed|errors?)\b", summary), summary
    assert re.search(r"\d+ passed", summary), summary
    skipped = int(re.search(r"(\d+) skipped", summary).group(1)) if "skipped" in summary else 0
    reasons = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    real = [line for line in reasons if REAL_FILES_MISSING in line]
    counts = sum(int(re.match(r"SKIPPED \[(\d+)\]", line).group(1)) for line in real)
    assert counts >= 15, "\n".join(reasons)  # the real-file tests: counts and traps of both files
    assert skipped >= counts
