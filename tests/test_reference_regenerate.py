"""The stored reference values are what the R scripts beside them produce today.

Runs each ``tests/reference/<name>.R`` into a temporary folder and compares the fresh JSON with
the stored one. Needs R and the reference packages; skipped, with the reason, without them (the
comparisons with mosaic in ``test_reference_values.py`` need only the stored JSON).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REFERENCE = Path(__file__).parent / "reference"
SCRIPTS = sorted(p for p in REFERENCE.glob("*.R") if p.name != "common.R")
# what may differ between machines without the values differing: the versions are reported
VERSION_KEYS = {"r_version", "packages"}


def _packages(script: Path) -> list[str]:
    match = re.search(r"packages <- c\(([^)]*)\)", script.read_text())
    assert match, f"{script.name} does not list its packages as `packages <- c(...)`"
    return re.findall(r'"([^"]+)"', match.group(1))


def _installed_packages(rscript: str) -> set[str]:
    out = subprocess.run([rscript, "-e", 'cat(rownames(installed.packages()), sep = "\\n")'],
                         capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.split())


@pytest.fixture(scope="module")
def r_packages() -> tuple[str, set[str]]:
    """Rscript and the R packages installed beside it."""
    found = shutil.which("Rscript")
    if found is None:
        pytest.skip("Rscript not found: regenerating the reference values needs R (the stored values are still checked)")
    return found, _installed_packages(found)


def _differences(stored, fresh, where: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(fresh, dict):
        if stored.keys() != fresh.keys():
            return [f"{where or 'top level'}: keys {sorted(stored)} stored, {sorted(fresh)} now"]
        return [d for k in stored if k not in VERSION_KEYS for d in _differences(stored[k], fresh[k], f"{where}.{k}")]
    if isinstance(stored, list) and isinstance(fresh, list):
        if len(stored) != len(fresh):
            return [f"{where}: {len(stored)} entries stored, {len(fresh)} now"]
        return [d for i, (a, b) in enumerate(zip(stored, fresh)) for d in _differences(a, b, f"{where}[{i}]")]
    numbers = (int, float)
    if isinstance(stored, numbers) and isinstance(fresh, numbers) and not isinstance(stored, bool):
        same = math.isclose(stored, fresh, rel_tol=1e-9, abs_tol=1e-15)
    else:
        same = stored == fresh
    return [] if same else [f"{where}: {stored!r} stored, {fresh!r} now"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_stored_reference_values_are_what_the_r_script_computes(script, r_packages, tmp_path):
    """Each script runs where its own packages are installed (Debian ships metafor and clubSandwich;
    clusrank, clust.bin.pair and PropCIs come from CRAN), so the others still run without them."""
    rscript, installed = r_packages
    missing = sorted(set(_packages(script)) - installed)
    if missing:
        pytest.skip(f"R package(s) {', '.join(missing)} not installed: {script.name} needs them to regenerate its values")
    subprocess.run([rscript, str(script), str(tmp_path)], check=True, capture_output=True, text=True, timeout=300)
    stored = json.loads((REFERENCE / f"{script.stem}.json").read_text())
    fresh = json.loads((tmp_path / f"{script.stem}.json").read_text())
    differences = _differences(stored, fresh)
    versions = {k: (stored[k], fresh[k]) for k in VERSION_KEYS if stored[k] != fresh[k]}
    assert not differences, (
        f"{script.stem}.json is not what {script.name} computes now ({len(differences)} difference(s), "
        f"first: {differences[:3]}; versions stored/now: {versions or 'the same'}): "
        "run `make reference` and review the change")
