"""`mosaic trace` and `mosaic inspect` end to end, on a small manifest dataset and a saved checkpoint."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mosaic.app.cli import main
from mosaic.core.fileio import sha256_file

GROUPS = [
    {"name": "gender", "family": "intrinsic", "states": ["male", "female"]},
    {"name": "upcolour", "family": "extrinsic-colour", "states": ["black", "red", "blue"]},
    {"name": "hat", "family": "extrinsic-accessory", "states": ["no", "yes"]},
]
COLOURS = {"black": (20, 20, 20), "red": (200, 30, 30), "blue": (30, 30, 200)}


def _write_world(root: Path, groups: list[dict], seed: int) -> Path:
    """A manifest dataset whose images show the upper colour (unicode in file names)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    schema = {"name": f"toy{len(groups)}", "groups": groups}
    (root / "schema.yaml").write_text(yaml.safe_dump(schema), encoding="utf-8")
    rows = ["path,pid,camid,split," + ",".join(g["name"] for g in groups)]
    for pid in range(1, 9):
        states = [g["states"][rng.integers(len(g["states"]))] for g in groups]
        colour = COLOURS.get(states[1] if len(states) > 1 else "black", (90, 90, 90))
        splits = ["train"] * 3 if pid <= 3 else ["query", "gallery", "gallery"]
        for i, split in enumerate(splits):
            pixels = np.clip(rng.normal(0, 25, (128, 64, 3)) + np.array(colour), 0, 255).astype(np.uint8)
            name = f"images/{pid:04d}_c{i + 1}_ü{i}.png"
            Image.fromarray(pixels).save(root / name)
            cells = ["" if (pid == 5 and g == 0) else s for g, s in enumerate(states)]  # one missing label
            rows.append(f"{name},{pid},{i + 1},{split}," + ",".join(cells))
    (root / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def _write_checkpoint(path: Path, world: Path, *, learned: bool) -> Path:
    from mosaic.data import load_dataset
    from mosaic.model import ModelConfig, build_model
    from mosaic.train.checkpoint import save_checkpoint
    from mosaic.train.config import TrainConfig

    dataset = load_dataset(world)
    torch.manual_seed(0)
    model_config = ModelConfig(backbone="vit_micro", expert_blocks=2, learned_router=learned)
    model = build_model(model_config, dataset.schema, num_classes=3)
    with torch.no_grad():  # visible experts (fresh LoRA B is zero)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    config = TrainConfig.from_dict({"data": {"root": str(world)}, "model": model_config.to_dict()})
    payload = {
        "model": model.state_dict(),
        "step": 7,
        "epoch": 1,
        "finished": True,
        "config": config.to_dict(),
        "schema": dataset.schema.to_dict(),
        "schema_fingerprint": dataset.schema.fingerprint(),
        "num_classes": 3,
        "class_pids": [1, 2, 3],
    }
    return save_checkpoint(path, payload)


@contextlib.contextmanager
def one_torch_thread():
    """Tiny models: one thread is as fast and does not fight other processes for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def toy_run(root: Path, *, seed: int, learned: bool, world_name: str = "world") -> tuple[Path, Path]:
    """The toy manifest world under ``root`` and a micro checkpoint for it in ``root/run`` (untrained)."""
    world = _write_world(root / world_name, GROUPS, seed=seed)
    return world, _write_checkpoint(root / "run" / "checkpoints" / "last.pt", world, learned=learned)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    with one_torch_thread():
        world, ckpt = toy_run(root, seed=0, learned=True, world_name="wörld")
        yield root, world, ckpt


@pytest.fixture(scope="module")
def traced(setup):
    root, world, ckpt = setup
    out = root / "trace.h5"
    code = main(["trace", "--ckpt", str(ckpt), "--out", str(out), "--conditions", "oracle,none,drop:*,counterfactual:upcolour,learned",
                 "--top-k", "3", "--max-rank", "5", "--device", "cpu", "--seed", "3", "--quiet"])
    assert code == 0
    return out


def test_trace_command_writes_a_complete_trace(traced, setup):
    from analysis import read_trace

    _, world, ckpt = setup
    trace = read_trace(traced)
    assert trace.condition_names() == ["oracle", "none", "drop:gender", "drop:upcolour", "drop:hat",
                                       "counterfactual:upcolour", "learned"]
    assert trace.sizes["query"] == 5 and trace.sizes["gallery"] == 10 and trace.sizes["topk"] == 3
    assert trace.query_table["path"].iloc[0] == "images/0004_c1_ü0.png"  # relative to the dataset root
    assert trace.query_table["gender"].isna().sum() == 1
    assert trace.conditions.set_index("condition").loc["learned", "router"] == "learned"
    prov = trace.provenance
    assert prov["checkpoint"]["sha256"] == sha256_file(ckpt) and prov["checkpoint"]["step"] == 7
    assert prov["checkpoint_sha256"] == sha256_file(ckpt)
    assert prov["seed"] == 3 and prov["device"] == "cpu"
    assert prov["precision"] == "fp32" and prov["trace_settings"]["precision"] == "fp32" and prov["world_size"] == 1
    assert prov["command"].startswith("mosaic trace --ckpt ") and "--seed 3" in prov["command"]
    assert prov["config"]["train"]["model"]["backbone"] == "vit_micro"
    assert {"torch", "numpy", "h5py", "mosaic"} <= set(prov["versions"])
    assert prov["dataset_paths"]["root"] == str(world)
    assert trace.dataset["n_query"] == 5
    assert np.isfinite(trace.data.mAP).all()


def test_trace_is_reproducible(traced, setup, tmp_path):
    from mosaic.tracefile import read_trace_data

    _, _, ckpt = setup
    again = tmp_path / "again.h5"
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(again), "-c", "oracle,none,drop:*,counterfactual:upcolour,learned",
                 "--top-k", "3", "--max-rank", "5", "--device", "cpu", "--seed", "3", "-q"]) == 0
    a, b = read_trace_data(traced), read_trace_data(again)
    np.testing.assert_array_equal(a.ap, b.ap)
    np.testing.assert_array_equal(a.gates, b.gates)
    np.testing.assert_array_equal(a.topk_index, b.topk_index)


def test_inspect_json_and_table(traced, capsys):
    assert main(["inspect", str(traced), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    from mosaic.tracefile import SCHEMA_VERSION

    assert summary["sizes"]["condition"] == 7 and summary["schema_version"] == SCHEMA_VERSION
    assert [c["condition"] for c in summary["conditions"]][:2] == ["oracle", "none"]
    assert summary["provenance"]["checkpoint"]["step"] == 7
    assert summary["conditions"][1]["n_enabled"] == 0
    assert summary["precision"] == "fp32"
    assert main(["inspect", str(traced)]) == 0
    text = capsys.readouterr().out
    assert "7 conditions" in text and "counterfactual:upcolour" in text and f"schema {SCHEMA_VERSION}" in text
    assert "precision: fp32 network" in text


def test_inspect_does_not_import_torch(traced):
    code = (
        "import sys; from mosaic.app.cli import main; rc = main(['inspect', sys.argv[1]]); "
        "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(traced)], check=True, timeout=120, capture_output=True)


def test_inspect_refuses_foreign_files(tmp_path, capsys):
    bogus = tmp_path / "x.h5"
    bogus.write_bytes(b"not hdf5 at all")
    assert main(["inspect", str(bogus)]) == 2
    assert "not a readable HDF5 file" in capsys.readouterr().err


def test_unknown_condition_pattern(setup, tmp_path, capsys):
    _, _, ckpt = setup
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(tmp_path / "t.h5"), "-c", "drop:shoes", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: condition pattern 'drop:shoes' matches nothing") and "unknown group 'shoes'" in err
    assert not (tmp_path / "t.h5").exists()
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(tmp_path / "t.h5"), "-c", "nonsense", "-q"]) == 2
    assert "available kinds are oracle, none, drop:<group>" in capsys.readouterr().err


def test_output_not_writable(setup, tmp_path, capsys):
    _, _, ckpt = setup
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(tmp_path / "missing" / "t.h5"), "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(tmp_path), "-q"]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_checkpoint_schema_differs_from_dataset(setup, tmp_path, capsys):
    root, _, ckpt = setup
    other = _write_world(tmp_path / "other", GROUPS[:2], seed=1)
    assert main(["trace", "--ckpt", str(ckpt), "--data", str(other), "--out", str(tmp_path / "t.h5"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "trained with attribute schema 'toy3'" in err and "uses 'toy2'" in err


def test_learned_needs_a_learned_router(setup, tmp_path, capsys):
    root, world, _ = setup
    plain = _write_checkpoint(tmp_path / "plain.pt", world, learned=False)
    assert main(["trace", "--ckpt", str(plain), "--out", str(tmp_path / "t.h5"), "-c", "learned", "-q"]) == 2
    assert "no learned router" in capsys.readouterr().err


def test_trace_on_the_synthetic_world_with_the_default_conditions(tiny_world, tmp_path):
    """The Market-1501 layout and schema end to end, every default condition kind, then xarray."""
    from analysis import read_trace
    from mosaic.conditions import default_n_subsets
    from mosaic.core.schema import load_schema

    with one_torch_thread():
        ckpt = _write_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", tiny_world, learned=True)
        out = tmp_path / "trace.h5"
        assert main(["trace", "--ckpt", str(ckpt), "--out", str(out), "--device", "cpu", "-q"]) == 0
    trace = read_trace(out)
    schema = load_schema("market1501")
    G = len(schema.groups)
    kinds = trace.conditions["kind"].value_counts().to_dict()
    assert kinds == {"oracle": 1, "none": 1, "drop": G, "only": G, "counterfactual": G,
                     "subset": default_n_subsets(schema), "learned": 1, "fixed": G, "relabel": G, "code": 1}
    assert trace.schema == schema
    assert trace.dataset["format"] == "market1501"
    assert trace.query_table["path"].str.startswith("query/").all()
    # distractors (pid 0) are in the gallery with every group missing; the oracle routed them by
    # the learned router like any image instead of leaving them off (shares recovered from the data)
    distractor = trace.data.gallery_pid == 0
    oracle = trace.condition_names().index("oracle")
    n_missing = int((trace.data.query_states == -1).sum() + (trace.data.gallery_states == -1).sum())
    assert trace.data.filled_routes[oracle] == n_missing
    assert trace.data.fill_method[oracle] == ("learned" if n_missing else "none")
    if distractor.any():
        assert (trace.data.gallery_states[distractor] == -1).all() and n_missing >= G * distractor.sum()
    assert np.isfinite(trace.data.fixed_gates).all()
    assert trace.provenance["state_shares_source"].startswith("recomputed from the training split")
    xr = pytest.importorskip("xarray")
    tree = xr.open_datatree(out, engine="h5netcdf")
    try:
        assert tree["routing"]["gates"].sizes["condition"] == len(trace.condition_names())
        assert tree["retrieval"]["ap"].sel(condition="oracle").dims == ("query",)
    finally:
        tree.close()


# ---------------------------------------------------------------------------- the kinds of schema 1.1

def test_fixed_relabel_and_code_are_traced(setup, tmp_path):
    from mosaic.tracefile import read_trace_data

    _, world, ckpt = setup
    out = tmp_path / "t.h5"
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(out), "-c", "oracle,fixed:*,relabel:upcolour,code",
                 "--top-k", "3", "--max-rank", "5", "--device", "cpu", "-q"]) == 0
    data = read_trace_data(out)
    names = data.condition_name.tolist()
    assert names == ["oracle", "fixed:gender", "fixed:upcolour", "fixed:hat", "relabel:upcolour", "code"]
    assert list(data.condition_kind) == ["oracle", "fixed", "fixed", "fixed", "relabel", "code"]
    assert (data.gates[names.index("code")] == 0).all() and np.isfinite(data.mAP).all()
    # the fixed gates of upcolour are the same for every query, summing to 1
    sl = data.schema.expert_slice("upcolour")
    fixed = data.gates[names.index("fixed:upcolour")][:, :, sl]
    assert (fixed == fixed[0]).all() and np.allclose(fixed.sum(axis=-1), 1.0)
    np.testing.assert_allclose(fixed[0, 0], data.fixed_gates[sl])
    # majority: one expert, the same for everyone
    again = tmp_path / "m.h5"
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(again), "-c", "fixed:upcolour", "--fixed-gates", "majority",
                 "--device", "cpu", "-q"]) == 0
    major = read_trace_data(again).gates[0][:, :, sl]
    assert (major == major[0]).all() and sorted(np.unique(major).tolist()) == [0.0, 1.0]


def test_fixed_with_an_unknown_group_is_refused(setup, tmp_path, capsys):
    _, _, ckpt = setup
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(tmp_path / "t.h5"), "-c", "oracle,fixed:shoes", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown group 'shoes' in 'fixed:shoes'" in err
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(tmp_path / "t.h5"), "-c", "relabel:shoes", "-q"]) == 2
    assert "unknown group 'shoes' in 'relabel:shoes'" in capsys.readouterr().err
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(tmp_path / "t.h5"), "-c", "fixed:*", "--fixed-gates", "mean", "-q"]) == 2
    assert "--fixed-gates must be one of ['shares', 'majority']" in capsys.readouterr().err
    assert not (tmp_path / "t.h5").exists()


def test_relabel_of_a_one_state_group_is_refused(setup, tmp_path, capsys):
    """A one-state group has nothing to permute; schemas refuse such groups when they are read."""
    _, _, ckpt = setup
    groups = GROUPS + [{"name": "backpack", "family": "extrinsic-accessory", "states": ["yes"]}]
    world = _write_world(tmp_path / "w", groups, seed=2)
    assert main(["trace", "--ckpt", str(ckpt), "--data", str(world), "--out", str(tmp_path / "t.h5"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'backpack' needs at least two states" in err
    assert not (tmp_path / "t.h5").exists()


def test_code_without_annotations_is_refused(tmp_path, capsys):
    import pandas as pd

    world = _write_world(tmp_path / "w", GROUPS, seed=3)
    manifest = pd.read_csv(world / "manifest.csv", dtype=str, keep_default_na=False)
    for g in GROUPS:
        manifest[g["name"]] = ""
    manifest.to_csv(world / "manifest.csv", index=False)
    ckpt = _write_checkpoint(tmp_path / "c.pt", world, learned=True)
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(tmp_path / "t.h5"), "-c", "oracle,code", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "carry no attribute annotations" in err
    assert not (tmp_path / "t.h5").exists()
