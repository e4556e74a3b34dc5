"""The training loop on a tiny synthetic world: exact resume, Ctrl-C, NaN, checkpoints, CLI."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from mosaic.core.errors import MosaicError
from mosaic.train.checkpoint import load_checkpoint, read_checkpoint
from mosaic.train.config import load_config
from mosaic.train.loop import Trainer, TrainingDiverged

LOSS_KEYS = ("step", "lr", "loss", "id", "triplet", "attribute")


def tiny_overrides(world: Path, cache: Path, **extra) -> list[str]:
    settings = {
        "data.root": str(world),
        "data.cache_dir": str(cache),
        "model.backbone": "vit_micro",
        "model.expert_blocks": 2,
        "model.learned_router": True,
        "model.lora_dropout": 0.1,  # exercises the global torch RNG across a resume
        "model.drop_path": 0.1,
        "routing.group_dropout": 0.3,  # draws from the augmentation stream, also across a resume
        "routing.fixed_prob": 0.2,  # so do the fixed-gate routes
        "routing.all_off_prob": 0.1,  # and the all-off samples
        "sampler.p": 4,
        "sampler.k": 4,
        "optim.steps": 8,
        "optim.warmup_steps": 2,
        "run.seed": 3,
        "run.device": "cpu",
        "run.threads": 1,
        "run.log_every": 2,
        "run.checkpoint_every": 1,
        "eval.batch_size": 64,
    }
    settings.update(extra)
    return [f"{k}={v}" for k, v in settings.items()]


@pytest.fixture(scope="module")
def cfg_factory(tiny_world, tmp_path_factory):
    cache = tmp_path_factory.mktemp("image_cache")

    def make(**extra):
        return load_config(None, tiny_overrides(tiny_world, cache, **extra))

    return make


@pytest.fixture(scope="module")
def config_file(cfg_factory, tmp_path_factory) -> Path:
    from mosaic.core.fileio import write_text_atomic

    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    write_text_atomic(path, cfg_factory().to_yaml())
    return path


@pytest.fixture(scope="module")
def straight_run(config_file, tmp_path_factory) -> Path:
    """The reference: the tiny config trained in one go through the command line."""
    from mosaic.app.cli import main

    run = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", "--config", str(config_file), "--out", str(run), "--no-progress"]) == 0
    return run


def ckpt_train_ids(cfg) -> tuple[int, ...]:
    from mosaic.data import load_dataset

    pids = load_dataset(cfg.data.root).split("train")["pid"]
    return tuple(sorted(int(p) for p in set(pids) if p > 0))


def loss_lines(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: r[k] for k in LOSS_KEYS} for r in lines if r["kind"] == "train"]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in read_checkpoint(path)["model"].items() if isinstance(v, torch.Tensor)}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_resume_gives_the_weights_and_losses_of_an_uninterrupted_run(cfg_factory, straight_run, tmp_path):
    straight = straight_run
    split = tmp_path / "split"
    first = Trainer(cfg_factory(), split, progress=False).fit(stop_at=4)
    assert first.step == 4 and not first.finished
    assert read_checkpoint(split / "checkpoints" / "last.pt")["step"] == 4
    second = Trainer(cfg_factory(), split, resume=True, progress=False).fit()
    assert second.finished and second.step == 8

    assert_same_weights(straight / "checkpoints" / "last.pt", split / "checkpoints" / "last.pt")
    assert loss_lines(straight) == loss_lines(split)
    assert [r["step"] for r in loss_lines(split)] == [2, 4, 6, 8]


def test_ctrl_c_checkpoints_and_the_cli_resumes_it(config_file, straight_run, tmp_path, monkeypatch, capsys):
    from mosaic.app.cli import main

    straight = straight_run
    original = Trainer.train_step

    def interrupting(self, indices):
        out = original(self, indices)
        if self.step == 2:  # the third step: Ctrl-C arrives in the middle of it
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(Trainer, "train_step", interrupting)
    run = tmp_path / "interrupted"
    assert main(["train", "--config", str(config_file), "--out", str(run), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 3" in err and f"mosaic train --resume {run}" in err
    assert read_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    monkeypatch.setattr(Trainer, "train_step", original)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert_same_weights(straight / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    assert loss_lines(straight) == loss_lines(run)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(cfg_factory, tmp_path):
    run = tmp_path / "nan"
    trainer = Trainer(cfg_factory(**{"optim.steps": 12}), run, progress=False)
    assert trainer.steps_per_epoch == 3  # checkpoints after steps 3 and 6
    real_loss = trainer.loss_fn

    def poisoned(output, labels, states):
        terms = real_loss(output, labels, states)
        if trainer.step == 7:  # the eighth step
            terms.total = terms.total * float("nan")
        return terms

    trainer.loss_fn = poisoned
    with pytest.raises(TrainingDiverged, match=r"became nan at step 8; the last good checkpoint .*step 6\)") as info:
        trainer.fit()
    assert info.value.exit_code == 3 and info.value.step == 8
    assert read_checkpoint(run / "checkpoints" / "last.pt")["step"] == 6
    assert [r["step"] for r in loss_lines(run)] == [2, 4, 6]  # nothing logged from the bad window


def test_cli_run_writes_the_documented_layout_and_a_loadable_checkpoint(cfg_factory, config_file, straight_run, capsys):
    from mosaic.app.cli import main
    from mosaic.core.fileio import sha256_file

    run = straight_run
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoints" / "best.pt").exists()  # nothing to select on without a validation split
    cfg = cfg_factory()
    assert any(Path(cfg.data.cache_dir).glob("images-128x64-*.npy"))  # the decoded-image cache
    evals = {r["router"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "eval"}
    assert set(evals) == {"oracle", "none", "learned"}
    assert 0.0 <= evals["oracle"]["mAP"] <= 1.0 and "upcolour" in evals["learned"]["attribute_accuracy"]
    expected = cfg.to_dict()
    expected["run"]["out"] = str(run)
    assert load_config(run / "config.yaml").to_dict() == expected

    best = run / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(best)
    assert not ckpt.model.training and ckpt.step == 8 and ckpt.finished
    assert ckpt.sha256 == sha256_file(best)
    assert ckpt.schema.fingerprint() == read_checkpoint(best)["schema_fingerprint"]
    train_ids = ckpt_train_ids(cfg)
    assert ckpt.num_classes == len(train_ids) and ckpt.class_pids == train_ids
    assert load_checkpoint(run).step == 8  # a run folder means its last.pt
    # the fixed gates travel with the checkpoint: each group's training state shares, summing to 1
    shares = ckpt.model.state_shares
    assert set(shares) == set(ckpt.schema.group_names) and all(abs(sum(v) - 1) < 1e-6 for v in shares.values())
    assert read_checkpoint(best)["state_shares"] == shares and ckpt.model.routers["oracle"].has_fixed_gates

    # A second run into the same folder must not silently overwrite it.
    assert main(["train", "--config", str(config_file), "--out", str(run), "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    # Resuming may change how a run executes, never what it learns.
    assert main(["train", "--resume", str(run), "--set", "optim.lr=1"]) == 2
    assert "cannot change when resuming" in capsys.readouterr().err


@pytest.fixture
def finished_checkpoint(straight_run) -> Path:
    return straight_run / "checkpoints" / "last.pt"


def test_checkpoint_from_another_schema_or_backbone_is_refused(finished_checkpoint):
    from mosaic.core.schema import load_schema

    ckpt = load_checkpoint(finished_checkpoint)
    other = load_schema("dukemtmc") if ckpt.schema.name != "dukemtmc" else load_schema("market1501")
    with pytest.raises(MosaicError, match="attribute schema .* use a checkpoint trained on this schema"):
        load_checkpoint(finished_checkpoint, schema=other)
    with pytest.raises(MosaicError, match="backbone 'vit_micro' but the config asks for 'clip_vit_b16'"):
        load_checkpoint(finished_checkpoint, backbone="clip_vit_b16")
    assert load_checkpoint(finished_checkpoint, schema=ckpt.schema, backbone="vit_micro").step == 8


def test_truncated_or_foreign_files_are_refused(finished_checkpoint, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(finished_checkpoint.read_bytes()[: finished_checkpoint.stat().st_size // 2])
    with pytest.raises(MosaicError, match="truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(MosaicError, match="not a mosaic checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(MosaicError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_training_never_reads_the_test_split_and_selects_on_held_out_identities(cfg_factory, tmp_path, monkeypatch):
    """Query and gallery are read only after the last step; evaluations before it use held-out train ids."""
    from mosaic.data.dataset import ReIDDataset

    trainer_of: dict[str, Trainer] = {}
    reads: list[tuple[str, int | None]] = []
    original_split = ReIDDataset.split

    def watched_split(self, name):
        if name in ("query", "gallery"):
            trainer = trainer_of.get("it")
            reads.append((name, None if trainer is None else trainer.step))
        return original_split(self, name)

    monkeypatch.setattr(ReIDDataset, "split", watched_split)
    cfg = cfg_factory(**{"eval.val_ids": 2, "eval.every": 1, "optim.steps": 6})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer_of["it"] = trainer
    assert not reads, "the test split was read while building the run"
    test_paths = set(original_split(trainer.dataset, "query")["path"]) | set(original_split(trainer.dataset, "gallery")["path"])
    loaded: list[tuple[int, bool]] = []
    load = trainer._load_images

    def watched_load(paths, bar):
        loaded.append((trainer.step, bool(set(paths) & test_paths)))
        return load(paths, bar)

    trainer._load_images = watched_load
    result = trainer.fit()
    end = trainer.total_steps
    assert result.finished and end == 6 and trainer.steps_per_epoch < end
    assert reads and all(step == end for _, step in reads), f"test split read during training: {reads}"
    assert all(step == end for step, touches_test in loaded if touches_test)

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    val_steps = sorted({r["step"] for r in evals if r["split"] == "val"})
    assert len(val_steps) >= 2 and val_steps[0] < end  # evaluations did run mid-training, on validation
    assert {r["step"] for r in evals if r["split"] == "test"} == {end}
    held = set(trainer.validation.held_out_pids.tolist())
    assert len(held) == 2 and not held & set(trainer.class_pids.tolist())
    assert set(trainer.validation.query["pid"]) <= held
    best = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["best"]
    assert best["step"] in val_steps  # chosen on validation, never on the test split
