"""The Lin et al. attribute files: real copies, every known trap, and small synthetic files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io
import yaml

from mosaic.data import load_mapping, read_attribute_file
from mosaic.core.errors import MosaicError
from mosaic.core.schema import MISSING, read_schema_document


def write_lin_file(path, key, structs):
    """A .mat file in the Lin et al. layout: key -> {struct: {field: uint8 (1, N), image_index: cells}}."""
    content = {}
    for struct, fields in structs.items():
        ids = fields["image_index"]
        cells = np.empty((1, len(ids)), dtype=object)
        for i, pid in enumerate(ids):
            cells[0, i] = np.array([f"{pid:04d}"])
        content[struct] = {
            **{f: np.asarray(v, dtype=np.uint8).reshape(1, -1) for f, v in fields.items() if f != "image_index"},
            "image_index": cells,
        }
    scipy.io.savemat(path, {key: content})
    return path


def market_fields(n, **overrides):
    """Every Market field with 'no'/first-state codes for ``n`` ids, some overridden."""
    mapping = load_mapping("market1501")
    fields = {f: np.ones(n, dtype=np.uint8) for f in mapping.fields}
    fields["upblack"] = np.full(n, 2, dtype=np.uint8)
    fields["downblack"] = np.full(n, 2, dtype=np.uint8)
    fields.update({k: np.asarray(v, dtype=np.uint8) for k, v in overrides.items()})
    return fields


# ---------------------------------------------------------------------------- real files
@pytest.fixture(scope="module")
def market(market_attribute_file):
    return read_attribute_file(market_attribute_file)


@pytest.fixture(scope="module")
def duke(duke_attribute_file):
    return read_attribute_file(duke_attribute_file)


def codes(findings, code):
    return [f for f in findings if f.code == code]


def test_market_file_counts(market):
    assert market.dataset == "market1501"
    assert market.num_ids("train") == 751 and market.num_ids("test") == 750
    assert market.raw["train"].shape[1] == 27 and market.raw["test"].shape[1] == 27
    assert list(market.states["train"].columns) == list(market.schema.group_names)
    assert all(dtype == np.int16 for dtype in market.states["test"].dtypes)
    # identities are disjoint and together 0001..1501
    ids = market.states["train"].index.union(market.states["test"].index)
    assert len(ids) == 1501 and ids.min() == 1 and ids.max() == 1501


def test_duke_file_counts(duke):
    assert duke.dataset == "dukemtmc"
    assert duke.num_ids("train") == 702 and duke.num_ids("test") == 1110
    assert duke.raw["train"].shape[1] == 23 and duke.raw["test"].shape[1] == 23


def test_fields_are_read_by_name_not_position(market):
    # the two structs store their fields in different orders; a positional reader would swap them
    schema = market.schema
    train_raw, train = market.raw["train"], market.states["train"]
    for group, field, states in [("gender", "gender", ("male", "female")), ("age", "age", schema.group("age").states)]:
        expected = train_raw[field].to_numpy().astype(int) - 1
        assert np.array_equal(train[group].to_numpy(), expected), group
    # id 0002 in train: upred marked, downblue marked (checked against the raw file by hand)
    assert schema.group("upcolour").states[train.loc[2, "upcolour"]] == "red"
    assert schema.group("downcolour").states[train.loc[2, "downcolour"]] == "blue"


def test_market_ids_without_colour_become_other(market):
    up, down = market.schema.group("upcolour"), market.schema.group("downcolour")
    for struct, n_up, n_down in [("train", 78, 30), ("test", 69, 44)]:
        raw = market.raw[struct]
        none_up = (raw[[f"up{c}" for c in ("black", "white", "red", "purple", "yellow", "gray", "blue", "green")]] == 1).all(axis=1)
        assert int(none_up.sum()) == n_up
        assert (market.states[struct].loc[none_up, "upcolour"] == up.code("other")).all()
    (finding_up, finding_down) = codes(market.findings, "colour-none-marked")
    assert "78 train / 69 test" in finding_up.message and finding_up.count == 147
    assert "30 train / 44 test" in finding_down.message and finding_down.count == 74
    # pooled purple/yellow also land in `other`: 30 + 2 + 10 train ids, 44 + 0 + 1 test ids
    assert int((market.states["train"]["downcolour"] == down.code("other")).sum()) == 42
    assert int((market.states["test"]["downcolour"] == down.code("other")).sum()) == 45


def test_market_purple_and_yellow_lower_colours_are_pooled(market):
    pooled = {f.message.split("field ")[1].split(" ")[0]: f for f in codes(market.findings, "state-pooled")}
    assert set(pooled) == {"downpurple", "downyellow"}
    assert "(2 train / 0 test ids marked)" in pooled["downpurple"].message
    assert "(10 train / 1 test ids marked)" in pooled["downyellow"].message
    yellow_ids = market.raw["train"].index[market.raw["train"]["downyellow"] == 2]
    assert (market.states["train"].loc[yellow_ids, "downcolour"] == market.schema.group("downcolour").code("other")).all()


def test_market_has_no_missing_values(market):
    assert not codes(market.findings, "attribute-missing")
    assert all((t != MISSING).all().all() for t in market.states.values())


def test_duke_top_is_missing_for_0370_and_0679(duke):
    top = duke.states["train"]["top"]
    assert top.loc[370] == MISSING and top.loc[679] == MISSING
    assert int((top == MISSING).sum()) == 2
    (finding,) = codes(duke.findings, "attribute-missing")
    assert finding.severity == "warning" and finding.count == 2 and "0370, 0679" in finding.message


def test_duke_multi_marked_lower_colours_keep_the_first_in_state_order(duke):
    (finding,) = codes(duke.findings, "colour-multi-marked")
    assert finding.count == 23 and "0 train / 23 test" in finding.message
    down = duke.schema.group("downcolour")
    test = duke.states["test"]["downcolour"]
    assert down.states[test.loc[80]] == "black"  # black + white
    assert down.states[test.loc[5951]] == "black"  # black + white + red: three marked
    assert down.states[test.loc[341]] == "white"  # white + gray
    assert down.states[test.loc[1901]] == "gray"  # gray + blue


def test_duke_green_lower_colour_is_pooled(duke):
    (finding,) = codes(duke.findings, "state-pooled")
    assert "downgreen (1 train / 7 test ids marked)" in finding.message


def test_lookup_by_image_split(market):
    c, found = market.lookup("query", np.array([1, 2, 9999]))
    assert found.tolist() == [True, False, False]  # 0002 is a train identity, not in the test struct
    assert (c[1:] == MISSING).all() and (c[0] != MISSING).all()
    c, found = market.lookup("train", np.array([2]))
    assert found.all() and np.array_equal(c[0], market.states["train"].loc[2].to_numpy())


# ----------------------------------------------------------------------- synthetic files
def test_field_order_is_irrelevant(tmp_path):
    fields = market_fields(3, gender=[1, 2, 2], age=[1, 3, 4], upblack=[1, 1, 2], upgreen=[2, 1, 1])
    shuffled = dict(reversed(list(fields.items())))
    a = write_lin_file(tmp_path / "a.mat", "market_attribute", {"train": {**fields, "image_index": [2, 7, 9]}, "test": {**fields, "image_index": [1, 3, 4]}})
    b = write_lin_file(tmp_path / "b.mat", "market_attribute", {"train": {**shuffled, "image_index": [2, 7, 9]}, "test": {**fields, "image_index": [1, 3, 4]}})
    ta, tb = read_attribute_file(a), read_attribute_file(b)
    assert ta.states["train"].equals(tb.states["train"])
    up = ta.schema.group("upcolour")
    assert [up.states[c] for c in ta.states["train"]["upcolour"]] == ["green", "other", "black"]
    assert ta.states["train"]["age"].tolist() == [0, 2, 3]


def test_missing_colour_field_makes_the_group_missing_unless_a_colour_is_marked(tmp_path):
    fields = market_fields(3, upblack=[0, 0, 1], upred=[1, 2, 1])  # id 3: nothing marked, all annotated
    path = write_lin_file(tmp_path / "m.mat", "market_attribute", {"train": {**fields, "image_index": [1, 2, 3]}, "test": {**fields, "image_index": [4, 5, 6]}})
    table = read_attribute_file(path)
    up = table.schema.group("upcolour")
    assert [up.states[c] if c >= 0 else None for c in table.states["train"]["upcolour"]] == [None, "red", "other"]


def test_multi_marked_rule_is_data(tmp_path):
    doc_path = tmp_path / "strict.yaml"
    doc = read_schema_document("market1501")
    for group in doc["groups"]:
        if group["name"] == "upcolour":
            group["source"]["multi_marked"] = "missing"
    doc_path.write_text(yaml.safe_dump(doc))
    fields = market_fields(2, upred=[2, 1])  # id 1: black + red
    path = write_lin_file(tmp_path / "m.mat", "market_attribute", {"train": {**fields, "image_index": [1, 2]}, "test": {**fields, "image_index": [3, 4]}})
    assert read_attribute_file(path).states["train"]["upcolour"].tolist() == [0, 0]  # first: black
    strict = read_attribute_file(path, doc_path)
    assert strict.states["train"]["upcolour"].tolist() == [MISSING, 0]


def test_unmapped_code_is_an_error(tmp_path):
    fields = market_fields(2, gender=[1, 3])
    path = write_lin_file(tmp_path / "m.mat", "market_attribute", {"train": {**fields, "image_index": [1, 2]}, "test": {**fields, "image_index": [3, 4]}})
    with pytest.raises(MosaicError, match=r"'gender'.*codes \[3\]"):
        read_attribute_file(path)


def test_missing_field_is_an_error(tmp_path):
    fields = market_fields(2)
    del fields["hat"]
    path = write_lin_file(tmp_path / "m.mat", "market_attribute", {"train": {**fields, "image_index": [1, 2]}, "test": {**fields, "image_index": [3, 4]}})
    with pytest.raises(MosaicError, match=r"lacks the fields \['hat'\]"):
        read_attribute_file(path)


def test_duplicate_identity_is_an_error(tmp_path):
    fields = market_fields(2)
    path = write_lin_file(tmp_path / "m.mat", "market_attribute", {"train": {**fields, "image_index": [5, 5]}, "test": {**fields, "image_index": [3, 4]}})
    with pytest.raises(MosaicError, match="identity 0005 twice"):
        read_attribute_file(path)


# ---------------------------------------------------------------------------- bad input
def test_other_datasets_file_is_refused(market_attribute_file, duke_attribute_file):
    with pytest.raises(MosaicError, match=r"holds dukemtmc annotations.*images are market1501.*market_attribute\.mat") as info:
        read_attribute_file(duke_attribute_file, "market1501")
    assert "\n" not in str(info.value)
    with pytest.raises(MosaicError, match="holds market1501 annotations"):
        read_attribute_file(market_attribute_file, "dukemtmc")


def test_text_file_is_not_a_matlab_file(tmp_path):
    path = tmp_path / "market_attribute.mat"
    path.write_text("gender,hair\n1,2\n" * 20)
    with pytest.raises(MosaicError, match="not a readable MATLAB .mat file") as info:
        read_attribute_file(path)
    assert "\n" not in str(info.value)
    empty = tmp_path / "empty.mat"
    empty.write_bytes(b"")
    with pytest.raises(MosaicError, match="not a readable MATLAB"):
        read_attribute_file(empty)


def test_hdf5_file_is_refused(tmp_path):
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w") as handle:
        handle["market_attribute"] = np.zeros(3)
    with pytest.raises(MosaicError, match="MATLAB"):
        read_attribute_file(path)


def test_matlab_file_of_something_else(tmp_path):
    path = tmp_path / "other.mat"
    scipy.io.savemat(path, {"features": np.zeros((2, 2))})
    with pytest.raises(MosaicError, match=r"holds \['features'\], not a Lin et al. attribute file"):
        read_attribute_file(path)


def test_absent_file(tmp_path):
    with pytest.raises(MosaicError, match="does not exist"):
        read_attribute_file(tmp_path / "nope.mat")
