"""Shipped training configs: found by name from anywhere, listed, shown and copied out to edit."""

from __future__ import annotations

import pytest

from mosaic.app.cli import main
from mosaic.configs import config_path, shipped_config, shipped_configs
from mosaic.core.errors import MosaicError
from mosaic.train.config import load_config

NAMES = [config.name for config in shipped_configs()]


def test_the_shipped_configs_are_package_data_with_a_summary_each():
    assert {"synthetic_micro", "synthetic_micro_duke", "market1501_clip_vitb16"} <= set(NAMES)
    for config in shipped_configs():
        assert config.path.is_file() and config.path.parent.name == "configs"
        assert config.path.parent.parent.name == "mosaic"  # inside the package, not beside it
        assert config.summary and not config.summary.startswith("#")


def test_a_name_and_its_file_load_the_same_config(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # names resolve from any folder
    by_path = load_config(shipped_config("synthetic_micro").path).to_dict()
    assert load_config("synthetic_micro").to_dict() == by_path
    assert load_config("synthetic_micro.yaml").to_dict() == by_path


def test_an_existing_file_wins_over_a_shipped_name(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "synthetic_micro.yaml").write_text("optim:\n  lr: 0.5\n")
    assert config_path("synthetic_micro.yaml").resolve() == tmp_path / "synthetic_micro.yaml"
    assert load_config("synthetic_micro.yaml").optim.lr == 0.5
    assert config_path("synthetic_micro") == shipped_config("synthetic_micro").path


@pytest.mark.parametrize("source", ["synthetic_mikro", "configs/synthetic_micro.yaml", "../synthetic_micro"])
def test_a_config_that_is_neither_file_nor_name_is_one_line_listing_the_names(source, tmp_path, capsys):
    assert main(["train", "--config", source, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"config {source!r} is neither a file nor a shipped config" in err
    assert all(name in err for name in NAMES)
    assert not (tmp_path / "run").exists()


def test_a_folder_is_not_a_config(tmp_path):
    with pytest.raises(MosaicError, match="is not a file"):
        config_path(tmp_path)


def test_configs_list_and_show(capsys):
    assert main(["configs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    assert main(["configs", "show", "synthetic_micro"]) == 0
    assert capsys.readouterr().out == shipped_config("synthetic_micro").path.read_text()


def test_configs_copy_writes_an_editable_copy_and_keeps_what_exists(tmp_path, capsys):
    dest = tmp_path / "mine.yaml"
    assert main(["configs", "copy", "market1501_clip_vitb16", str(dest)]) == 0
    assert dest.read_text() == shipped_config("market1501_clip_vitb16").path.read_text()
    assert load_config(dest).to_dict() == load_config("market1501_clip_vitb16").to_dict()

    dest.write_text("edited\n")
    assert main(["configs", "copy", "market1501_clip_vitb16", str(dest)]) == 2
    assert "already exists: pass --force" in capsys.readouterr().err
    assert dest.read_text() == "edited\n"
    assert main(["configs", "copy", "market1501_clip_vitb16", str(dest), "--force"]) == 0
    assert load_config(dest).to_dict() == load_config("market1501_clip_vitb16").to_dict()

    assert main(["configs", "copy", "synthetic_micro", str(tmp_path)]) == 0  # a folder: NAME.yaml inside
    assert (tmp_path / "synthetic_micro.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml", "synthetic_micro.yaml"]  # no temporaries


def test_copying_an_unknown_config_or_into_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["configs", "copy", "nope", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no shipped config named 'nope'" in err and "synthetic_micro" in err
    assert main(["configs", "copy", "synthetic_micro", str(tmp_path / "missing" / "x.yaml")]) == 2
    assert "output folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
