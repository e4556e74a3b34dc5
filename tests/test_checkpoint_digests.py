"""Checkpoint digests: a flipped bit in any tensor is refused naming the file and the tensor, by every
reader (`--resume`, `trace --ckpt`); the SHA-256 beside the file covers the rest."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mosaic.app.cli import main
from mosaic.core.errors import MosaicError
from mosaic.core.fileio import sha256_file
from mosaic.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from mosaic.train.checkpoint_digest import sidecar_path, tensor_digests
from test_train_loop import cfg_factory, config_file, straight_run  # noqa: F401  (fixtures)


def storage_ranges(path: Path) -> dict[str, tuple[int, int]]:
    """Per storage record of a torch zip checkpoint (``archive/data/<key>``), its data's (offset, size) in the file."""
    ranges = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
        for info in archive.infolist():
            if "/data/" in info.filename and info.file_size:
                handle.seek(info.header_offset + 26)
                name_len, extra_len = np.frombuffer(handle.read(4), dtype="<u2")
                ranges[info.filename] = (info.header_offset + 30 + int(name_len) + int(extra_len), info.file_size)
    return ranges


def _differing_tensor(original: dict, path: Path) -> str:
    """The tensor that differs between ``original`` and the file read without any check."""
    damaged = torch.load(path, weights_only=True)
    digests_before, digests_after = tensor_digests(original), tensor_digests(damaged)
    changed = [k for k in digests_before if digests_before[k] != digests_after.get(k)]
    assert len(changed) >= 1
    return changed[0]


@pytest.fixture
def small_checkpoint(tmp_path) -> tuple[Path, dict]:
    generator = torch.Generator().manual_seed(0)
    payload = {
        "model": {"blocks.0.attn.qkv.weight": torch.randn(48, 16, generator=generator),
                  "blocks.0.attn.qkv.bias": torch.randn(48, generator=generator),
                  "head.weight": torch.randn(8, 16, generator=generator).to(torch.bfloat16),
                  "bn.num_batches_tracked": torch.tensor(7)},
        "optimizer": {"state": {0: {"exp_avg": torch.randn(48, 16, generator=generator)}}, "param_groups": [{"lr": 0.1}]},
        "step": 5,
    }
    path = save_checkpoint(tmp_path / "checkpoints" / "last.pt", payload)
    return path, read_checkpoint(path)


def test_a_checkpoint_records_its_digests_inside_and_beside(small_checkpoint):
    path, data = small_checkpoint
    assert set(data["tensor_digests"]) == {"model/blocks.0.attn.qkv.weight", "model/blocks.0.attn.qkv.bias",
                                           "model/head.weight", "model/bn.num_batches_tracked", "optimizer/state/0/exp_avg"}
    assert sidecar_path(path).read_text() == f"{sha256_file(path)}  last.pt\n"  # sha256sum -c reads it


def test_every_flip_in_a_tensor_is_refused_naming_the_tensor(small_checkpoint, tmp_path):
    path, data = small_checkpoint
    pristine = path.read_bytes()
    ranges = storage_ranges(path)
    assert len(ranges) == 5
    rng = np.random.default_rng(1)
    damaged = tmp_path / "damaged" / "last.pt"
    damaged.parent.mkdir()
    flips = 0
    for offset, size in ranges.values():
        for _ in range(12):
            raw = bytearray(pristine)
            raw[offset + int(rng.integers(size))] ^= 1 << int(rng.integers(8))
            damaged.write_bytes(raw)
            tensor = _differing_tensor(data, damaged)
            for sidecar in (False, True):  # with the SHA-256 beside it or without: the tensor is named
                if sidecar:
                    shutil.copyfile(sidecar_path(path), sidecar_path(damaged))
                with pytest.raises(MosaicError, match=rf"^checkpoint {damaged}: tensor {tensor} fails its checksum "
                                                      r"\(stored crc32:\w{8}, computed crc32:\w{8}\): the file is corrupted"):
                    read_checkpoint(damaged)
            sidecar_path(damaged).unlink()
            flips += 1
    assert flips == 60


def test_a_change_outside_the_tensors_fails_the_recorded_sha256(small_checkpoint):
    path, _ = small_checkpoint
    data = torch.load(path, weights_only=True)
    data["step"] = 6  # the same tensors, another counter: what a flip in the pickled part can do
    with open(path, "wb") as handle:
        torch.save(data, handle)
    with pytest.raises(MosaicError, match=r"does not match the SHA-256 recorded in last.pt.sha256 \(every tensor matches"):
        read_checkpoint(path)
    sidecar_path(path).unlink()  # an older checkpoint, or the user's choice: read unchecked beyond the tensors
    assert read_checkpoint(path)["step"] == 6


def test_a_checkpoint_without_digests_still_reads(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": "mosaic-checkpoint", "format_version": 1, "model": {"w": torch.ones(2)}}, path)
    assert read_checkpoint(path)["model"]["w"].sum() == 2


def test_resume_and_trace_refuse_a_flipped_weight(straight_run, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(straight_run, run)
    last = run / "checkpoints" / "last.pt"
    assert load_checkpoint(last).verified == "sha256 and tensor crc32"
    model_entries = [name for name in storage_ranges(last)]
    data = torch.load(last, weights_only=True)
    offset, size = storage_ranges(last)[model_entries[3]]
    raw = bytearray(last.read_bytes())
    raw[offset + size // 2] ^= 0x10
    last.write_bytes(raw)
    tensor = _differing_tensor(data, last)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: checkpoint {last}: tensor {tensor} fails its checksum" in err and err.count("\n") == 1
    assert main(["trace", "--ckpt", str(last), "--out", str(tmp_path / "t.h5"), "-q", "--device", "cpu"]) == 2
    assert f"tensor {tensor} fails its checksum" in capsys.readouterr().err and not (tmp_path / "t.h5").exists()


def test_a_flip_in_any_tensor_of_a_trained_checkpoint_is_refused(straight_run, tmp_path):  # noqa: F811
    """One random bit in each of 60 storage records drawn from a real run's checkpoint (weights,
    optimiser moments, random states), one at a time."""
    last = straight_run / "checkpoints" / "last.pt"
    pristine, ranges = last.read_bytes(), list(storage_ranges(last).values())
    assert len(ranges) > 300
    rng = np.random.default_rng(2)
    damaged = tmp_path / "last.pt"
    for i in rng.choice(len(ranges), 60, replace=False):
        offset, size = ranges[i]
        raw = bytearray(pristine)
        raw[offset + int(rng.integers(size))] ^= 1 << int(rng.integers(8))
        damaged.write_bytes(raw)
        with pytest.raises(MosaicError, match=rf"^checkpoint {damaged}: tensor \S+ fails its checksum"):
            read_checkpoint(damaged)
