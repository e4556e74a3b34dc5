"""The layers as the folders show them, checked on the source: no import circle anywhere, the
torch-free sub-packages of ``mosaic`` never reach torch, and ``analysis`` and ``reports`` read
``mosaic`` only through the trace contract and what it rests on.

The rules name folders, never modules, so a module added to a folder is held to its folder's rule.
(``tests/test_no_torch.py`` checks the same at run time, in a fresh interpreter.)

``reports`` draws on ``analysis`` and never the reverse, not even inside a function: the figures a
notebook gets from ``Results.plot_ranking()`` are the report's own (one plotting layer), and reach
``analysis`` through the registry ``analysis.results.FIGURES``, which ``reports.plots`` fills as it
loads and which ``Results`` loads by its module name the first time a figure is asked for.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mosaic", "analysis", "reports")
TORCH_STACK = ("torch", "torchvision", "timm", "peft")

# Sub-packages of mosaic whose modules load without torch: each imports, at module level, only
# the standard library, third-party packages other than the torch stack, and these folders.
TORCH_FREE = ("mosaic.core", "mosaic.tracefile", "mosaic.conditions", "mosaic.data", "mosaic.synth", "mosaic.configs")
# What analysis/ and reports/ may import of mosaic: the trace file contract, the conditions it
# names and the basics both rest on (plus the package root, for __version__).
READ_BY_ANALYSIS = ("mosaic.core", "mosaic.tracefile", "mosaic.conditions")
# The sub-packages mosaic/ is made of; a new folder is a new layer and belongs in one of the lists.
LAYERS = TORCH_FREE + ("mosaic.model", "mosaic.train", "mosaic.tracing", "mosaic.app")
# The folders of analysis/ and reports/, lowest first: a folder imports itself and the folders before
# it, never one after it. Beside them, at the top of each package, sit only its entry points (reading a
# trace, analyze, the results; the report's build) and the small modules everything reads (settings,
# the report document, the rounding rule), at most TOP_MODULES of them.
FOLDERS = {
    "analysis": ("stats", "tables", "methods", "simulation", "studies"),
    "reports": ("formats", "figures", "sections"),
}
TOP_MODULES = {"analysis": 8, "reports": 10}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _within(name: str, folders: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in folders)


def _imports(name: str, *, module_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, imported module) of every import of ``name``: function-level and type-checking ones
    too unless ``module_level_only``; ``from a import b`` is ``a.b`` when that is a module of ours."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if full in MODULES else base))
    return found


def _internal(module: str) -> str | None:
    """The module of ours that an import loads (the longest known prefix), or None."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def test_mosaic_is_made_of_the_named_layers():
    tops = {name.split(".")[1] for name in MODULES if name.count(".") >= 1 and name.startswith("mosaic.")}
    folders = {t for t in tops if (REPO / "mosaic" / t).is_dir()}
    assert folders == {layer.split(".")[1] for layer in LAYERS}, "a folder of mosaic/ that no layer rule names"
    loose = sorted(t for t in tops if t not in folders)
    assert loose == ["__main__", "api"], f"mosaic/ holds only its sub-packages, the public API and __main__, not {loose}"


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return circles


def test_no_import_circle_anywhere():
    graph = {name: {m for _, imported in _imports(name) if (m := _internal(imported)) and m != name} for name in MODULES}
    circles = _circles(graph)
    assert not circles, "modules that import each other (directly or round a circle):\n" + "\n".join(map(str, circles))


def _offences(modules, allowed: tuple[str, ...], *, module_level_only: bool) -> list[str]:
    offences = []
    for name in modules:
        for line, imported in _imports(name, module_level_only=module_level_only):
            top = imported.split(".")[0]
            ours = _internal(imported)
            if top in TORCH_STACK or (top == "mosaic" and ours != "mosaic" and not _within(ours or imported, allowed)):
                offences.append(f"{MODULES[name].relative_to(REPO)}:{line} imports {imported}")
    return offences


def test_the_torch_free_layers_import_only_each_other_at_load():
    modules = [name for name in MODULES if _within(name, TORCH_FREE)]
    assert {"mosaic.core.schema", "mosaic.tracefile.read", "mosaic.conditions.registry"} <= set(modules)
    offences = _offences(modules, TORCH_FREE, module_level_only=True)
    assert not offences, "a torch-free layer reaches torch or a torch layer when it loads:\n" + "\n".join(offences)


@pytest.mark.parametrize("package", ["analysis", "reports"])
def test_analysis_and_reports_read_mosaic_only_through_the_trace_contract(package):
    modules = [name for name in MODULES if _within(name, (package,))]
    offences = _offences(modules, READ_BY_ANALYSIS, module_level_only=False)
    assert not offences, f"{package}/ may import only {', '.join(READ_BY_ANALYSIS)} of mosaic:\n" + "\n".join(offences)


def test_a_circle_or_a_forbidden_import_would_be_seen(tmp_path, monkeypatch):
    """The checks read real import statements, at every level, and see a circle through three modules."""
    import sys

    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []
    fake = tmp_path / "mosaic" / "core" / "example.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("import torch\n\ndef f():\n    from mosaic.tracing import engine\n")
    monkeypatch.setitem(MODULES, "mosaic.core.example", fake)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert [m for _, m in _imports("mosaic.core.example")] == ["torch", "mosaic.tracing.engine"]
    assert [m for _, m in _imports("mosaic.core.example", module_level_only=True)] == ["torch"]
    assert len(_offences(["mosaic.core.example"], TORCH_FREE, module_level_only=False)) == 2


def test_analysis_never_imports_reports_and_gets_its_figures_through_the_registry():
    offences = [f"{MODULES[name].relative_to(REPO)}:{line} imports {imported}"
                for name in MODULES if _within(name, ("analysis",))
                for line, imported in _imports(name) if imported.split(".")[0] == "reports"]
    assert not offences, "analysis/ imports reports/ (the figures go through analysis.results.FIGURES):\n" + \
        "\n".join(offences)
    from analysis.results import FIGURE_PROVIDER

    assert _within(FIGURE_PROVIDER, ("reports",)) and FIGURE_PROVIDER in MODULES
    assert "analysis.results" in {_internal(m) for _, m in _imports(FIGURE_PROVIDER, module_level_only=True)}


def test_results_draw_the_report_figures_without_reports_imported_first():
    import subprocess
    import sys

    script = (
        "import sys, pandas as pd\n"
        "from analysis import Results\n"
        "ranking = pd.DataFrame({'group': ['a', 'b'], 'family': ['f', 'f'], 'consensus_rank': [1.0, 2.0],"
        " 'rank_low': [1.0, 1.0], 'rank_high': [2.0, 2.0]})\n"
        "assert 'reports' not in sys.modules\n"
        "svg = Results(tables={'ranking_groups': ranking}).plot_ranking()._repr_svg_()\n"
        "assert svg.startswith('<svg') and 'reports.plots' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _layer(name: str) -> str:
    """The folder of analysis/ or reports/ that ``name`` sits in, or the module itself at the top."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (len(parts) == 2 and (REPO / parts[0] / parts[1]).is_dir()) else name


@pytest.mark.parametrize("package", sorted(FOLDERS))
def test_analysis_and_reports_are_made_of_the_named_folders(package):
    folders = {p.name for p in (REPO / package).iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(FOLDERS[package]), f"a folder of {package}/ that FOLDERS does not name (or one gone)"
    top = sorted(p.stem for p in (REPO / package).glob("*.py"))
    assert len(top) <= TOP_MODULES[package], f"{package}/ holds {len(top)} modules at its top: {top}; a folder holds the rest"


@pytest.mark.parametrize("package", sorted(FOLDERS))
def test_a_folder_imports_only_itself_and_the_folders_below_it(package):
    order = [f"{package}.{folder}" for folder in FOLDERS[package]]
    offences = []
    for name in MODULES:
        if _layer(name) not in order:
            continue
        for line, imported in _imports(name):
            target = _layer(ours) if (ours := _internal(imported)) else None
            if target in order and order.index(target) > order.index(_layer(name)):
                offences.append(f"{MODULES[name].relative_to(REPO)}:{line} imports {imported}, a folder above its own")
    assert not offences, "\n".join(offences)


def test_no_circle_between_the_folders_and_the_top_modules():
    """Each folder of analysis/ and reports/ taken as one node, each module at their top as its own:
    the graph of their imports (at every level) has no circle, so nothing imports back up."""
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        if not _within(name, tuple(FOLDERS)):
            continue
        node = _layer(name)
        graph.setdefault(node, set())
        for _, imported in _imports(name):
            ours = _internal(imported)
            if ours and _within(ours, tuple(FOLDERS)) and _layer(ours) != node:
                graph[node].add(_layer(ours))
    for targets in list(graph.values()):
        for target in targets:
            graph.setdefault(target, set())
    assert {"analysis.stats", "analysis.methods", "analysis.analyze", "reports.sections", "reports.build"} <= set(graph)
    circles = _circles(graph)
    assert not circles, "folders or top modules that import each other:\n" + "\n".join(map(str, circles))
