"""The analysis and reports packages must never import torch (the trace is their only input), checked at
run time; ``tests/test_architecture.py`` checks the import statements of every layer."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import analysis
import reports

REPO = Path(__file__).resolve().parents[1]


def _submodules(package) -> list[str]:
    """The package and every module beneath it, in its sub-packages too."""
    return [package.__name__] + [
        m.name for m in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
        if not m.name.rpartition(".")[2].startswith("_")
    ]


def test_analysis_and_reports_never_import_torch():
    """Import every submodule, then run a whole (small) analysis, in a fresh interpreter."""
    modules = _submodules(analysis) + _submodules(reports)
    assert {"analysis.analyze", "analysis.methods.paired", "analysis.stats.glm", "analysis.simulation.trace", "reports.figures.svg"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import analysis\n"
        "trace = analysis.simulate(n_ids=20, groups=3, n_subsets=8, effects={'g00': 1.0}, seed=0)\n"
        "options = {'configuration': {'rf_n_estimators': 20, 'xgb_n_estimators': 20, 'permutation_repeats': 2},\n"
        "           'explanatory': {'n_estimators': 20, 'n_folds': 2}}\n"
        "analysis.analyze(trace, n_bootstrap=100, n_permutations=100, options=options)\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
