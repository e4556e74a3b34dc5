"""The library API (mosaic.api), and extending mosaic from user code: a condition kind and a router
registered outside the package are traced, written, read and reported with no edit to mosaic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mosaic import api
from mosaic.core.errors import MosaicError

from test_trace_cli import one_torch_thread, toy_run  # the toy manifest world and checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    with one_torch_thread():
        yield root, toy_run(root, seed=1, learned=False)[1]


@pytest.fixture
def user_kind():
    """``pair:<i>``: two neighbouring groups' experts on, the others off -- a kind mosaic does not ship."""
    from mosaic.conditions import CONDITION_KINDS, Condition, ConditionKind, register_condition_kind

    def expand(ctx):
        names = ctx.schema.group_names
        return [
            Condition(f"pair:{i}", "pair", "", tuple(j in (i, i + 1) for j in range(len(names))))
            for i in range(len(names) - 1)
        ]

    kind = register_condition_kind(ConditionKind("pair", "pair:<i>", "two neighbouring groups' experts on", expand,
                                                 in_default=False))
    yield kind
    CONDITION_KINDS.pop("pair")


def test_a_condition_kind_registered_from_user_code_is_traced_and_reported(setup, user_kind, tmp_path):
    from mosaic.tracing.settings import TraceSettings
    from mosaic.tracefile import read_trace_data

    _, ckpt = setup
    traced = api.trace(ckpt, tmp_path / "trace.h5", conditions="oracle,none,pair:*", device="cpu", seed=2,
                       settings=TraceSettings(top_k=3, max_rank=5, feature=None), progress=False)
    assert isinstance(traced, api.TraceResult) and traced.path.is_file()
    data = read_trace_data(traced.path)
    assert data.condition_name.tolist() == ["oracle", "none", "pair:0", "pair:1"]
    assert data.condition_kind.tolist()[2:] == ["pair", "pair"]
    # pair:0 switches the experts of groups 0 and 1 only: the gates of group 2 stay off
    assert np.isfinite(data.ap).all() and set(traced.headline) == {"oracle", "none"}

    report = api.report(traced.path, tmp_path / "report.json", n_bootstrap=100, n_permutations=100)
    assert isinstance(report, api.ReportResult) and report.path == tmp_path / "report.json"
    conditions = report.results.table("conditions")
    assert {"pair:0", "pair:1"} <= set(conditions["condition"])
    written = json.loads(report.path.read_text(encoding="utf-8"))
    assert "pair:1" in json.dumps(written["analysis"]["tables"]["conditions"])


def test_an_unregistered_kind_is_refused_before_any_image_is_read(setup, tmp_path):
    _, ckpt = setup
    with pytest.raises(MosaicError, match="pair"):
        api.trace(ckpt, tmp_path / "trace.h5", conditions="oracle,pair:*", device="cpu", progress=False)
    assert not (tmp_path / "trace.h5").exists()


def test_a_router_registered_from_user_code_is_a_valid_trace_and_config_router():
    from mosaic.model import ROUTERS, register_router
    from mosaic.model.routers import NullRouter
    from mosaic.core.router_names import ROUTER_NAMES
    from mosaic.train.config import load_config

    from mosaic import tracefile as traceio

    assert set(ROUTERS) == set(ROUTER_NAMES)  # the torch-free names are the class registry's
    assert traceio.ROUTERS is ROUTER_NAMES  # the trace checks the registry itself, not a copy
    with pytest.raises(MosaicError, match="unknown router 'quiet'"):
        load_config(None, ["eval.routers=[oracle,quiet]"])

    class Quiet(NullRouter):
        """No expert on, under another name."""

    register_router("quiet", Quiet)
    try:
        assert load_config(None, ["eval.routers=[oracle,quiet]"]).eval.routers == ("oracle", "quiet")
    finally:
        ROUTERS.pop("quiet")
        ROUTER_NAMES.pop("quiet")


def test_api_errors_are_mosaic_errors_raised_before_work(setup, tmp_path):
    _, ckpt = setup
    with pytest.raises(MosaicError, match="is a folder"):
        api.trace(ckpt, tmp_path, progress=False)
    with pytest.raises(MosaicError, match="--config"):
        api.train()
    with pytest.raises(MosaicError, match="format"):
        api.report(tmp_path / "missing.h5", tmp_path / "r.txt", format="pdf")


def test_api_report_runs_without_torch(tmp_path):
    """``mosaic.api`` imports nothing heavy; reporting a trace never loads torch."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "from mosaic import api\n"
        "import analysis\n"
        f"analysis.simulate({str(tmp_path / 't.h5')!r}, n_ids=20, groups=3, n_subsets=8, seed=0)\n"
        f"result = api.report({str(tmp_path / 't.h5')!r}, {str(tmp_path)!r}, 'md', n_bootstrap=100, n_permutations=100,\n"
        "                    images=False)\n"
        "assert result.path.name == 'report.md' and result.path.is_file()\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("command, calls", [
    ("train", {"api.train"}), ("trace", {"api.trace"}), ("report", {"api.report"}), ("demo", {"api.demo"}),
    ("study", {"api.study"}), ("synth", {"api.synth"}), ("data", {"api.check_data", "api.get_attributes"}),
    ("inspect", {"api.inspect", "api.check_trace"}), ("configs", {"api.configs", "api.copy_config"}),
])
def test_commands_parse_call_the_api_and_print(command, calls):
    """The work lives in mosaic.api: a command module imports no orchestration of its own."""
    import ast
    import inspect

    import importlib

    module = importlib.import_module(f"mosaic.app.commands.{command}")
    tree = ast.parse(inspect.getsource(module))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    orchestration = {"mosaic.app.cli", "mosaic.app.pipeline", "mosaic.train.loop", "mosaic.train.launch",
                     "mosaic.app.demo", "mosaic.app.demo_stages", "mosaic.app.demo_study",
                     "mosaic.app.reporting", "mosaic.app.inspection", "mosaic.tracefile", "mosaic.data",
                     "mosaic.data.download", "mosaic.synth"}
    assert not imported & orchestration, imported & orchestration
    made = {f"{node.func.value.id}.{node.func.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)}
    assert calls <= made, calls - made


def test_report_takes_a_trace_or_results_under_analyzes_names(tmp_path):
    import analysis

    trace = analysis.read_trace(analysis.simulate(tmp_path / "t.h5", n_ids=16, groups=3, n_subsets=6, seed=0).path)
    from_trace = api.report(trace, tmp_path / "from_trace.json", n_bootstrap=100, n_permutations=100, seed=3)
    assert from_trace.results.settings["n_bootstrap"] == 100 and from_trace.results.settings["seed"] == 3
    from_results = api.report(from_trace.results, tmp_path / "from_results.json")  # on the trace they record
    assert from_results.results is from_trace.results  # reported as they are, not analysed again
    written = [json.loads(r.path.read_text(encoding="utf-8")) for r in (from_trace, from_results)]
    assert written[0]["analysis"] == written[1]["analysis"]
    assert "--bootstrap 100" in written[1]["metadata"]["command"]  # the command that reproduces it
    display = repr(from_results)
    assert "from_results.json" in display and "KB" in display and len(display) < 5000


@pytest.mark.parametrize("call, message", [
    (lambda t, r, out: api.report(t, out, n_bootstrap=10), "n_bootstrap must be at least 100, got 10"),
    (lambda t, r, out: api.report(t, out, alpha=1.5), "alpha must lie strictly between 0 and 1, got 1.5"),
    (lambda t, r, out: api.report(t, out, seed="one"), "seed must be an integer, got 'one'"),
    (lambda t, r, out: api.report(t, out, images="no"), "images must be True or False, got 'no'"),
    (lambda t, r, out: api.report(3, out), "needs a trace path, an analysis.Trace or analysis.Results, got int"),
    (lambda t, r, out: api.report(out.parent / "missing.h5", out), "missing.h5 does not exist"),
    (lambda t, r, out: api.report(r, out, seed=1), "seed= cannot change analysis.Results"),
    (lambda t, r, out: api.report(t, out, trace=t), "trace= goes with analysis.Results"),
    (lambda t, r, out: api.report(t, out.parent / "no" / "r.html"), "no"),
    (lambda t, r, out: api.report(t, out, format="pdf"), "pdf"),
])
def test_report_refuses_bad_arguments_in_one_line_before_any_work(tmp_path, call, message):
    import analysis

    trace = analysis.simulate(n_ids=8, groups=2, n_subsets=4, seed=0)  # in memory
    results = analysis.Results(trace_info={"path": str(tmp_path / "gone.h5")})
    out = tmp_path / "r.html"
    with pytest.raises(MosaicError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")) as error:
        call(trace, results, out)
    assert "\n" not in str(error.value)
    assert not out.exists()


def test_a_trace_built_in_memory_needs_an_out_and_results_need_their_trace(tmp_path):
    import analysis

    trace = analysis.simulate(n_ids=8, groups=2, n_subsets=4, seed=0)
    with pytest.raises(MosaicError, match="out= is required for a trace built in memory"):
        api.report(trace)
    results = analysis.analyze(trace, n_bootstrap=100, n_permutations=100, methods="paired")
    with pytest.raises(MosaicError, match="pass it as report\\(results, out, trace=trace\\)"):
        api.report(results, tmp_path / "r.md")
    other = analysis.simulate(n_ids=10, groups=2, n_subsets=4, seed=1)
    with pytest.raises(MosaicError, match="pass the trace they were computed from"):
        api.report(results, tmp_path / "r.md", trace=other)
    assert api.report(results, tmp_path / "r.md", trace=trace, images=False).path.is_file()
