"""Custom datasets: manifest CSV + schema YAML, written and read back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from mosaic.data import load_dataset, read_manifest, write_manifest
from mosaic.core.errors import MosaicError
from mosaic.core.schema import MISSING, load_schema
from test_data_folders import JPEG, MARKET_FILES, make_tree

SCHEMA = {
    "name": "street",
    "groups": [
        {"name": "coat", "family": "extrinsic-shape", "states": ["none", "short", "long"]},
        {"name": "umbrella", "family": "extrinsic-accessory", "states": ["no", "yes"]},
    ],
}


def write_custom(root: Path, rows: list[str], schema=SCHEMA) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "img").mkdir(exist_ok=True)
    (root / "schema.yaml").write_text(yaml.safe_dump(schema))
    header = "path,pid,camid,split,coat,umbrella"
    (root / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")
    for row in rows:
        (root / row.split(",")[0]).write_bytes(JPEG)
    return root


GOOD_ROWS = [
    "img/b.jpg,1,2,query,short,",
    "img/a.jpg,1,1,train,short,yes",
    "img/c.jpg,1,3,gallery,short,no",
    "img/d.jpg,2,1,train,long,no",
    "img/e.jpg,0,2,gallery,long,",
    "img/f.jpg,-1,1,gallery,,",
]


def test_custom_manifest(tmp_path):
    root = write_custom(tmp_path / "street", GOOD_ROWS)
    ds = load_dataset(root)  # manifest.csv and schema.yaml found
    assert ds.format == "manifest" and ds.schema.name == "street"
    assert ds.images["split"].tolist() == ["train", "train", "query", "gallery", "gallery"]
    assert [Path(p).name for p in ds.images["path"]] == ["a.jpg", "d.jpg", "b.jpg", "c.jpg", "e.jpg"]
    assert ds.images["coat"].tolist() == [1, 2, 1, 1, MISSING]  # distractor cleared
    assert ds.images["umbrella"].tolist() == [1, 0, MISSING, 0, MISSING]
    assert ds.images["coat"].dtype == "int16" and ds.images["pid"].dtype == "int64"
    found = {f.code: f for f in ds.findings}
    assert found["junk-dropped"].count == 1
    assert "1 had states, cleared" in found["distractors"].message
    # a manifest file path works as well as its folder
    assert load_dataset(root / "manifest.csv").images.equals(ds.images)


def test_round_trip_from_a_market_tree(tmp_path, synthetic_market_attribute_file):
    tree = make_tree(tmp_path / "market", MARKET_FILES)
    original = load_dataset(tree, attributes=synthetic_market_attribute_file)
    out = write_manifest(original, tmp_path / "export")
    assert out == tmp_path / "export" / "manifest.csv" and (out.parent / "schema.yaml").is_file()
    again = load_dataset(out.parent)
    assert again.format == "manifest"
    assert again.schema == original.schema and again.schema.fingerprint() == original.schema.fingerprint()
    pd.testing.assert_frame_equal(again.images, original.images)
    text = out.read_text()
    assert "male" in text and ",-1," not in text  # state names, not codes; junk already dropped
    assert "'no'" in (out.parent / "schema.yaml").read_text()  # quoted so that YAML keeps it a string


def test_manifest_inside_the_dataset_uses_relative_paths(tmp_path, synthetic_market_attribute_file):
    tree = make_tree(tmp_path / "market", MARKET_FILES)
    ds = load_dataset(tree, attributes=synthetic_market_attribute_file)
    out = write_manifest(ds, tree / "attributes" / "manifest.csv")
    first = pd.read_csv(out, dtype=str, keep_default_na=False)["path"].iloc[0]
    assert first == ds.images["path"].iloc[0]  # outside the manifest's folder: kept absolute
    out = write_manifest(ds, tree / "manifest.csv", write_schema=False)
    assert pd.read_csv(out, dtype=str)["path"].iloc[0] == "bounding_box_train/0002_c1s1_000451_03.jpg"
    # the folder now fits two formats: say so rather than guess
    with pytest.raises(MosaicError, match="fits several dataset formats"):
        load_dataset(tree)
    again = read_manifest(tree, schema="market1501")
    pd.testing.assert_frame_equal(again.images, ds.images)


@pytest.mark.parametrize(
    "rows, message",
    [
        (["img/a.jpg,1,1,train,medium,"], r"line 2: 'medium' is not a state of group 'coat'"),
        (["img/a.jpg,1,1,training,long,"], r"line 2: split 'training' is not one of train, query, gallery"),
        (["img/a.jpg,one,1,train,long,"], r"line 2: pid 'one' is not an integer"),
        (["img/a.jpg,1,1.5,train,long,"], r"line 2: camid '1.5' is not an integer"),
        (["img/a.jpg,-3,1,train,long,"], r"pid -3 is negative"),
        (["img/a.jpg,1,1,train,long,", "img/a.jpg,1,2,query,long,"], r"lists .*a\.jpg more than once"),
        (["img/a.jpg,0,1,query,,"], r"pid 0, which marks a gallery distractor"),
    ],
)
def test_bad_manifest_rows(tmp_path, rows, message):
    root = write_custom(tmp_path / "street", rows)
    with pytest.raises(MosaicError, match=message) as info:
        load_dataset(root)
    assert "\n" not in str(info.value)


def test_missing_image_files(tmp_path):
    root = write_custom(tmp_path / "street", GOOD_ROWS)
    (root / "img" / "c.jpg").unlink()
    with pytest.raises(MosaicError, match=r"1 of 5 images listed in manifest\.csv do not exist \(e\.g\. .*c\.jpg\)"):
        load_dataset(root)
    assert len(read_manifest(root, check_files=False).images) == 5


def test_missing_columns_and_schema(tmp_path):
    root = write_custom(tmp_path / "street", GOOD_ROWS)
    with pytest.raises(MosaicError, match=r"lacks the column\(s\) \['gender'"):
        load_dataset(root, schema="market1501")
    (root / "schema.yaml").unlink()
    with pytest.raises(MosaicError, match="put schema.yaml beside it or pass --schema"):
        load_dataset(root)


def test_extra_columns_are_reported(tmp_path):
    schema = {**SCHEMA, "groups": SCHEMA["groups"][:1]}
    root = write_custom(tmp_path / "street", GOOD_ROWS, schema=schema)
    ds = load_dataset(root)
    assert list(ds.schema.group_names) == ["coat"]
    assert [f.code for f in ds.findings if f.severity == "warning"] == ["manifest-extra-columns"]


def test_attribute_file_is_refused_for_a_manifest(tmp_path, synthetic_market_attribute_file):
    root = write_custom(tmp_path / "street", GOOD_ROWS)
    with pytest.raises(MosaicError, match="drop --attributes"):
        load_dataset(root, attributes=synthetic_market_attribute_file)


def test_schema_object_is_accepted(tmp_path):
    root = write_custom(tmp_path / "street", GOOD_ROWS)
    schema = load_schema(root / "schema.yaml")
    assert read_manifest(root, schema=schema).schema is schema
