"""The synthetic world: Market-1501 layout and attribute file, reproducibility, the knobs, and
attributes that really show in the pixels."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from mosaic.app.cli import main
from mosaic.core.errors import MosaicError
from mosaic.synth import GROUP_STATES, WorldConfig, synthesize
from mosaic.synth.people import sample_people
from mosaic.synth.render import render
from mosaic.synth.scene import Cameras, Shots, figure_parameters

MARKET_NAME = re.compile(r"(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg")
FOLDERS = ("bounding_box_train", "query", "bounding_box_test")
SMALL = dict(n_ids=8, images_per_id=6)


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def load_mat(path: Path):
    return sio.loadmat(path)


# ----------------------------------------------------------------------------- layout
def test_layout_and_file_names(tiny_world: Path):
    names = {f: sorted(p.name for p in (tiny_world / f).iterdir()) for f in FOLDERS}
    assert all(names.values()), "train, query and gallery all hold images"
    parsed = {f: [MARKET_NAME.fullmatch(n) for n in ns] for f, ns in names.items()}
    assert all(m is not None for ms in parsed.values() for m in ms)
    pids = {f: {int(m.group(1)) for m in ms} for f, ms in parsed.items()}
    assert pids["bounding_box_train"].isdisjoint(pids["query"])
    assert pids["query"] <= pids["bounding_box_test"]
    assert {0, -1} <= pids["bounding_box_test"] and not {0, -1} & pids["query"]
    assert len(pids["bounding_box_train"]) + len(pids["query"]) == 12
    # one query per identity and camera, and each query keeps a true match in another camera
    query = [(int(m.group(1)), int(m.group(2))) for m in parsed["query"]]
    assert len(query) == len(set(query))
    gallery = [(int(m.group(1)), int(m.group(2))) for m in parsed["bounding_box_test"]]
    for pid, cam in query:
        assert any(p == pid and c != cam for p, c in gallery)
    with Image.open(next((tiny_world / "query").iterdir())) as image:
        assert image.format == "JPEG" and image.size == (64, 128) and image.mode == "RGB"


def test_attribute_file_has_the_real_structure(tiny_world: Path, market_attribute_file: Path):
    real = load_mat(market_attribute_file)["market_attribute"]
    ours = load_mat(tiny_world / "market_attribute.mat")["market_attribute"]
    assert ours.dtype.names == real.dtype.names  # top struct: test, train
    for split in ("train", "test"):
        r, o = real[split][0, 0], ours[split][0, 0]
        assert o.dtype.names == r.dtype.names  # same field names, same (split-specific) order
        for name in r.dtype.names:
            if name == "image_index":
                cells = o[name][0, 0]
                assert cells.shape[0] == 1 and all(str(c[0]).isdigit() and len(c[0]) == 4 for c in cells[0])
                continue
            value = o[name][0, 0]
            assert value.dtype == np.uint8 and value.ndim == 2 and value.shape[0] == 1
            assert set(np.unique(value)) <= ({1, 2, 3, 4} if name == "age" else {1, 2})
    assert real["train"][0, 0].dtype.names != real["test"][0, 0].dtype.names  # the trap is kept


def test_world_json_records_every_knob(tiny_world: Path):
    sidecar = json.loads((tiny_world / "world.json").read_text())
    assert sidecar["seed"] == 7 and sidecar["mosaic_version"]
    assert WorldConfig.from_dict(sidecar["config"]) == WorldConfig(n_ids=12, images_per_id=8, seed=7)
    n_query = sum(1 for _ in (tiny_world / "query").iterdir())
    assert sidecar["images"]["query"] == n_query


def test_group_states_match_the_shipped_schema():
    from mosaic.core.schema import load_schema

    schema = load_schema("market1501")
    assert {g.name: g.states for g in schema.groups} == GROUP_STATES


def test_round_trip_through_the_dataset_loader(tiny_world: Path):
    from mosaic.data import load_dataset

    ds = load_dataset(tiny_world)
    images = ds.images
    assert set(images["split"]) == {"train", "query", "gallery"}
    assert (images["pid"] >= 0).all()  # junk dropped
    distractors = images[images["pid"] == 0]
    assert len(distractors) and (distractors[list(GROUP_STATES)] == -1).all().all()
    people = images[images["pid"] > 0]
    assert (people[list(GROUP_STATES)] >= 0).all().all()  # every identity annotated
    # the loader's states equal the ones drawn: compare with the attribute file directly
    mat = load_mat(tiny_world / "market_attribute.mat")["market_attribute"]["train"][0, 0]
    pid = int(mat["image_index"][0, 0][0, 0][0])
    row = images[(images["pid"] == pid)].iloc[0]
    assert row["gender"] == mat["gender"][0, 0][0, 0] - 1


# ----------------------------------------------------------------------- reproducibility
def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path):
    a = synthesize(tmp_path / "a", WorldConfig(seed=3, **SMALL))
    time.sleep(1.1)  # anything time-stamped (e.g. the .mat header) would now differ
    b = synthesize(tmp_path / "b", WorldConfig(seed=3, **SMALL))
    c = synthesize(tmp_path / "c", WorldConfig(seed=4, **SMALL))
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(a) != tree_digest(c)


def test_refuses_non_empty_folder_and_overwrites_on_request(tmp_path: Path):
    out = tmp_path / "world"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(MosaicError, match="not empty"):
        synthesize(out, WorldConfig(**SMALL))
    synthesize(out, WorldConfig(**SMALL), overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "world.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["world"]  # no staging folder left behind


def test_interrupted_synth_leaves_nothing(tmp_path: Path, monkeypatch):
    import mosaic.synth.world as world

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(world, "write_attribute_file", boom)
    with pytest.raises(KeyboardInterrupt):
        synthesize(tmp_path / "world", WorldConfig(**SMALL))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the knobs
def _render_people(people, config, n_images=6, seed=0):
    rng = np.random.default_rng(seed)
    cams = Cameras.sample(config, rng)
    shots = Shots.sample(np.arange(n_images) % config.n_cameras + 1, config, rng)
    fig = figure_parameters(people, config)
    fig = {k: np.repeat(v[:1], n_images, axis=0) for k, v in fig.items()}
    return render(fig, shots, cams, config)


@pytest.mark.parametrize(
    "group, states",
    [("hat", ("no", "yes")), ("upcolour", ("red", "blue")), ("gender", ("male", "female")), ("backpack", ("no", "yes"))],
)
def test_invisible_group_does_not_change_pixels(group, states):
    config = WorldConfig(seed=1, invisible=(group,), **SMALL)
    base = sample_people(1, config, np.random.default_rng(5))
    a = _render_people(base.with_state(group, states[0]), config)
    b = _render_people(base.with_state(group, states[1]), config)
    np.testing.assert_array_equal(a, b)
    visible = WorldConfig(seed=1, **SMALL)
    assert not np.array_equal(
        _render_people(base.with_state(group, states[0]), visible), _render_people(base.with_state(group, states[1]), visible)
    )


def test_constant_groups_share_one_state(tmp_path: Path):
    config = WorldConfig(seed=2, constant=("hat=yes", "upcolour"), **SMALL)
    people = sample_people(200, config, np.random.default_rng(0))
    assert (people.states["hat"] == GROUP_STATES["hat"].index("yes")).all()
    assert (people.states["upcolour"] == GROUP_STATES["upcolour"].index("white")).all()  # most frequent in Market
    free = sample_people(200, WorldConfig(seed=2, **SMALL), np.random.default_rng(0))
    assert len(np.unique(free.states["upcolour"])) > 3


def test_uniform_groups_spread_over_every_state():
    config = WorldConfig(seed=2, uniform=("hat", "downcolour"), **SMALL)
    people = sample_people(4000, config, np.random.default_rng(0))
    hat_yes = (people.states["hat"] == GROUP_STATES["hat"].index("yes")).mean()
    assert hat_yes == pytest.approx(0.5, abs=0.03)  # Market-1501 has about 3 %
    shares = np.bincount(people.states["downcolour"], minlength=len(GROUP_STATES["downcolour"])) / 4000
    assert shares == pytest.approx(np.full(len(shares), 1 / len(shares)), abs=0.03)
    with pytest.raises(MosaicError, match="both constant and uniform"):
        WorldConfig(constant=("hat",), uniform=("hat",))


def test_priors_follow_market_frequencies():
    people = sample_people(6000, WorldConfig(**SMALL), np.random.default_rng(0))
    female = people.states["gender"] == 1
    assert female.mean() == pytest.approx(656 / 1501, abs=0.03)
    assert people.states["clothes"][~female].min() == 1  # no dresses on men, as in the real file
    assert (people.states["hat"] == 1).mean() == pytest.approx(43 / 1501, abs=0.01)
    assert (people.states["upcolour"] == GROUP_STATES["upcolour"].index("other")).mean() == pytest.approx(147 / 1501, abs=0.02)


def test_upper_colour_is_visible_in_the_torso():
    config = WorldConfig(seed=0, occlusion=0.0, **SMALL)
    rng = np.random.default_rng(1)
    people = sample_people(120, config, rng)
    states = ("black", "white", "red", "blue")
    means = {}
    for state in states:
        group = people.with_state("upcolour", state).with_state("backpack", "no").with_state("bag", "no")
        fig = figure_parameters(group, config)
        shots = Shots.sample(np.arange(len(group)) % 6 + 1, config, rng)
        images = render(fig, shots, Cameras.sample(config, rng), config).astype(float)
        torso = images[:, 40:58, 26:38]  # chest of a Market-sized 128 x 64 pedestrian
        means[state] = torso.mean(axis=(0, 1, 2))
    assert means["white"].sum() > means["red"].sum() > means["black"].sum()
    assert means["red"][0] > means["red"][2] + 40 and means["blue"][2] > means["blue"][0] + 40


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(invisible=("shoes",)), "unknown attribute group 'shoes'"),
        (dict(constant=("hat=maybe",)), "not a state of group 'hat'"),
        (dict(constant=("hat", "hat=yes")), "twice"),
        (dict(n_ids=3), "n_ids"),
        (dict(images_per_id=3), "images_per_id"),
        (dict(n_cameras=10), "n_cameras"),
        (dict(occlusion=1.5), "occlusion"),
        (dict(identity_detail=-1), "identity_detail"),
    ],
)
def test_bad_settings_are_user_errors(kwargs, message):
    with pytest.raises(MosaicError, match=message):
        WorldConfig(**{**SMALL, **kwargs})


# --------------------------------------------------------------------------------- CLI
def test_cli_writes_a_world_and_reports_errors(tmp_path: Path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--ids", "6", "--images-per-id", "4", "--seed", "5",
                 "--invisible", "hat,bag", "--constant", "gender", "--quiet"]) == 0  # fmt: skip
    sidecar = json.loads((out / "world.json").read_text())
    assert sidecar["config"]["invisible"] == ["hat", "bag"] and sidecar["config"]["constant"] == ["gender"]
    assert main(["synth", "--out", str(out), "--ids", "6", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "x"), "--invisible", "shoes", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown attribute group 'shoes'") and "Traceback" not in err
    assert not (tmp_path / "x").exists()
