"""The analysis and reports packages must never import torch (the trace is their only input)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import analysis
import reports

REPO = Path(__file__).resolve().parents[1]


def _submodules(package) -> list[str]:
    return [package.__name__] + [
        f"{package.__name__}.{m.name}" for m in pkgutil.walk_packages(package.__path__) if not m.name.startswith("_")
    ]


def test_analysis_and_reports_never_import_torch():
    """Import every submodule, then run a whole (small) analysis, in a fresh interpreter."""
    modules = _submodules(analysis) + _submodules(reports)
    assert {"analysis.analyze", "analysis.paired", "analysis.simulate"} <= set(modules)
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


# The torch-free core of mosaic: the only mosaic modules that analysis/ and reports/ may import.
# Each of them may import (at module level) only modules of this list, so the rule holds transitively.
TORCH_FREE_CORE = frozenset({
    "mosaic",  # __version__ only
    "mosaic.errors",
    "mosaic.fileio",
    "mosaic.diskspace",  # a write's failure as one line, and the free-space check before it
    "mosaic.jsonsafe",
    "mosaic.schema",
    "mosaic.shipped",  # files shipped inside the package, found by name (schemas, configs)
    "mosaic.conditions",
    "mosaic.codes",
    "mosaic.interventions",
    "mosaic.state_shares",
    "mosaic.traceio",
    "mosaic.trace_layout",
    "mosaic.trace_read",
    "mosaic.trace_write",
    "mosaic.tracecheck",
    "mosaic.router_names",
    "mosaic.settings",  # the one validation engine of every settings object
    "mosaic.provenance",  # source commit and versions, shared by traces and reports
    "mosaic.metrics",  # its torch path imports torch inside the one function that needs it
})
TORCH_STACK = ("torch", "torchvision", "timm", "peft")


def _imports(path: Path, *, module_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``; ``from a import b`` counts as ``a.b`` when that is a module."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if (REPO / (node.module.replace(".", "/") + f"/{alias.name}.py")).exists()]
    return found


def _module_path(name: str) -> Path:
    base = REPO / name.replace(".", "/")
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def test_analysis_and_reports_import_only_the_torch_free_core():
    """Parse every analysis/ and reports/ module: no torch stack, and no mosaic module outside TORCH_FREE_CORE."""
    offences = []
    files = sorted((REPO / "analysis").rglob("*.py")) + sorted((REPO / "reports").rglob("*.py"))
    for path in files:
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in TORCH_STACK or (top == "mosaic" and module not in TORCH_FREE_CORE):
                offences.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not offences, "analysis/reports may import only the torch-free core:\n" + "\n".join(offences)


def test_the_torch_free_core_imports_only_itself():
    offences = []
    for name in sorted(TORCH_FREE_CORE):
        path = _module_path(name)
        if not path.exists():
            continue
        for line, module in _imports(path, module_level_only=True):
            top = module.split(".")[0]
            if top in TORCH_STACK or (top == "mosaic" and module not in TORCH_FREE_CORE):
                offences.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not offences, "the torch-free core must not reach outside itself:\n" + "\n".join(offences)
