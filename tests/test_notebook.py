"""mosaic in a notebook, as an analyst uses it: a real kernel executes the cells (nbclient + ipykernel,
from the dev extra) and every display it sends back is measured.

A display is what Jupyter stores in the notebook and shows under the cell: the text and the HTML
of every ``execute_result``. Each stays under 5,000 characters whatever the size of the object
(a report's HTML is megabytes, a results object holds dozens of tables), so a notebook stays
small and a cell's output fits a screen.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat, nbclient and ipykernel come with the dev extra")
nbclient = pytest.importorskip("nbclient", reason="nbclient and ipykernel come with the dev extra")
pytest.importorskip("ipykernel", reason="ipykernel comes with the dev extra")

from analysis.display import MAX_CHARS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# (name of the object the cell ends with, its source): what an analyst types, smallest settings
CELLS = [
    ("setup", "import analysis\n"
              "from analysis.simulation.study import simulate_study\n"
              "from mosaic import api\n"
              "from mosaic.tracefile import write_trace\n"
              "FAST = dict(n_bootstrap=100, n_permutations=100, seed=0)"),
    ("Trace", "trace = analysis.simulate('trace.h5', n_ids=24, groups=4, n_subsets=8, seed=0)\n"
              "trace = analysis.read_trace('trace.h5')\n"
              "trace"),
    ("DataFrame", "trace.paired('drop:g00')[['query', 'pid', 'd_ap']].head(3)"),
    ("Results", "results = analysis.analyze(trace, **FAST)\n"
                "results"),
    ("ReportResult", "report = api.report(results, 'report.html')\n"
                     "report"),
    ("StudyResult", "runs = simulate_study({'A': {'g00': 1.0}, 'B': {}}, n_seeds=2, n_ids=24, kinds=('oracle', 'drop'), seed=1)\n"
                    "paths = [str(write_trace(run.data, f'run{i}.h5')) for i, run in enumerate(runs)]\n"
                    "study = api.study(paths, 'study.html', n_bootstrap=100)\n"
                    "study"),
    ("StudyResults", "study.results"),
    ("figure", "results.plot_ranking()"),
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook of :data:`CELLS`, executed in a fresh kernel in a folder of its own."""
    folder = tmp_path_factory.mktemp("notebook")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for _, source in CELLS]
    # the kernel is this interpreter, importing this checkout first, on one thread (2-core machines)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    client.execute(env=env)
    return {name: cell for (name, _), cell in zip(CELLS, notebook.cells)}, notebook, folder


def _displays(cell) -> dict[str, str]:
    """The MIME bundle of the cell's result (its last expression's display)."""
    results = [out for out in cell.outputs if out.output_type in ("execute_result", "display_data")]
    assert results, f"the cell displayed nothing: {cell.source!r} -> {cell.outputs}"
    return dict(results[-1].data)


@pytest.mark.parametrize("name", ["Trace", "Results", "ReportResult", "StudyResult", "StudyResults"])
def test_every_display_is_short_and_rich(executed, name):
    cells, _, _ = executed
    bundle = _displays(cells[name])
    assert "text/html" in bundle, f"{name} has no rich display"
    for mime, text in bundle.items():
        assert len(text) < MAX_CHARS, f"{name}'s {mime} display is {len(text):,} characters"
    assert len(bundle["text/plain"].splitlines()) <= 40, f"{name}'s text display is longer than a screen"


def test_the_displays_say_what_a_reader_needs_next(executed):
    cells, _, folder = executed
    trace = _displays(cells["Trace"])["text/html"]
    assert "trace.h5" in trace and "conditions" in trace and "warnings" in trace
    report = _displays(cells["ReportResult"])
    size = (folder / "report.html").stat().st_size
    assert size > 20 * MAX_CHARS  # the report itself is far larger than its display
    assert "report.html" in report["text/plain"] and (" KB" in report["text/plain"] or " MB" in report["text/plain"])
    assert "warnings" in report["text/plain"]
    study = _displays(cells["StudyResult"])["text/plain"]
    assert "study.html" in study and "StudyResult" in study
    assert "d_ap" in _displays(cells["DataFrame"])["text/plain"]  # Trace.paired's baseline defaults to oracle


def test_plot_ranking_renders_a_figure(executed):
    cells, _, _ = executed
    bundle = _displays(cells["figure"])
    assert bundle.get("image/svg+xml", "").lstrip().startswith("<svg"), sorted(bundle)
    assert "<svg" in bundle["text/html"] and "rank" in bundle["text/html"].lower()


def test_the_executed_notebook_stays_small(executed):
    _, notebook, _ = executed
    text = nbformat.writes(notebook)
    figure = sum(len(v) for v in _displays(executed[0]["figure"]).values())
    assert len(text) - figure < 40_000, f"the executed notebook is {len(text):,} characters, {figure:,} of them the figure"
    errors = [out for cell in notebook.cells for out in cell.outputs if out.output_type == "error"]
    assert not errors, errors
