"""Config validation: unknown keys and wrong types are errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mosaic.core.errors import MosaicError
from mosaic.configs import shipped_config, shipped_configs
from mosaic.train.config import TrainConfig, load_config, parse_override



def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_round_trip_through_yaml_dict():
    cfg = TrainConfig()
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.model.backbone == cfg.model.backbone


def test_unknown_key_is_named_with_the_closest_valid_key(tmp_path):
    path = write(tmp_path, "optim:\n  learning_rate: 0.1\n  lr_: 1\n")
    with pytest.raises(MosaicError, match=r"unknown key 'learning_rate' in optim"):
        load_config(path)
    with pytest.raises(MosaicError, match=r"'lr_' in optim: did you mean 'lr'"):
        load_config(write(tmp_path, "optim:\n  lr_: 1\n"))
    with pytest.raises(MosaicError, match=r"'sampeler' in the config: did you mean 'sampler'"):
        load_config(write(tmp_path, "sampeler:\n  p: 4\n"))
    with pytest.raises(MosaicError, match=r"'lora_rnk' in model: did you mean 'lora_rank'"):
        load_config(write(tmp_path, "model:\n  lora_rnk: 4\n"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("sampler:\n  p: four\n", r"sampler.p must be an integer, got 'four'"),
        ("optim:\n  lr: fast\n", r"optim.lr must be a number"),
        ("run:\n  amp: 3\n", r"run.amp must be true or false"),
        ("optim:\n  schedule: cosin\n", r"optim.schedule must be one of .*did you mean 'cosine'"),
        ("augment:\n  erase_area: [0.1]\n", r"augment.erase_area must have 2 values"),
        ("model:\n  lora_rank: 2.5\n", r"model.lora_rank must be an integer"),
        ("eval:\n  routers: [oracle, psychic]\n", r"eval.routers has unknown router 'psychic'"),
        ("optim: 3\n", r"optim must be a mapping"),
    ],
)
def test_wrong_types_name_the_key(tmp_path, text, message):
    with pytest.raises(MosaicError, match=message):
        load_config(write(tmp_path, text))


def test_set_overrides_are_type_checked_and_named():
    cfg = load_config(None, ["model.lora_rank=8", "optim.lr=3e-4", "eval.routers=[oracle,none]", "data.format=manifest"])
    assert cfg.model.lora_rank == 8 and cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.eval.routers == ("oracle", "none") and cfg.data.format == "manifest"
    with pytest.raises(MosaicError, match=r"--set model.lora_rnk: unknown key 'lora_rnk' in model: did you mean 'lora_rank'"):
        load_config(None, ["model.lora_rnk=8"])
    with pytest.raises(MosaicError, match=r"model.lora_rank must be an integer, got 'eight'"):
        load_config(None, ["model.lora_rank=eight"])
    with pytest.raises(MosaicError, match=r"not key=value"):
        load_config(None, ["model.lora_rank"])
    with pytest.raises(MosaicError, match=r"--set sampler: sampler is a section"):
        load_config(None, ["sampler=3"])
    with pytest.raises(MosaicError, match=r"optim.lr is a value, not a section"):
        load_config(None, ["optim.lr.x=3"])


def test_override_values_parse_as_yaml():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a.b=null") == ("a.b", None)
    assert parse_override("a.b=") == ("a.b", None)


def test_cross_field_checks():
    with pytest.raises(MosaicError, match="sampler.k must be at least 2"):
        load_config(None, ["sampler.k=1"])
    with pytest.raises(MosaicError, match="label_smoothing"):
        load_config(None, ["loss.label_smoothing=1.5"])


@pytest.mark.parametrize("name", [config.name for config in shipped_configs()])
def test_shipped_configs_validate(name):
    cfg = load_config(name)
    assert cfg.sampler.p * cfg.sampler.k == 64
    assert cfg.loss.triplet_margin == pytest.approx(0.3)


def test_cli_reports_config_errors_as_one_line(tmp_path, capsys):
    from mosaic.app.cli import main

    path = write(tmp_path, "optim:\n  lrr: 0.1\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "error: unknown key 'lrr' in optim: did you mean 'lr'?" in err
    assert "Traceback" not in err
    assert main(["train", "--config", "synthetic_micro", "--set", "optim.lr=fast"]) == 2
    assert "optim.lr must be a number" in capsys.readouterr().err


def test_duke_micro_config_is_the_market_micro_recipe_on_other_data():
    """The two CPU demos differ in their data only, so their numbers compare the datasets."""
    import yaml

    market = yaml.safe_load(shipped_config("synthetic_micro").path.read_text())
    duke = yaml.safe_load(shipped_config("synthetic_micro_duke").path.read_text())
    assert duke.pop("data") != market.pop("data")
    assert duke == market
