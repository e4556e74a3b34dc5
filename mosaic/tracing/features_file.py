"""Reading an external model's exported features: ``.npz`` or HDF5, checked before any use (torch-free).

The file holds four arrays (docs/audit.md shows how to write it from torchreid or fast-reid):

``query_features`` (Q, D) and ``gallery_features`` (G, D)
    one feature vector per image, any float dtype, finite;
``query_names`` (Q,) and ``gallery_names`` (G,)
    the image file names as in the dataset's ``query/`` and ``bounding_box_test/`` folders (a
    leading folder is ignored), unique within each split;

and optionally ``model``, a short name of the model (the condition is named after it unless
``--name`` says otherwise). Every problem is one :class:`MosaicError` line naming the file and the fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mosaic.core.errors import MosaicError
from mosaic.core.fileio import sha256_file

__all__ = ["FEATURE_KEYS", "FeaturesFile", "read_features_file"]

FEATURE_KEYS = ("query_features", "gallery_features", "query_names", "gallery_names")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # a condition name part: no ':' , ',' or wildcard
SPLITS = ("query", "gallery")


@dataclass(frozen=True)
class FeaturesFile:
    """The checked contents of one features file."""

    path: Path
    sha256: str
    model: str                      # the condition's model name
    query_features: np.ndarray      # (Q, D) float32, finite
    gallery_features: np.ndarray    # (G, D) float32, finite
    query_names: np.ndarray         # (Q,) str file names, unique
    gallery_names: np.ndarray       # (G,) str file names, unique

    @property
    def dim(self) -> int:
        return int(self.query_features.shape[1])


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise MosaicError(
                f"features file {path} holds object arrays (pickled): save the names as text arrays, "
                f"e.g. np.savez(..., query_names=np.asarray(names, dtype=str))"
            ) from None
        raise MosaicError(f"features file {path} is not a readable .npz file ({exc}): write it with numpy.savez") from None
    except (OSError, EOFError) as exc:
        raise MosaicError(f"features file {path} is not a readable .npz file ({exc}): write it with numpy.savez") from None


def _load_hdf5(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as h5:
            for key in (*FEATURE_KEYS, "model"):
                if key in h5:
                    ds = h5[key]
                    if not isinstance(ds, h5py.Dataset):
                        raise MosaicError(f"features file {path}: /{key} is a group, not an array: store it as a dataset")
                    out[key] = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
            for key in h5.attrs:
                if key == "model" and "model" not in out:
                    out["model"] = h5.attrs[key]
    except OSError as exc:
        raise MosaicError(f"features file {path} is not a readable HDF5 file ({exc}): write it with h5py") from None
    return out


def _names(raw, key: str, path: Path) -> np.ndarray:
    values = np.asarray(raw)
    if values.ndim != 1:
        raise MosaicError(f"features file {path}: {key} must be one name per image (1-D), got shape {values.shape}")
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8")
    elif values.dtype.kind == "O":
        values = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.tolist()], dtype=str)
    elif values.dtype.kind != "U":
        raise MosaicError(f"features file {path}: {key} must hold image file names (text), got {values.dtype} values")
    # a leading folder ("query/0001_c1s1_000151_01.jpg", an absolute path) names the same file
    return np.array([os.path.basename(str(v).replace("\\", "/")) for v in values.tolist()], dtype=str).reshape(-1)


def _features(raw, key: str, path: Path) -> np.ndarray:
    values = np.asarray(raw)
    if values.ndim != 2:
        raise MosaicError(f"features file {path}: {key} must be a (images, dimensions) matrix, got shape {values.shape}")
    if values.dtype.kind not in "fiu" or values.dtype == bool:
        raise MosaicError(f"features file {path}: {key} must be numbers, got {values.dtype}")
    values = values.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(1))[0])
        n_bad = int((~finite.all(1)).sum())
        raise MosaicError(f"features file {path}: {key} has non-finite values (NaN or inf) in {n_bad} rows, the first "
                          f"at row {row}: export the features again (a failed forward pass, or fp16 overflow)")
    norms = np.linalg.norm(values, axis=1)
    if values.shape[0] and not (norms > 0).all():
        row = int(np.flatnonzero(~(norms > 0))[0])
        raise MosaicError(f"features file {path}: {key} row {row} is all zeros, which has no direction to compare: "
                          f"export the features again")
    return values


def read_features_file(path: str | os.PathLike, name: str | None = None) -> FeaturesFile:
    """Read and check one features file; ``name`` overrides the file's ``model`` entry and the file stem."""
    path = Path(path)
    if not path.is_file():
        raise MosaicError(f"features file {path} does not exist: pass the .npz or .h5 file the model's features were saved to")
    with open(path, "rb") as handle:
        magic = handle.read(8)
    if magic.startswith(b"PK"):
        raw = _load_npz(path)
    elif magic == b"\x89HDF\r\n\x1a\n":
        raw = _load_hdf5(path)
    else:
        raise MosaicError(f"features file {path} is neither .npz nor HDF5: save it with numpy.savez or h5py (docs/audit.md)")
    missing = [key for key in FEATURE_KEYS if key not in raw]
    if missing:
        raise MosaicError(f"features file {path} lacks {', '.join(missing)} (it holds {', '.join(sorted(raw)) or 'nothing'}): "
                          f"it needs {', '.join(FEATURE_KEYS)} (docs/audit.md)")
    features = {s: _features(raw[f"{s}_features"], f"{s}_features", path) for s in SPLITS}
    names = {s: _names(raw[f"{s}_names"], f"{s}_names", path) for s in SPLITS}
    for s in SPLITS:
        if len(names[s]) != features[s].shape[0]:
            raise MosaicError(f"features file {path}: {s}_features has {features[s].shape[0]} rows but {s}_names "
                              f"{len(names[s])} names: save one name per feature row, in the same order")
        unique, counts = np.unique(names[s], return_counts=True)
        if (counts > 1).any():
            twice = unique[counts > 1]
            raise MosaicError(f"features file {path}: {s}_names repeats {len(twice)} names (e.g. {twice[0]!r}): "
                              f"save each image once")
    if features["query"].shape[1] != features["gallery"].shape[1]:
        raise MosaicError(f"features file {path}: query features have {features['query'].shape[1]} dimensions but gallery "
                          f"features {features['gallery'].shape[1]}: export both with the same model and layer")
    model = name if name is not None else (str(np.asarray(raw["model"]).reshape(-1)[0]) if "model" in raw else path.stem)
    if isinstance(model, bytes):
        model = model.decode("utf-8")
    if not MODEL_NAME.match(model):
        raise MosaicError(f"model name {model!r} (of {path}) is not a valid condition name: use letters, digits and "
                          f"_ . + - only (--name)")
    return FeaturesFile(path=path, sha256=sha256_file(path), model=model,
                        query_features=features["query"], gallery_features=features["gallery"],
                        query_names=names["query"], gallery_names=names["gallery"])
