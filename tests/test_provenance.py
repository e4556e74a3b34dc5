"""One provenance source: a trace and its report name the same commit, '+dirty' included."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mosaic.core.provenance import SOURCE_PACKAGES, git_commit, package_versions

REPO = Path(__file__).resolve().parents[1]


def test_report_and_trace_record_the_same_commit():
    from mosaic.tracing.engine import build_provenance
    from reports.provenance import source_commit

    assert source_commit() == (git_commit() or "")
    assert build_provenance(command="x").get("git_commit") == git_commit()


def test_commit_is_marked_dirty_exactly_when_the_packages_have_local_changes():
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--",
                                 *SOURCE_PACKAGES], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    git_commit.cache_clear()
    assert git_commit() == head + ("+dirty" if status else "")


def test_package_versions_leave_out_what_is_not_installed():
    versions = package_versions(("numpy", "no-such-distribution-here"))
    assert set(versions) == {"numpy"} and versions["numpy"][0].isdigit()
