"""Synthetic worlds in the DukeMTMC-reID layout: read back through the real loaders, the attribute
file in the real file's structure, the traps of the real file, priors taken from it, the Duke
groups visible in the pixels, and one-line errors for a layout or config that does not fit."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io as sio

from mosaic.app.cli import main
from mosaic.data import DataReport, load_dataset
from mosaic.data.attributes import read_attribute_file
from mosaic.core.errors import MosaicError
from mosaic.core.schema import load_schema
from mosaic.synth import WorldConfig, synthesize
from mosaic.synth.layouts import WORLD_LAYOUTS, get_layout
from mosaic.synth.population import sample_population
from mosaic.synth.render import render
from mosaic.synth.scene import Cameras, Shots, figure_parameters

DUKE_NAME = re.compile(r"(\d{4})_c([1-8])_f(\d{7})\.jpg")
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
TRAP_CODES = ("attribute-missing", "colour-multi-marked", "state-pooled", "colour-none-marked")


@pytest.fixture(scope="module")
def duke_world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("duke") / "DukeMTMC-reID"
    # 'upcolour' with nothing marked for some ids, as in the real file (1 train / 14 test ids)
    return synthesize(out, WorldConfig(n_ids=24, images_per_id=8, seed=5, layout="dukemtmc", multi_marked=("downcolour:test=3",)))


@pytest.fixture(scope="module")
def sidecar(duke_world: Path) -> dict:
    return json.loads((duke_world / "world.json").read_text())


# ---------------------------------------------------------------------------- round trip
def test_file_names_and_cameras_are_dukes(duke_world: Path, sidecar):
    names = [p.name for f in FOLDERS.values() for p in (duke_world / f).iterdir()]
    assert names and all(DUKE_NAME.fullmatch(n) for n in names)
    cameras = {int(DUKE_NAME.fullmatch(n).group(2)) for n in names}
    assert cameras <= set(range(1, 9)) and len(cameras) > 6  # eight cameras by default
    assert sidecar["layout"] == "dukemtmc" and sidecar["cameras"] == 8
    assert sidecar["attribute_file"] == "duke_attribute.mat" and sidecar["schema"] == "dukemtmc"


def test_the_real_loaders_read_back_the_counts_and_traps_world_json_states(duke_world: Path, sidecar):
    ds = load_dataset(duke_world)  # format recognised from the file names, as for the real tree
    assert ds.format == "dukemtmc" and ds.schema.name == "dukemtmc" and len(ds.schema.groups) == 10
    for split, folder in FOLDERS.items():
        frame = ds.split(split)
        assert len(frame) == sidecar["images"][split]
        assert frame["pid"].nunique() == sidecar["identities"][split]
    assert not (ds.images["pid"] <= 0).any()  # DukeMTMC-reID has no junk and no pid 0000
    query_ids, gallery_ids = set(ds.split("query").pid), set(ds.split("gallery").pid)
    gallery_only = gallery_ids - query_ids
    assert len(gallery_only) == sidecar["resolved"]["n_distractor_ids"] > 0
    assert len(query_ids | gallery_ids) == sidecar["resolved"]["n_test_ids"]
    # the gallery-only identities are annotated in the test split, as Duke's 408 distractors are
    gallery = ds.split("gallery")
    annotated = gallery[gallery.pid.isin(gallery_only)][list(ds.schema.group_names)]
    assert (annotated >= 0).all().all()

    findings = {f.code: f for f in DataReport.from_dataset(ds).findings}
    (unannotated,) = sidecar["traps"]["unannotated"]
    assert (unannotated["group"], unannotated["split"]) == ("top", "train") and len(unannotated["ids"]) == 2
    train = ds.split("train")
    missing_top = {f"{p:04d}" for p in train.loc[train["top"] < 0, "pid"]}
    assert missing_top == set(unannotated["ids"])
    assert findings["attribute-missing"].count == 2 and all(i in findings["attribute-missing"].message for i in unannotated["ids"])
    (multi,) = sidecar["traps"]["multi_marked"]
    assert findings["colour-multi-marked"].count == len(multi["ids"]) == 3
    assert findings["colour-multi-marked"].message.startswith("downcolour: 0 train / 3 test ids")


def test_same_seed_same_bytes_and_a_market_world_is_unchanged_by_the_layouts(tmp_path: Path, duke_world: Path):
    again = synthesize(tmp_path / "again", WorldConfig(n_ids=24, images_per_id=8, seed=5, layout="dukemtmc",
                                                        multi_marked=("downcolour:test=3",)))  # fmt: skip
    files = sorted(p.relative_to(duke_world) for p in duke_world.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((duke_world / f).read_bytes() == (again / f).read_bytes() for f in files)
    market = json.loads((synthesize(tmp_path / "market", WorldConfig(n_ids=8, images_per_id=6)) / "world.json").read_text())
    assert market["layout"] == "market1501" and market["cameras"] == 6 and market["attribute_file"] == "market_attribute.mat"
    assert market["traps"] == {"unannotated": [], "multi_marked": [], "none_marked": []}


def test_attribute_file_has_the_real_structure(duke_world: Path, sidecar):
    contents = sio.loadmat(duke_world / "duke_attribute.mat")
    assert [k for k in contents if not k.startswith("__")] == ["duke_attribute"]
    top = contents["duke_attribute"]
    assert top.shape == (1, 1) and set(top.dtype.names) == {"train", "test"}
    order = get_layout("dukemtmc").field_order
    sizes = {"train": sidecar["resolved"]["n_train_ids"], "test": sidecar["resolved"]["n_test_ids"]}
    for split in ("train", "test"):
        node = top[0, 0][split]
        assert node.shape == (1, 1) and node.dtype.names == order[split]  # the order differs per split
        for name in node.dtype.names:
            value = node[0, 0][name]
            if name == "image_index":
                assert value.shape == (1, sizes[split]) and all(re.fullmatch(r"\d{4}", str(c[0])) for c in value[0])
                assert value[0, 0].dtype == np.dtype("<U4") and value[0, 0].shape == (1,)
            else:
                assert value.dtype == np.uint8 and value.shape == (1, sizes[split])
    assert order["train"] != order["test"]


def test_structure_and_field_orders_match_the_real_file(duke_attribute_file: Path, duke_world: Path):
    if not duke_attribute_file.is_file():
        pytest.skip("the real duke_attribute.mat is not beside this checkout")
    real = sio.loadmat(duke_attribute_file)["duke_attribute"]
    ours = sio.loadmat(duke_world / "duke_attribute.mat")["duke_attribute"]
    assert real.dtype.names == ours.dtype.names
    for split in ("train", "test"):
        r, o = real[0, 0][split], ours[0, 0][split]
        assert r.dtype.names == o.dtype.names
        for name in r.dtype.names:
            rv, ov = r[0, 0][name], o[0, 0][name]
            assert rv.dtype == ov.dtype and rv.shape[0] == ov.shape[0] == 1
            if name == "image_index":
                assert rv[0, 0].dtype == ov[0, 0].dtype and rv[0, 0].shape == ov[0, 0].shape


def test_data_check_reports_the_traps_of_the_real_file(duke_attribute_file: Path, duke_world: Path):
    if not duke_attribute_file.is_file():
        pytest.skip("the real duke_attribute.mat is not beside this checkout")

    def traps(findings):
        return Counter((f.code, f.severity, f.message.split(":")[0]) for f in findings if f.code in TRAP_CODES)

    real = read_attribute_file(duke_attribute_file).findings
    ours = read_attribute_file(duke_world / "duke_attribute.mat").findings
    # top unannotated (train), several lower colours (test), downgreen pooled, colours none marked
    assert traps(ours) == traps(real)


def test_priors_are_the_real_files_frequencies(duke_attribute_file: Path):
    if not duke_attribute_file.is_file():
        pytest.skip("the real duke_attribute.mat is not beside this checkout")
    table = read_attribute_file(duke_attribute_file)
    raw = pd.concat([table.raw[s] for s in ("train", "test")])
    priors = get_layout("dukemtmc").priors
    for g_code, gender in ((1, "male"), (2, "female")):
        rows = raw[raw["gender"] == g_code]
        assert priors["gender"][gender] == len(rows)
        for field, counts in priors["conditional"][gender]["coded"].items():
            assert counts == [int((rows[field] == c).sum()) for c in (1, 2)]
        for group, counts in priors["conditional"][gender]["one_hot"].items():
            marked = np.stack([rows[f].to_numpy() == 2 for f in priors["fields"][group]], axis=1)
            first = np.where(marked.any(axis=1), marked.argmax(axis=1), marked.shape[1])
            assert counts == np.bincount(first, minlength=marked.shape[1] + 1).tolist()


def test_drawn_states_follow_the_duke_priors():
    config = WorldConfig(layout="dukemtmc", seed=1)
    people = sample_population(6000, config, np.random.default_rng(0))
    states = load_schema("dukemtmc").group("boots").states
    boots = (people.states["boots"] == states.index("yes")).mean()
    assert boots == pytest.approx((57 + 428) / 1812, abs=0.02)
    female = people.states["gender"] == 1
    assert (people.states["boots"][female] == 1).mean() > 4 * (people.states["boots"][~female] == 1).mean()
    assert set(people.states) == set(load_schema("dukemtmc").group_names)


# ------------------------------------------------------------------------------- pixels
@pytest.mark.parametrize("group", ["top", "boots", "shoes", "hat", "backpack", "bag", "handbag", "gender", "upcolour", "downcolour"])
def test_every_duke_group_shows_in_the_pixels(group):
    config = WorldConfig(layout="dukemtmc", seed=2, nuisance=0.0, occlusion=0.0, camera_variation=0.0)
    people = sample_population(6, config, np.random.default_rng(3))
    n_states = len(load_schema("dukemtmc").group(group).states)

    def image(state: int, invisible=()) -> np.ndarray:
        from dataclasses import replace

        from mosaic.synth.people import People

        states = {**people.states, group: np.full(len(people), state, dtype=np.int16)}
        up, down = people.up_field, people.down_field
        if group == "upcolour":
            up = np.full(len(people), state)  # field index; 0 black .. 7 brown
        if group == "downcolour":
            down = np.full(len(people), state)
        cfg = replace(config, invisible=invisible)
        rng = np.random.default_rng(0)
        fig = figure_parameters(People(states, up, down, people.detail), cfg)
        shots = Shots.sample(np.arange(len(people)) % cfg.n_cameras + 1, cfg, rng)
        return render(fig, shots, Cameras.sample(cfg, rng), cfg).astype(float)

    a, b = image(0), image(min(1, n_states - 1) if group not in ("upcolour", "downcolour") else 1)
    assert np.abs(a - b).mean() > 0.5, f"{group}: its two states look the same"
    if group not in ("upcolour", "downcolour"):
        assert np.abs(image(0, (group,)) - image(1, (group,))).mean() < 0.05  # invisible: drawn one way


# ---------------------------------------------------------------------------- bad input
def _one_line_exit_2(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_an_unknown_layout_is_one_line(tmp_path, capsys):
    err = _one_line_exit_2(["synth", "--out", str(tmp_path / "w"), "--layout", "cuhk03", "-q"], capsys)
    assert "cuhk03" in err and all(name in err for name in WORLD_LAYOUTS)
    err = _one_line_exit_2(["demo", "--out", str(tmp_path / "d"), "--layout", "cuhk03", "--no-progress"], capsys)
    assert "cuhk03" in err
    assert not (tmp_path / "w").exists() and not (tmp_path / "d").exists()


def test_a_config_of_the_other_layout_is_one_line(tmp_path, capsys, duke_world, tiny_world):
    from mosaic.configs import shipped_config

    market_config, duke_config = shipped_config("synthetic_micro").path, shipped_config("synthetic_micro_duke").path
    err = _one_line_exit_2(["demo", "--out", str(tmp_path / "a"), "--layout", "dukemtmc", "--config", str(market_config)], capsys)
    assert "pass --config synthetic_micro_duke" in err
    err = _one_line_exit_2(["demo", "--out", str(tmp_path / "b"), "--config", str(duke_config)], capsys)
    assert "pass --config synthetic_micro," in err
    err = _one_line_exit_2(["train", "--config", str(market_config), "--set", f"data.root={duke_world}", "--out", str(tmp_path / "c")], capsys)
    assert "not a Market-1501 file name" in err
    err = _one_line_exit_2(["train", "--config", str(duke_config), "--set", f"data.root={tiny_world}", "--out", str(tmp_path / "e")], capsys)
    assert "not a DukeMTMC-reID file name" in err
    assert not any((tmp_path / n).exists() for n in "abce")


def test_knobs_a_layout_cannot_express_are_refused():
    with pytest.raises(MosaicError, match="n_junk=3 but the DukeMTMC-reID layout"):
        WorldConfig(layout="dukemtmc", n_junk=3)
    with pytest.raises(MosaicError, match="n_cameras must be an integer 2..8"):
        WorldConfig(layout="dukemtmc", n_cameras=9)
    with pytest.raises(MosaicError, match="unknown attribute group 'age'"):
        WorldConfig(layout="dukemtmc", constant=("age",))
    with pytest.raises(MosaicError, match="GROUP:SPLIT=COUNT"):
        WorldConfig(layout="dukemtmc", unannotated=("top=2",))
    with pytest.raises(MosaicError, match="multi_marked names 'hat'"):
        WorldConfig(layout="dukemtmc", multi_marked=("hat:test=1",))
    assert WorldConfig().n_cameras == 6 and WorldConfig().unannotated == ()  # Market-1501 as before
