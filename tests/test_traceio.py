"""The HDF5 trace format: round trip, self-description, refusals, atomic writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import warnings
from dataclasses import fields, replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.errors import MosaicError
from mosaic.core.schema import AttributeSchema
from mosaic.tracefile import ARRAYS, SCHEMA_VERSION, TraceData, read_trace_attrs, read_trace_data, write_trace

SCHEMA = AttributeSchema.from_dict(
    {
        "name": "toy",
        "groups": [
            {"name": "gender", "family": "intrinsic", "states": ["male", "female"]},
            {"name": "upcolour", "family": "extrinsic-colour", "states": ["black", "white", "red", "other"]},
            {"name": "hat", "family": "extrinsic-accessory", "states": ["no", "yes"]},
        ],
    }
)


def make_trace(
    *, n_query: int = 7, n_gallery: int = 19, top_k: int = 5, max_rank: int = 10, seed: int = 0, schema=SCHEMA
) -> TraceData:
    """A small, internally consistent TraceData with random contents (unicode paths included)."""
    rng = np.random.default_rng(seed)
    G, E = len(schema.groups), schema.n_experts
    names = ["oracle", "none"] + [f"drop:{g}" for g in schema.group_names] + ["subset:0"]
    kinds = ["oracle", "none"] + ["drop"] * G + ["subset"]
    groups = ["", ""] + list(schema.group_names) + [""]
    C = len(names)
    enabled = np.ones((C, G), bool)
    enabled[1] = False
    for i in range(G):
        enabled[2 + i, i] = False
    enabled[-1] = rng.random(G) < 0.5

    def states(n):
        out = np.stack([rng.integers(-1, len(g.states), n) for g in schema.groups], axis=1)
        return out.astype(np.int16)

    query_pid, query_camid = rng.integers(1, 7, n_query), rng.integers(1, 7, n_query)  # 5, 6: not in the gallery
    gallery_pid, gallery_camid = rng.integers(0, 5, n_gallery), rng.integers(1, 7, n_gallery)
    # valid exactly when the gallery holds the identity in another camera, as the value rules demand
    valid = ((query_pid[:, None] == gallery_pid[None, :]) & (query_camid[:, None] != gallery_camid[None, :])).any(axis=1)
    ap = rng.random((C, n_query)).astype(np.float32)
    ap[:, ~valid] = np.nan
    fmr = rng.integers(1, 6, (C, n_query)).astype(np.int32)
    fmr[:, ~valid] = -1
    gates = rng.random((C, n_query, 2, E)).astype(np.float32)
    return TraceData(
        schema=schema,
        query_pid=query_pid,
        query_camid=query_camid,
        query_path=np.array([f"query/{i:04d}_ü_人.jpg" for i in range(n_query)]),
        query_states=states(n_query),
        gallery_pid=gallery_pid,
        gallery_camid=gallery_camid,
        gallery_path=np.array([f"bounding_box_test/{i:04d}_é.jpg" for i in range(n_gallery)]),
        gallery_states=states(n_gallery),
        condition_name=np.array(names),
        condition_kind=np.array(kinds),
        condition_group=np.array(groups),
        enabled_groups=enabled,
        ap=ap,
        inp=(ap * 0.5).astype(np.float32),
        rank1=(fmr == 1),
        first_match_rank=fmr,
        valid=valid,
        topk_index=rng.integers(0, n_gallery, (C, n_query, top_k)).astype(np.int32),
        topk_distance=rng.random((C, n_query, top_k)).astype(np.float32),
        mAP=_nanmean_rows(ap),
        mINP=_nanmean_rows(ap * 0.5),
        cmc=_cmc(fmr, valid, max_rank),
        gates=gates,
        layers=np.array([2, 3], dtype=np.int32),
        provenance={"command": "mosaic trace --ckpt ü.pt", "seed": 3, "versions": {"numpy": np.__version__}},
        dataset={"name": "toy", "root": "/data/ünï"},
    )


def _cmc(first_match_rank: np.ndarray, valid: np.ndarray, max_rank: int) -> np.ndarray:
    ranks = first_match_rank[:, valid][:, :, None]
    return ((ranks >= 1) & (ranks <= np.arange(1, max_rank + 1))).sum(axis=1) / max(int(valid.sum()), 1)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (no valid query) stay NaN
        return np.nanmean(values, axis=1).astype(np.float64)


def assert_trace_equal(a: TraceData, b: TraceData) -> None:
    for f in fields(TraceData):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert np.shape(x) == np.shape(y), f.name
            if x.dtype.kind in "fc":
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f.name)
            else:
                assert np.asarray(x).tolist() == np.asarray(y).tolist(), f.name
        else:
            assert x == y, f.name


@pytest.fixture
def trace_file(tmp_path) -> tuple[TraceData, Path]:
    data = make_trace()
    return data, write_trace(data, tmp_path / "trace.h5")


def test_round_trip_every_field(trace_file):
    data, path = trace_file
    back = read_trace_data(path)
    assert_trace_equal(data, back)
    assert back.query_path[0] == "query/0000_ü_人.jpg"
    assert back.rank1.dtype == bool and back.valid.dtype == bool
    assert back.gates.dtype == np.float32 and back.query_states.dtype == np.int16


def test_round_trip_empty_axes(tmp_path):
    data = make_trace(n_query=0, top_k=0)
    back = read_trace_data(write_trace(data, tmp_path / "empty.h5"))
    assert back.n_queries == 0 and back.top_k == 0 and back.n_conditions == data.n_conditions


def test_self_description(trace_file):
    _, path = trace_file
    with h5py.File(path, "r") as h5:
        assert h5.attrs["encoding_type"] == "mosaic-trace"
        assert h5.attrs["schema_version"] == SCHEMA_VERSION
        assert json.loads(h5.attrs["provenance"])["seed"] == 3
        assert h5["provenance"].attrs["command"] == "mosaic trace --ckpt ü.pt"
        for name, obj in h5.items():
            if isinstance(obj, h5py.Group):
                assert "encoding_type" in obj.attrs and "encoding_version" in obj.attrs, name
        for spec in ARRAYS:
            ds = h5[spec.path]
            for key in ("long_name", "units", "description"):
                assert key in ds.attrs, (spec.path, key)
            # every axis is a named dimension scale
            assert tuple(h5py.h5ds.get_scale_name(ds.dims[i][0].id).decode() for i in range(ds.ndim)) == spec.dims
        assert h5["routing/gates"].compression == "gzip"
        assert list(h5["schema/expert_state"].asstr()[()]) == [s for _, s in SCHEMA.experts]
        assert h5["condition"].asstr()[0] == "oracle"


def test_xarray_open_datatree_named_dims(trace_file):
    xr = pytest.importorskip("xarray")
    data, path = trace_file
    tree = xr.open_datatree(path, engine="h5netcdf")
    try:
        ap = tree["retrieval"]["ap"]
        assert ap.dims == ("condition", "query")
        assert tree["routing"]["gates"].dims == ("condition", "query", "layer", "expert")
        assert list(tree["retrieval"].ds["condition"].values) == list(data.condition_name)
        assert list(tree.ds["expert"].values) == list(SCHEMA.expert_labels)
        assert list(tree.ds["layer"].values) == [2, 3]
        assert tree["query_images"]["path"].values[0] == "query/0000_ü_人.jpg"
        mAP = tree["retrieval"]["ap"].mean("query", skipna=True)
        np.testing.assert_allclose(mAP.values, data.mAP, rtol=1e-6)
        enabled = tree["conditions"]["enabled"]
        assert enabled.dtype == bool
        assert not bool(enabled.sel(condition="drop:hat", group="hat"))
        assert bool(enabled.sel(condition="drop:hat", group="gender"))
    finally:
        tree.close()


def test_refuses_newer_major(trace_file):
    _, path = trace_file
    with h5py.File(path, "r+") as h5:
        h5.attrs["schema_version"] = "2.1.0"
    with pytest.raises(MosaicError, match=r"trace schema 2\.x is newer than this mosaic \(reads 1\.x\): upgrade mosaic"):
        read_trace_data(path)


def test_accepts_newer_minor(trace_file):
    data, path = trace_file
    with h5py.File(path, "r+") as h5:
        h5.attrs["schema_version"] = "1.7.2"
    assert read_trace_data(path).n_conditions == data.n_conditions


def test_refuses_foreign_hdf5(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5["x"] = np.arange(3)
    with pytest.raises(MosaicError, match="not a mosaic trace"):
        read_trace_data(path)


def test_refuses_truncated_and_non_hdf5(trace_file, tmp_path):
    _, path = trace_file
    raw = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(MosaicError, match=r"cut\.h5"):
        read_trace_data(cut)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(MosaicError, match="not a readable HDF5 file"):
        read_trace_data(text)
    with pytest.raises(MosaicError, match="does not exist"):
        read_trace_data(tmp_path / "missing.h5")


def test_inconsistent_data_refused(tmp_path):
    data = make_trace()
    bad = replace(data, ap=data.ap[:, :-1])
    with pytest.raises(MosaicError, match="ap has shape"):
        write_trace(bad, tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output(tmp_path):
    with pytest.raises(MosaicError, match="does not exist"):
        write_trace(make_trace(), tmp_path / "no" / "such" / "trace.h5")


def test_interrupted_write_leaves_nothing(tmp_path):
    """A write killed half-way leaves neither the output nor a temporary file behind."""
    out = tmp_path / "trace.h5"
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import pathlib
        import mosaic.tracefile.write as tio
        from test_traceio import make_trace
        def slow(self, data):  # the file's bytes (built in memory) reach the disk half-way, then stall
            with open(self, "wb") as handle:
                handle.write(data[: len(data) // 2])
            print("writing", flush=True)
            time.sleep(30)
        pathlib.Path.write_bytes = slow
        tio.write_trace(make_trace(), {str(out)!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        assert partial, "the write should go to a temporary file first"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_overwrite_keeps_old_file_until_success(trace_file):
    data, path = trace_file
    before = path.read_bytes()
    with pytest.raises(MosaicError):
        write_trace(replace(data, mAP=data.mAP[:-1]), path)
    assert path.read_bytes() == before


def test_read_attrs_without_arrays(trace_file):
    data, path = trace_file
    attrs = read_trace_attrs(path)
    assert attrs["sizes"]["condition"] == data.n_conditions
    assert attrs["provenance"]["versions"]["numpy"] == np.__version__
    assert attrs["attribute_schema"]["name"] == "toy"


def test_router_defaults_from_kind():
    data = make_trace()
    assert list(data.condition_router[:2]) == ["oracle", "none"]


def test_format_document_lists_every_array():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "trace-format.md").read_text(encoding="utf-8")
    for spec in ARRAYS:
        group, name = spec.path.split("/")
        assert f"### `/{group}`" in doc, group
        assert f"| `{name}` | ({', '.join(spec.dims)}) | {spec.dtype} |" in doc, spec.path


@settings(max_examples=25, deadline=None)
@given(paths=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                              max_size=20), min_size=7, max_size=7))
def test_any_unicode_path_round_trips(tmp_path_factory, paths):
    data = replace(make_trace(), query_path=np.array(paths, dtype=object).astype(str))
    back = read_trace_data(write_trace(data, tmp_path_factory.mktemp("u") / "t.h5"))
    assert back.query_path.tolist() == paths


def test_undecodable_file_names_are_kept_readable(tmp_path):
    name = b"query/\xff\xfe_0001.jpg".decode("utf-8", "surrogateescape")
    data = make_trace()
    paths = data.query_path.astype(object)
    paths[0] = name
    back = read_trace_data(write_trace(replace(data, query_path=paths), tmp_path / "t.h5"))
    assert back.query_path[0] == "query/\\udcff\\udcfe_0001.jpg"
    with pytest.raises(MosaicError, match="NUL"):
        paths[0] = "a\x00b"
        write_trace(replace(data, query_path=paths), tmp_path / "n.h5")
