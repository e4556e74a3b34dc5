"""Attribute schemas as data: the shipped Market/Duke schemas and the schema contract."""

from __future__ import annotations

import pytest
import yaml

from mosaic.core.errors import MosaicError
from mosaic.core.schema import FAMILIES, AttributeSchema, load_schema, read_schema_document, shipped_schemas

MARKET_GROUPS = ("gender", "hair", "age", "up", "down", "clothes", "hat", "backpack", "bag", "handbag", "upcolour", "downcolour")
DUKE_GROUPS = ("gender", "top", "boots", "shoes", "hat", "backpack", "bag", "handbag", "upcolour", "downcolour")
FAMILY_OF = {
    "gender": "intrinsic",
    "age": "intrinsic",
    "hair": "intrinsic",
    "upcolour": "extrinsic-colour",
    "downcolour": "extrinsic-colour",
    "up": "extrinsic-shape",
    "down": "extrinsic-shape",
    "clothes": "extrinsic-shape",
    "top": "extrinsic-shape",
    "boots": "extrinsic-shape",
    "shoes": "extrinsic-shape",
    "hat": "extrinsic-accessory",
    "backpack": "extrinsic-accessory",
    "bag": "extrinsic-accessory",
    "handbag": "extrinsic-accessory",
}


def test_shipped_schemas_are_listed():
    assert {"market1501", "dukemtmc"} <= set(shipped_schemas())


@pytest.mark.parametrize("name, groups", [("market1501", MARKET_GROUPS), ("dukemtmc", DUKE_GROUPS)])
def test_shipped_schema_groups_and_families(name, groups):
    schema = load_schema(name)
    assert schema.name == name
    assert schema.group_names == groups
    assert {g.name: g.family for g in schema.groups} == {g: FAMILY_OF[g] for g in groups}
    assert all(g.description for g in schema.groups)


def test_market_states_follow_the_annotation_readme():
    schema = load_schema("market1501")
    # raw code 1 is the first state, 2 the second (README of Market-1501_Attribute)
    assert schema.group("gender").states == ("male", "female")
    assert schema.group("hair").states == ("short", "long")
    assert schema.group("up").states == ("long-sleeve", "short-sleeve")
    assert schema.group("down").states == ("long", "short")
    assert schema.group("clothes").states == ("dress", "pants")
    assert schema.group("age").states == ("young", "teenager", "adult", "old")
    for accessory in ("hat", "backpack", "bag", "handbag"):
        assert schema.group(accessory).states == ("no", "yes")
    up, down = schema.group("upcolour"), schema.group("downcolour")
    assert up.states == ("black", "white", "red", "purple", "yellow", "gray", "blue", "green", "other")
    # purple and yellow lower-body colours are pooled into `other`
    assert "purple" not in down.states and "yellow" not in down.states and down.states[-1] == "other"
    assert schema.n_experts == sum(len(g.states) for g in schema.groups) == 39


def test_duke_states_follow_the_annotation_readme():
    schema = load_schema("dukemtmc")
    assert schema.group("top").states == ("short", "long")
    assert schema.group("shoes").states == ("dark", "light")
    assert schema.group("boots").states == ("no", "yes")
    assert schema.group("upcolour").states[-1] == "other"
    assert "green" not in schema.group("downcolour").states  # 1 train id: pooled


def test_schema_yaml_keeps_the_raw_mapping_beside_each_group():
    doc = read_schema_document("market1501")
    assert doc["attribute_file"]["key"] == "market_attribute"
    sources = {g["name"]: g["source"] for g in doc["groups"]}
    assert sources["gender"] == {"field": "gender", "codes": {1: "male", 2: "female"}}
    assert sources["downcolour"]["pooled"] == {"downpurple": "other", "downyellow": "other"}
    # and load_schema ignores the extra keys
    assert load_schema("market1501").to_dict()["groups"][0].keys() == {"name", "family", "states", "description"}


def test_families_cover_every_group_in_family_order():
    schema = load_schema("market1501")
    assert tuple(schema.families) == FAMILIES
    assert sorted(g for gs in schema.families.values() for g in gs) == sorted(MARKET_GROUPS)
    assert schema.group("age").coarse_family == "intrinsic"
    assert schema.group("hat").coarse_family == "extrinsic"


def test_experts_slices_and_labels_agree():
    schema = load_schema("dukemtmc")
    for group in schema.groups:
        sl = schema.expert_slice(group.name)
        assert [s for _, s in schema.experts[sl]] == list(group.states)
        assert schema.expert_labels[sl.start] == f"{group.name}={group.states[0]}"


def test_fingerprint_ignores_descriptions_and_round_trips_through_json():
    schema = load_schema("market1501")
    again = AttributeSchema.from_json(schema.to_json())
    assert again == schema and again.fingerprint() == schema.fingerprint()
    other = load_schema("dukemtmc")
    assert other.fingerprint() != schema.fingerprint()
    data = schema.to_dict()
    data["groups"][0]["description"] = "changed"
    assert AttributeSchema.from_dict(data).fingerprint() == schema.fingerprint()


def test_code_of_a_state_and_unknown_state():
    group = load_schema("market1501").group("upcolour")
    assert group.code("other") == len(group.states) - 1
    with pytest.raises(MosaicError, match="not a state of group 'upcolour'"):
        group.code("mauve")


def test_custom_schema_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "mine", "groups": [{"name": "coat", "family": "extrinsic-shape", "states": ["none", "short", "long"]}]}
        )
    )
    schema = load_schema(path)
    assert schema.group_names == ("coat",) and schema.n_experts == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\ngroups:\n  - {name: hat, family: accessory, states: [a, b]}\n", "unknown family"),
        ("name: x\ngroups:\n  - {name: hat, family: intrinsic, states: [a]}\n", "at least two states"),
        ("name: x\ngroups:\n  - {name: hat, family: intrinsic, states: [a, a]}\n", "lists a state twice"),
        ("name: x\ngroups:\n  - {name: hat, family: intrinsic, states: [no, yes]}\n", "read as a boolean"),
        ("name: x\ngroups:\n  - {name: hat, family: intrinsic, states: ab}\n", "states must be a list"),
        ("name: x\ngroups:\n  - {name: hat, states: [a, b]}\n", "missing or wrong field"),
        (
            "name: x\ngroups:\n  - {name: a, family: intrinsic, states: [p, q]}\n  - {name: a, family: intrinsic, states: [p, q]}\n",
            "lists a group twice",
        ),
        ("name: x\ngroups: [\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_bad_schema_files_give_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MosaicError, match=message) as info:
        load_schema(path)
    assert "\n" not in str(info.value)


def test_unknown_shipped_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MosaicError, match=r"no shipped attribute schema named 'market'.*market1501"):
        load_schema("market")
    with pytest.raises(MosaicError, match="does not exist"):
        load_schema(tmp_path / "absent.yaml")
