"""Where outputs come from: the source commit and the installed versions, for traces and reports alike.

Torch-free, and the one place these facts are gathered, so a trace and the report made from it
describe the same checkout the same way (``+dirty`` when the packages have uncommitted changes).
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["git_commit", "package_versions"]

# the packages whose code decides a trace's or a report's numbers, relative to the checkout root
SOURCE_PACKAGES = ("mosaic", "analysis", "reports")


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the checkout mosaic runs from, ``+dirty`` when its packages have local changes;
    ``None`` outside a checkout (an installed wheel)."""
    root = Path(__file__).resolve().parents[__name__.count(".")]  # the folder holding the mosaic package
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", *SOURCE_PACKAGES],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


def package_versions(distributions) -> dict[str, str]:
    """Installed version of each named distribution (absent ones are left out)."""
    versions = {}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
