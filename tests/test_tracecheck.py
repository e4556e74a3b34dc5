"""Value rules checked on read: each corruption of a trace file is refused with its own one-line
message (exit code 2), and `mosaic inspect --check` lists every violation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from analysis import read_trace, simulate
from mosaic.app.cli import main
from mosaic.core.errors import MosaicError
from mosaic.tracefile import TraceData, write_trace
from mosaic.tracefile import check_trace_file
from mosaic.tracefile.check import VALUE_RULES, check_trace_values, find_violations
from test_traceio import make_trace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base_data() -> TraceData:
    data = make_trace(n_query=12, n_gallery=25, seed=5)
    assert data.valid.any() and not data.valid.all()  # both kinds of query, for the NaN rule
    return data


@pytest.fixture(scope="module")
def clean_file(base_data, tmp_path_factory) -> Path:
    return write_trace(base_data, tmp_path_factory.mktemp("clean") / "trace.h5")


def _first_valid(h5) -> int:
    return int(np.flatnonzero(h5["query_images/valid"][()])[0])


def _first_invalid(h5) -> int:
    return int(np.flatnonzero(~h5["query_images/valid"][()])[0])


def _set(path: str, index, value):
    def corrupt(h5):
        values = h5[path][()]
        values[index(h5) if callable(index) else index] = value
        h5[path][...] = values

    return corrupt


def _detach_query_scale(h5):
    h5["retrieval/ap"].dims[1].detach_scale(h5["query"])


# (id, corruption, rule, array named in the message)
CORRUPTIONS = [
    ("negative-query-ids", _set("query_images/pid", slice(None), -4), "query-identity", "query_images/pid[0]"),
    ("junk-in-gallery", _set("gallery_images/pid", 6, -1), "gallery-identity", "gallery_images/pid[6]"),
    ("negative-camera", _set("gallery_images/camid", 3, -2), "camera-range", "gallery_images/camid[3]"),
    ("state-out-of-range", _set("query_images/states", (2, 1), 4), "state-codes", "query_images/states[2, 1]"),
    ("validity-flipped", _set("query_images/valid", _first_invalid, True), "valid-queries", "query_images/valid["),
    ("ap-above-one", _set("retrieval/ap", lambda h5: (1, _first_valid(h5)), 7.0), "unit-interval", "retrieval/ap[1, "),
    ("inp-nan-on-valid", _set("retrieval/inp", lambda h5: (0, _first_valid(h5)), np.nan), "unit-interval",
     "retrieval/inp[0, "),
    ("ap-on-invalid", _set("retrieval/ap", lambda h5: (2, _first_invalid(h5)), 0.5), "nan-where-invalid",
     "retrieval/ap[2, "),
    ("rank-zero", _set("retrieval/first_match_rank", lambda h5: (0, _first_valid(h5)), 0), "first-match-rank",
     "retrieval/first_match_rank[0, "),
    ("rank1-flipped", _set("retrieval/rank1", lambda h5: (3, _first_invalid(h5)), True), "rank1-agrees",
     "retrieval/rank1[3, "),
    ("map-edited", _set("conditions/mAP", 1, 0.99), "map-agrees", "conditions/mAP[1]"),
    ("minp-edited", _set("conditions/mINP", 0, 0.01), "minp-agrees", "conditions/mINP[0]"),
    ("cmc-edited", _set("conditions/cmc", (2, 4), 0.0), "cmc-agrees", "conditions/cmc[2, 4]"),
    ("gate-above-one", _set("routing/gates", (1, 2, 0, 3), 1.5), "gates-unit-interval", "routing/gates[1, 2, 0, 3]"),
    ("neighbour-outside-gallery", _set("retrieval/topk_index", (0, 1, 2), 99), "topk-neighbours",
     "retrieval/topk_index[0, 1, 2]"),
    ("rank-scale-renumbered", _set("rank", 0, 0), "dimension-scales", "rank[0]"),
    ("scale-detached", _detach_query_scale, "dimension-scales", "retrieval/ap:"),
]


@pytest.fixture(params=CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def corrupted(request, clean_file, tmp_path):
    _, corrupt, rule_name, array = request.param
    path = tmp_path / "trace.h5"
    shutil.copyfile(clean_file, path)
    with h5py.File(path, "r+") as h5:
        corrupt(h5)
        restamp_checksums(h5)
    return path, rule_name, array


def restamp_checksums(h5) -> None:
    """Checksums that match the edited values: the file a faulty writer would make, which only the
    value rules can refuse (a change after writing is caught by the checksums, test_trace_checksums)."""
    from mosaic.tracefile.checksums import stamp

    h5.visititems(lambda name, obj: stamp(obj, obj[()]) if isinstance(obj, h5py.Dataset) else None)


def test_clean_trace_passes_every_rule(clean_file, capsys):
    assert check_trace_file(clean_file) == []
    assert main(["inspect", str(clean_file), "--check"]) == 0
    assert "every value rule holds" in capsys.readouterr().out


def test_reading_refuses_the_corruption_in_one_line(corrupted, capsys):
    path, rule_name, array = corrupted
    code = main(["report", str(path), "--quiet", "--format", "json", "--out", str(path.with_suffix(".json"))])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(f"error: trace {path} is corrupt: {array}") and err.count("\n") == 1, err
    assert f"rule '{rule_name}'" in err and "re-run `mosaic trace`" in err
    assert "Traceback" not in err and not path.with_suffix(".json").exists()
    with pytest.raises(MosaicError, match=f"rule '{rule_name}'"):
        read_trace(path)


def test_inspect_check_lists_the_violation(corrupted, capsys):
    path, rule_name, array = corrupted
    assert main(["inspect", str(path), "--check"]) == 2
    out, err = capsys.readouterr()
    assert any(line.startswith(array) and f"rule '{rule_name}'" in line for line in out.splitlines()), out
    assert err.startswith(f"error: {path} breaks") and rule_name in err and err.count("\n") == 1


def test_each_corruption_has_its_own_message(clean_file, tmp_path):
    messages = set()
    for name, corrupt, _, _ in CORRUPTIONS:
        path = tmp_path / f"{name}.h5"
        shutil.copyfile(clean_file, path)
        with h5py.File(path, "r+") as h5:
            corrupt(h5)
            restamp_checksums(h5)
        with pytest.raises(MosaicError) as info:
            read_trace(path)
        messages.add(str(info.value).replace(str(path), "TRACE"))
    assert len(messages) == len(CORRUPTIONS)


def test_check_lists_every_violation_not_only_the_first(clean_file, tmp_path, capsys):
    path = tmp_path / "trace.h5"
    shutil.copyfile(clean_file, path)
    with h5py.File(path, "r+") as h5:
        for _, corrupt, _, _ in CORRUPTIONS[:4] + CORRUPTIONS[13:14]:
            corrupt(h5)
        restamp_checksums(h5)
    names = [v.rule.name for v in check_trace_file(path)]
    assert names == ["query-identity", "gallery-identity", "camera-range", "state-codes", "valid-queries",
                     "gates-unit-interval"]  # negative query ids also leave those queries without a match
    assert main(["inspect", str(path), "--check", "--json"]) == 2
    assert '"rule": "gates-unit-interval"' in capsys.readouterr().out


def test_wrong_shapes_are_listed_and_value_rules_on_them_skipped(base_data):
    data = replace(base_data, ap=base_data.ap[:, :-1])
    violations = find_violations(data)
    assert [v.rule.name for v in violations] == ["shapes"]
    assert str(violations[0]).startswith("retrieval/ap: rule 'shapes'")


def test_fractional_gates_and_unregistered_labels_are_not_value_rules(base_data):
    soft = replace(base_data, gates=np.full_like(base_data.gates, 0.37))
    assert check_trace_values(soft) is soft
    # no rule reads the kind or router of a condition: those are registries, checked by validate()
    assert not any({"condition_kind", "condition_router"} & set(r.arrays) for r in VALUE_RULES.values())


def test_rules_are_data():
    names = {f.name for f in fields(TraceData)}
    from mosaic.tracefile import COORDINATES

    coordinates = set(COORDINATES)  # the axes of the layout, "pair" (schema 1.2) included
    for name, value_rule in VALUE_RULES.items():
        assert value_rule.name == name and value_rule.description
        assert set(value_rule.arrays) <= names | coordinates, name
    assert len(VALUE_RULES) >= 12


def test_simulated_traces_pass(tmp_path):
    data = simulate(n_ids=20, groups=3, n_subsets=4, seed=1).data
    assert find_violations(data) == []
    path = write_trace(data, tmp_path / "sim.h5")
    assert check_trace_file(path) == []


def test_reading_with_checks_does_not_import_torch(clean_file):
    code = (
        "import sys, analysis\n"
        f"analysis.read_trace({str(clean_file)!r})\n"
        "from mosaic.tracefile import check_trace_file\n"
        f"assert check_trace_file({str(clean_file)!r}) == []\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
