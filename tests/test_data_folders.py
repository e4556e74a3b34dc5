"""Market-1501 and DukeMTMC-reID folder layouts: tiny trees built in tmp_path with blank JPEGs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mosaic.data import load_dataset, read_attribute_file
from mosaic.data.dataset import BASE_COLUMNS
from mosaic.core.errors import MosaicError
from mosaic.core.schema import MISSING


def _blank_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 16), (128, 128, 128)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = _blank_jpeg()

MARKET_FILES = {
    "bounding_box_train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c3s1_000551_01.jpg",
        "0007_c2s1_000101_01.jpg",
        "0007_c2s1_000126_02.jpg",
        "0010_c6s1_000201_01.jpg",
    ],
    "query": ["0001_c1s1_001051_00.jpg", "0003_c2s1_000301_00.jpg"],
    "bounding_box_test": [
        "0001_c2s1_000301_01.jpg",
        "0001_c5s1_000401_02.jpg",
        "0003_c1s1_000301_01.jpg",
        "0003_c2s1_000311_01.jpg",
        "-1_c1s1_000401_03.jpg",  # junk
        "-1_c3s1_000501_03.jpg",  # junk
        "0000_c1s1_000151_01.jpg",  # distractor
        "0000_c4s2_000151_01.jpg",  # distractor
    ],
}

DUKE_FILES = {
    "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg", "0370_c1_f0100001.jpg", "0008_c1_f0000123.jpg"],
    "query": ["0080_c1_f0044052.jpg", "0002_c1_f0044052.jpg"],
    "bounding_box_test": ["0080_c2_f0044059.jpg", "0002_c2_f0044059.jpg", "0002_c1_f0044100.jpg", "0003_c8_f0000001.jpg"],
}


def make_tree(root: Path, files: dict[str, list[str]], extras: tuple[str, ...] = ()) -> Path:
    """Folders of blank JPEGs named as given, plus non-image clutter files."""
    for folder, names in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / name).write_bytes(JPEG)
    for extra in extras:
        (root / extra).write_bytes(b"\0" * 16)
    return root


@pytest.fixture
def market_tree(tmp_path):
    return make_tree(
        tmp_path / "Market-1501-v15.09.15",
        MARKET_FILES,
        extras=("bounding_box_train/Thumbs.db", "query/.DS_Store", "bounding_box_test/readme.txt"),
    )


@pytest.fixture
def duke_tree(tmp_path):
    return make_tree(tmp_path / "DukeMTMC-reID", DUKE_FILES)


def codes(findings, code):
    return [f for f in findings if f.code == code]


# ------------------------------------------------------------------------------ Market
def test_market_tree_counts_and_contract(market_tree, synthetic_market_attribute_file):
    ds = load_dataset(market_tree, attributes=synthetic_market_attribute_file)
    assert ds.format == "market1501" and ds.schema.name == "market1501" and ds.name == "Market-1501-v15.09.15"
    images = ds.images
    assert list(images.columns) == [*BASE_COLUMNS, *ds.schema.group_names]
    assert images["pid"].dtype == np.int64 and images["camid"].dtype == np.int64
    assert all(images[g].dtype == np.int16 for g in ds.schema.group_names)
    assert images["split"].tolist() == ["train"] * 5 + ["query"] * 2 + ["gallery"] * 6
    assert [len(ds.split(s)) for s in ("train", "query", "gallery")] == [5, 2, 6]
    assert [ds.num_ids(s) for s in ("train", "query", "gallery")] == [3, 2, 2]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in images["path"])
    for split in ("train", "query", "gallery"):  # sorted by file name within a split
        names = [Path(p).name for p in ds.split(split)["path"]]
        assert names == sorted(names)
    gallery = ds.split("gallery")
    assert -1 not in images["pid"].tolist()
    assert gallery["pid"].tolist().count(0) == 2
    assert gallery["camid"].tolist() == [1, 4, 2, 5, 1, 2]
    (junk,) = codes(ds.findings, "junk-dropped")
    assert junk.count == 2
    (distractors,) = codes(ds.findings, "distractors")
    assert distractors.count == 2


def test_market_tree_states_come_from_the_right_struct(market_tree, synthetic_market_attribute_file):
    ds = load_dataset(market_tree, attributes=synthetic_market_attribute_file)
    table = read_attribute_file(synthetic_market_attribute_file)
    groups = list(ds.schema.group_names)
    train = ds.split("train")
    assert np.array_equal(train.loc[train["pid"] == 2, groups].iloc[0].to_numpy(), table.states["train"].loc[2].to_numpy())
    query = ds.split("query")
    assert np.array_equal(query.loc[query["pid"] == 3, groups].iloc[0].to_numpy(), table.states["test"].loc[3].to_numpy())
    gallery = ds.split("gallery")
    assert (gallery.loc[gallery["pid"] == 0, groups] == MISSING).all().all()
    assert (gallery.loc[gallery["pid"] != 0, groups] != MISSING).all().all()
    assert ds.states("query").shape == (2, 12) and ds.states("query").dtype == np.int16


def test_loading_is_deterministic(market_tree, synthetic_market_attribute_file):
    a = load_dataset(market_tree, attributes=synthetic_market_attribute_file)
    b = load_dataset(market_tree, attributes=synthetic_market_attribute_file)
    assert a.images.equals(b.images)


def test_format_and_attribute_file_are_found(market_tree, synthetic_market_attribute_file):
    (market_tree / "market_attribute.mat").symlink_to(synthetic_market_attribute_file)
    ds = load_dataset(market_tree)
    assert ds.format == "market1501" and ds.attribute_file.name == "market_attribute.mat"


def test_attribute_file_in_the_parent_folder(market_tree, synthetic_market_attribute_file):
    (market_tree.parent / "market_attribute.mat").symlink_to(synthetic_market_attribute_file)
    assert len(load_dataset(market_tree).images) == 13


def test_no_attribute_file_says_to_pass_one(market_tree):
    with pytest.raises(MosaicError, match=r"no market_attribute\.mat in .*, its parent or .*: run `mosaic data get-attributes` or pass --attributes"):
        load_dataset(market_tree)


# -------------------------------------------------------------------------------- Duke
def test_duke_tree(duke_tree, duke_attribute_file):
    ds = load_dataset(duke_tree, attributes=duke_attribute_file)
    assert ds.format == "dukemtmc" and ds.schema.name == "dukemtmc"
    assert [len(ds.split(s)) for s in ("train", "query", "gallery")] == [4, 2, 4]
    assert [ds.num_ids(s) for s in ("train", "query", "gallery")] == [3, 2, 3]
    assert not codes(ds.findings, "junk-dropped") and not codes(ds.findings, "distractors")
    assert sorted(ds.images["camid"].unique().tolist()) == [1, 2, 5, 8]
    train = ds.split("train")
    assert (train.loc[train["pid"] == 370, "top"] == MISSING).all()  # raw 0 in the file
    assert (train.loc[train["pid"] != 370, "top"] != MISSING).all()
    down = ds.schema.group("downcolour")
    query = ds.split("query")
    assert down.states[query.loc[query["pid"] == 80, "downcolour"].item()] == "black"  # black + white marked


# --------------------------------------------------------------------------- bad input
def test_missing_folder_names_the_layout(tmp_path, synthetic_market_attribute_file):
    make_tree(tmp_path / "m", {k: v for k, v in MARKET_FILES.items() if k != "query"})
    with pytest.raises(MosaicError, match=r"no query/ in .*Market-1501 layout.*0002_c1s1_000451_03\.jpg") as info:
        load_dataset(tmp_path / "m", format="market1501", attributes=synthetic_market_attribute_file)
    assert "\n" not in str(info.value)


def test_root_one_level_too_high_gets_a_hint(market_tree, synthetic_market_attribute_file):
    with pytest.raises(MosaicError, match=r"did you mean .*Market-1501-v15\.09\.15"):
        load_dataset(market_tree.parent, format="market1501", attributes=synthetic_market_attribute_file)


def test_absent_root(tmp_path):
    with pytest.raises(MosaicError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(MosaicError, match="does not exist"):
        load_dataset(tmp_path / "nowhere", format="dukemtmc")


def test_unrecognised_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(MosaicError, match="cannot tell the dataset format.*Pass --format"):
        load_dataset(tmp_path / "photos")


def test_foreign_file_names_name_an_example(tmp_path, synthetic_market_attribute_file):
    files = {k: list(v) for k, v in MARKET_FILES.items()}
    files["query"].append("IMG_2041.jpg")
    make_tree(tmp_path / "m", files)
    with pytest.raises(MosaicError, match=r"query/IMG_2041\.jpg is not a Market-1501 file name.*1 of 3 files differ"):
        load_dataset(tmp_path / "m", attributes=synthetic_market_attribute_file)


def test_duke_names_read_as_market(duke_tree, synthetic_market_attribute_file):
    with pytest.raises(MosaicError, match=r"0001_c2_f0046182\.jpg is not a Market-1501 file name"):
        load_dataset(duke_tree, format="market1501", attributes=synthetic_market_attribute_file)


def test_empty_split_folder(tmp_path, synthetic_market_attribute_file):
    make_tree(tmp_path / "m", {**MARKET_FILES, "query": []}, extras=("query/Thumbs.db",))
    with pytest.raises(MosaicError, match="query holds no images"):
        load_dataset(tmp_path / "m", format="market1501", attributes=synthetic_market_attribute_file)


def test_other_datasets_attribute_file(market_tree, duke_attribute_file):
    with pytest.raises(MosaicError, match=r"holds dukemtmc annotations .*images are market1501: pass market_attribute\.mat"):
        load_dataset(market_tree, attributes=duke_attribute_file)


def test_not_a_matlab_file(market_tree):
    fake = market_tree / "market_attribute.mat"
    fake.write_text("this is not MATLAB\n" * 10)
    with pytest.raises(MosaicError, match="not a readable MATLAB .mat file"):
        load_dataset(market_tree)


def test_identities_without_attributes(tmp_path, synthetic_market_attribute_file):
    files = {k: list(v) for k, v in MARKET_FILES.items()}
    files["bounding_box_train"] += ["0001_c1s1_000001_01.jpg", "0001_c2s1_000001_01.jpg"]  # 0001 is a test identity
    files["query"] += ["1600_c1s1_000001_00.jpg"]  # in neither struct
    root = make_tree(tmp_path / "m", files)
    with pytest.raises(MosaicError, match=r"2 identities \(3 images; 1 train, 1 query\) have no entry in market_attribute\.mat \(e\.g\. 0001 \(train\), 1600 \(query\)\)") as info:
        load_dataset(root, attributes=synthetic_market_attribute_file)
    assert "\n" not in str(info.value)

    ds = load_dataset(root, attributes=synthetic_market_attribute_file, allow_missing_attributes=True)
    (finding,) = codes(ds.findings, "ids-without-attributes")
    assert finding.severity == "error" and finding.count == 2
    unannotated = ds.images[ds.images["pid"].isin([1600]) | ((ds.images["pid"] == 1) & (ds.images["split"] == "train"))]
    assert len(unannotated) == 3 and (unannotated[list(ds.schema.group_names)] == MISSING).all().all()
    assert ds.errors == [finding]


def test_distractor_outside_the_gallery(tmp_path, synthetic_market_attribute_file):
    files = {k: list(v) for k, v in MARKET_FILES.items()}
    files["query"].append("0000_c1s1_000001_00.jpg")
    with pytest.raises(MosaicError, match="pid 0, which marks a gallery distractor"):
        load_dataset(make_tree(tmp_path / "m", files), attributes=synthetic_market_attribute_file)


# ---------------------------------------------------------------------- synthetic world
def test_synthetic_world_loads_with_no_arguments(tiny_world):
    import json

    from mosaic.data import DataReport
    from mosaic.synth import GROUP_STATES

    ds = load_dataset(tiny_world)
    sidecar = json.loads((tiny_world / "world.json").read_text())
    assert ds.format == "market1501" and ds.schema.name == "market1501"
    assert {g.name: g.states for g in ds.schema.groups} == GROUP_STATES  # one schema for world and dataset
    counts = sidecar["images"]
    assert len(ds.split("train")) == counts["train"] and len(ds.split("query")) == counts["query"]
    assert len(ds.split("gallery")) == counts["gallery"] + counts["distractor"]
    assert ds.num_ids("train") == sidecar["resolved"]["n_train_ids"]
    assert ds.num_ids("query") == sidecar["resolved"]["n_test_ids"]
    assert {f.code: f.count for f in ds.findings}.get("junk-dropped", 0) == counts["junk"]
    identity = ds.images[ds.images["pid"] > 0]
    assert (identity[list(ds.schema.group_names)] >= 0).all().all()  # every identity fully annotated
    assert not DataReport.from_dataset(ds).errors
