"""Checkpoints: everything needed to resume a run exactly, and to rebuild the model for inference.

A checkpoint is a ``torch.save`` dict with ``format = "mosaic-checkpoint"`` and:

* ``model`` (state dict), ``optimizer``, ``scheduler``, ``sampler`` states;
* ``rng``: Python, NumPy and torch (CPU and CUDA) generator states, and the augmentation
  generator's state, so that a resumed run draws the same numbers as an uninterrupted one;
* ``step`` (optimizer steps done), ``epoch``, ``total_steps``, ``finished``;
* ``config`` (the resolved :class:`~mosaic.train.config.TrainConfig` as a dict);
* ``schema`` (dict) and ``schema_fingerprint``, ``num_classes``, ``class_pids`` (the dataset pid
  of each classifier row), ``best`` (the best evaluation so far), ``mosaic_version``;
* ``state_shares``: per group, each state's share among the training identities (the fixed
  gates, :mod:`mosaic.conditions.state_shares`); absent from checkpoints of older mosaic versions;
* ``tensor_digests``: the CRC-32 of every tensor above, and beside the file ``<name>.pt.sha256``,
  its SHA-256 (:mod:`mosaic.train.checkpoint_digest`): every read verifies both, so a flipped bit
  in the weights is refused naming the tensor instead of being trained on or traced.

Files are written through :func:`mosaic.core.fileio.atomic_path`, so an interruption while saving
leaves the previous checkpoint intact. Loading uses ``weights_only=True``: only tensors and plain
Python containers are accepted, so a checkpoint cannot run code.
"""

from __future__ import annotations

import dataclasses
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from mosaic.core.diskspace import DEFAULT_FIX
from mosaic.core.errors import MosaicError
from mosaic.core.fileio import atomic_path, sha256_file
from mosaic.core.schema import AttributeSchema
from mosaic.train.config import TrainConfig

FORMAT = "mosaic-checkpoint"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- RNG state


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch global generator states as checkpoint-safe values."""
    version, mt_state, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["key"].numpy().astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


# ----------------------------------------------------------------------------- write / read


def save_checkpoint(path: str | Path, payload: Mapping[str, Any], *, fix: str = DEFAULT_FIX) -> Path:
    """Write ``payload`` (see the module docstring) atomically, stamped with the format marker.

    A write that fails (a full disk) is one :class:`MosaicError` line ending in ``fix``, and the
    previous file at ``path`` is left as it was.
    """
    from mosaic import __version__

    from mosaic.train.checkpoint_digest import DIGESTS_KEY, tensor_digests, write_sidecar

    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "mosaic_version": __version__, **payload}
    data[DIGESTS_KEY] = tensor_digests(data)
    path = Path(path)
    with atomic_path(path, create_parent=True, fix=fix) as tmp:
        # into a Python file, not a path: torch's own file writer reports a full disk as a bare
        # "unexpected pos" RuntimeError, while through Python the OSError that says why is kept
        with open(tmp, "wb") as handle:
            torch.save(data, handle)
    write_sidecar(path, fix=fix)
    return path


# Bytes a checkpoint holds beside the tensors: configuration, schema, random states, zip entries.
CHECKPOINT_EXTRA_BYTES = 256 * 2**10
ZIP_ENTRY_BYTES = 256  # per tensor: its zip headers and alignment
OPTIMIZER_SLOTS = 2    # state tensors per trainable parameter, at most (Adam's two moments; SGD keeps one or none)


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """An upper bound of a training checkpoint's size: ``model``'s state plus the optimiser's.

    Known before the first step (the optimiser creates its state lazily), so a run that could not
    write its checkpoints is refused before it trains.
    """
    state = unwrap_model(model).state_dict()
    tensors = [t for t in state.values() if isinstance(t, torch.Tensor)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    nbytes += OPTIMIZER_SLOTS * sum(p.numel() * p.element_size() for p in trainable)
    return nbytes + ZIP_ENTRY_BYTES * (len(tensors) + OPTIMIZER_SLOTS * len(trainable)) + CHECKPOINT_EXTRA_BYTES


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, verified against its digests; bad files raise :class:`MosaicError` naming the problem."""
    return read_verified_checkpoint(path, map_location)[0]


def read_verified_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], str, str]:
    """The checkpoint dict, the SHA-256 of its file and what was verified (:func:`~mosaic.train.checkpoint_digest.verify_checkpoint`).

    A tensor that fails its digest, or a file that fails the SHA-256 recorded beside it, is one
    :class:`MosaicError` line naming the file and the tensor.
    """
    from mosaic.train.checkpoint_digest import verify_checkpoint

    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / "last.pt"
        if not candidate.is_file():
            raise MosaicError(f"{path} is a folder without checkpoints/last.pt: pass a .pt file or a run folder")
        path = candidate
    if not path.is_file():
        raise MosaicError(f"checkpoint {path} does not exist: pass RUN/checkpoints/last.pt or best.pt")
    if not zipfile.is_zipfile(path):
        raise MosaicError(
            f"cannot read checkpoint {path}: the file is truncated or not a torch checkpoint; "
            "use another checkpoint (e.g. RUN/checkpoints/best.pt) or retrain"
        )
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip members missing, unpickling refused, ...: all mean "unusable file"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MosaicError(f"cannot read checkpoint {path} ({first[:160]}): the file is damaged or not a mosaic checkpoint") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise MosaicError(f"{path} is not a mosaic checkpoint (no '{FORMAT}' marker): pass a file written by mosaic train")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise MosaicError(
            f"checkpoint {path} has format version {data['format_version']}, newer than this mosaic "
            f"(reads up to {FORMAT_VERSION}): upgrade mosaic"
        )
    sha256 = sha256_file(path)
    verified = verify_checkpoint(path, data, sha256)
    return data, sha256, verified


def check_compatible(
    data: Mapping[str, Any],
    path: str | Path,
    *,
    schema: AttributeSchema | None = None,
    backbone: str | None = None,
) -> None:
    """Refuse a checkpoint whose attribute schema or backbone differs from what the caller uses."""
    if schema is not None and data["schema_fingerprint"] != schema.fingerprint():
        ckpt_schema = AttributeSchema.from_dict(data["schema"])
        raise MosaicError(
            f"checkpoint {path} was trained with attribute schema {ckpt_schema.name!r} "
            f"(fingerprint {data['schema_fingerprint']}) but the data uses {schema.name!r} "
            f"(fingerprint {schema.fingerprint()}): use a checkpoint trained on this schema"
        )
    if backbone is not None:
        ckpt_backbone = data["config"]["model"].get("backbone")
        if ckpt_backbone != backbone:
            raise MosaicError(
                f"checkpoint {path} has backbone {ckpt_backbone!r} but the config asks for {backbone!r}: "
                "use a matching checkpoint or set model.backbone to match"
            )


# ----------------------------------------------------------------------------- inference loading


@dataclass
class LoadedCheckpoint:
    """A trained model ready for inference, with what it was trained on."""

    model: torch.nn.Module  # MosaicReID in eval mode
    config: TrainConfig
    schema: AttributeSchema
    step: int
    epoch: int
    sha256: str
    path: Path
    num_classes: int
    class_pids: tuple[int, ...]
    finished: bool
    best: dict[str, Any] | None
    verified: str = "none"  # the digests checked on loading: "sha256 and tensor crc32", or "none" (an older file)


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    schema: AttributeSchema | None = None,
    backbone: str | None = None,
) -> LoadedCheckpoint:
    """Rebuild the trained model from a checkpoint for inference (the tracer's entry point).

    ``path`` is a ``.pt`` file or a run folder (its ``checkpoints/last.pt``). Pass ``schema``
    (the dataset's) and/or ``backbone`` to refuse a checkpoint trained on something else.
    Raises :class:`MosaicError` for a missing, truncated, foreign or incompatible file.
    """
    from mosaic.model import build_model

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    data, sha256, verified = read_verified_checkpoint(path, map_location)
    check_compatible(data, path, schema=schema, backbone=backbone)
    ckpt_schema = AttributeSchema.from_dict(data["schema"])
    config = TrainConfig.from_dict(data["config"])
    # The weights come from the checkpoint: never fetch or read the pretrained backbone again.
    model_config = dataclasses.replace(config.model, pretrained=False, pretrained_file=None)
    model = build_model(model_config, ckpt_schema, int(data["num_classes"]))
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise MosaicError(
            f"checkpoint {path} does not match the model its config describes ({first}): "
            "it was written by an incompatible mosaic version"
        ) from None
    if data.get("state_shares") is not None:
        model.set_state_shares(data["state_shares"])
    model.to(map_location).eval()
    return LoadedCheckpoint(
        model=model,
        config=config,
        schema=ckpt_schema,
        step=int(data["step"]),
        epoch=int(data["epoch"]),
        sha256=sha256,
        path=path,
        num_classes=int(data["num_classes"]),
        class_pids=tuple(int(p) for p in data["class_pids"]),
        finished=bool(data.get("finished", False)),
        best=data.get("best"),
        verified=verified,
    )
