"""The R recipe of docs/trace-format.md, run as written: R's per-condition mAP equals the file's.

Runs where ``Rscript`` and the hdf5r package are installed (Debian: ``r-base-core r-cran-hdf5r``)
and skips otherwise.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from conftest import REPO_ROOT

RECIPE_HEADING = "### In R (hdf5r)"


def _recipe() -> str:
    """The first ```r block after the recipe's heading in docs/trace-format.md."""
    text = (REPO_ROOT / "docs" / "trace-format.md").read_text(encoding="utf-8")
    section = text[text.index(RECIPE_HEADING):]
    return re.search(r"```r\n(.*?)```", section, re.S).group(1)


def _skip_without_hdf5r() -> None:
    if shutil.which("Rscript") is None:
        pytest.skip("Rscript is not installed (Debian: r-base-core r-cran-hdf5r)")
    probe = subprocess.run(["Rscript", "-e", 'quit(status = !requireNamespace("hdf5r", quietly = TRUE))'],
                           capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("the R package hdf5r is not installed (Debian: r-cran-hdf5r)")


def test_the_r_recipe_reads_the_mAP_of_every_condition(tmp_path):
    _skip_without_hdf5r()
    import analysis

    # one gallery image per identity: queries on its camera have no true match, so `valid` matters
    analysis.simulate(tmp_path / "trace.h5", n_ids=15, groups=3, n_subsets=2, gallery_per_id=1, seed=4)
    script = _recipe().replace("trace$close_all()", "") + (
        'write.csv(data.frame(condition = conditions, mAP = unname(mAP), stored = unname(stored)),\n'
        '          "r_map.csv", row.names = FALSE)\n'
        "trace$close_all()\n"
    )
    (tmp_path / "recipe.R").write_text(script, encoding="utf-8")
    result = subprocess.run(["Rscript", "recipe.R"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]

    with h5py.File(tmp_path / "trace.h5", "r") as f:
        conditions = list(f["condition"].asstr()[()])
        stored = f["conditions/mAP"][()]
        valid = f["query_images/valid"][()].astype(bool)
    assert 0 < valid.sum() < len(valid)
    with open(tmp_path / "r_map.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["condition"] for row in rows] == conditions
    from_r = np.array([float(row["mAP"]) for row in rows])
    stored_in_r = np.array([float(row["stored"]) for row in rows])
    np.testing.assert_allclose(from_r, stored, rtol=0, atol=1e-6)  # float32 AP, float64 means
    np.testing.assert_allclose(stored_in_r, stored, rtol=1e-12)
