"""analysis.read_trace and the pandas views of a trace."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis import Trace, read_trace
from mosaic.core.errors import MosaicError
from mosaic.core.fileio import sha256_file
from mosaic.tracefile import write_trace
from test_traceio import SCHEMA, make_trace


@pytest.fixture(scope="module")
def data():
    return make_trace(seed=4)


@pytest.fixture(scope="module")
def trace(data, tmp_path_factory):
    path = write_trace(data, tmp_path_factory.mktemp("tr") / "trace.h5")
    return read_trace(path)


def test_read_trace_description(trace, data):
    assert trace.schema == SCHEMA
    from mosaic.tracefile import SCHEMA_VERSION

    assert trace.schema_version == SCHEMA_VERSION and trace.checksums == "crc32"
    assert trace.sha256 == sha256_file(trace.path)
    assert trace.provenance["seed"] == 3
    assert f"{data.n_conditions} conditions × {data.n_queries} queries" in repr(trace)
    memory = Trace(data)
    assert memory.path is None and memory.sha256 is None


def test_queries_long_table(trace, data):
    q = trace.queries
    C, Q = data.n_conditions, data.n_queries
    assert len(q) == C * Q
    assert list(q.columns[:11]) == [
        "condition", "kind", "condition_group", "query", "pid", "camid", "valid",
        "ap", "inp", "rank1", "first_match_rank",
    ]
    assert list(q.columns[11:]) == list(SCHEMA.group_names)
    row = q[(q["condition"] == "drop:hat") & (q["query"] == 3)].iloc[0]
    c = list(data.condition_name).index("drop:hat")
    assert row["kind"] == "drop" and row["condition_group"] == "hat"
    assert row["pid"] == data.query_pid[3]
    np.testing.assert_equal(row["ap"], np.float64(data.ap[c, 3]))
    assert row["first_match_rank"] == data.first_match_rank[c, 3]
    up = q["upcolour"]
    assert isinstance(up.dtype, pd.CategoricalDtype)
    assert list(up.cat.categories) == ["black", "white", "red", "other"]
    codes = np.tile(data.query_states[:, 1], C)
    assert up.isna().to_numpy().tolist() == (codes == -1).tolist()
    labels = np.array(["black", "white", "red", "other"], dtype=object)
    assert up[codes >= 0].astype(str).tolist() == labels[codes[codes >= 0]].tolist()
    # every condition sees the same query order
    assert (q.groupby("condition", sort=False)["pid"].apply(list).map(tuple).nunique()) == 1


def test_conditions_table(trace, data):
    c = trace.conditions
    assert list(c["condition"]) == list(data.condition_name)
    assert list(c.columns[:12]) == [
        "condition", "kind", "group", "router", "n_enabled", "mAP", "mINP",
        "rank1", "rank5", "rank10", "rank20", "n_valid",
    ]
    assert [col for col in c.columns if col.startswith("enabled:")] == [f"enabled:{g}" for g in SCHEMA.group_names]
    np.testing.assert_array_equal(c["rank5"], data.cmc[:, 4])
    assert c["rank20"].isna().all()  # the toy trace stops at rank 10
    assert (c["n_valid"] == data.valid.sum()).all()
    none = c.set_index("condition").loc["none"]
    assert none["n_enabled"] == 0 and none["router"] == "none"
    assert not c.set_index("condition").loc["drop:hat", "enabled:hat"]


def test_attributes_table(trace):
    a = trace.attributes
    assert len(a) == SCHEMA.n_experts
    assert a["label"].tolist() == list(SCHEMA.expert_labels)
    assert a.loc[a["group"] == "gender", "coarse_family"].unique().tolist() == ["intrinsic"]
    assert a.loc[a["group"] == "hat", "coarse_family"].unique().tolist() == ["extrinsic"]
    assert a.loc[a["label"] == "upcolour=red", "code"].item() == 2


def test_image_tables(trace, data):
    qt, gt = trace.query_table, trace.gallery_table
    assert qt["path"].tolist() == data.query_path.tolist()
    assert qt["valid"].tolist() == data.valid.tolist()
    assert gt["pid"].tolist() == data.gallery_pid.tolist()
    assert "valid" not in gt.columns
    assert gt["path"].iloc[0].endswith("_é.jpg")


def test_paired(trace, data):
    p = trace.paired("drop:upcolour")  # against oracle by default
    b = list(data.condition_name).index("drop:upcolour")
    assert len(p) == data.n_queries
    np.testing.assert_allclose(p["ap_b"], data.ap[b])
    np.testing.assert_allclose(p["d_ap"], data.ap[b].astype(float) - data.ap[0].astype(float))
    assert p.attrs == {"condition_a": "oracle", "condition_b": "drop:upcolour"}
    against_none = trace.paired("drop:upcolour", baseline="none")
    np.testing.assert_allclose(against_none["d_ap"], data.ap[b].astype(float) - data.ap[1].astype(float))
    with pytest.raises(MosaicError, match="no condition 'drop:nope'"):
        trace.paired("drop:nope")


def test_gates_mean_and_cmc(trace, data):
    g = trace.gates_mean()
    assert len(g) == data.n_conditions * data.n_layers * SCHEMA.n_experts
    row = g[(g["condition"] == "none") & (g["layer"] == 3) & (g["label"] == "hat=yes")].iloc[0]
    np.testing.assert_allclose(row["mean_gate"], data.gates[1, :, 1, SCHEMA.n_experts - 1].mean(), rtol=1e-6)
    valid_only = trace.gates_mean(valid_only=True)
    np.testing.assert_allclose(
        valid_only["mean_gate"].iloc[0], data.gates[0, data.valid, 0, 0].mean(), rtol=1e-6
    )
    cmc = trace.cmc_table()
    assert len(cmc) == data.n_conditions * data.max_rank
    assert cmc[cmc["condition"] == "oracle"]["rank"].tolist() == list(range(1, data.max_rank + 1))


def test_topk_table(trace, data):
    t = trace.topk_table("oracle")
    assert len(t) == data.n_queries * data.top_k
    first = t.iloc[0]
    assert first["gallery"] == data.topk_index[0, 0, 0]
    assert first["match"] == (data.gallery_pid[first["gallery"]] == data.query_pid[0])


def test_condition_names(trace):
    assert trace.condition_names("drop") == [f"drop:{g}" for g in SCHEMA.group_names]
    assert trace.condition_names(["oracle", "none"]) == ["oracle", "none"]
    assert len(trace.condition_names()) == trace.data.n_conditions


def test_analysis_reads_without_torch(trace):
    code = (
        "import sys, analysis; t = analysis.read_trace(sys.argv[1]); t.queries; t.conditions; t.gates_mean(); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(trace.path)], check=True, timeout=60)
