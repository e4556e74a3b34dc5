"""Query or gallery images as the tracer reads them: decoded tensors plus what the trace records."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["ImageSet", "relative_path"]


@dataclass
class ImageSet:
    """Query or gallery images with what the trace records about them.

    Attributes:
        images: ``(N, 3, H, W)`` uint8 at the model's input size (or normalised float).
        pid, camid: ``(N,)`` int64.
        path: ``(N,)`` str, relative to the dataset root where possible.
        states: ``(N, G)`` int16 state codes, ``-1`` = missing.
    """

    images: torch.Tensor
    pid: np.ndarray
    camid: np.ndarray
    path: np.ndarray
    states: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        self.pid = np.asarray(self.pid, dtype=np.int64)
        self.camid = np.asarray(self.camid, dtype=np.int64)
        self.path = np.asarray(self.path, dtype=str).reshape(-1) if n else np.zeros(0, dtype="<U1")
        self.states = np.asarray(self.states, dtype=np.int16).reshape(n, -1)
        if not (len(self.pid) == len(self.camid) == len(self.path) == len(self.states) == n):
            raise ValueError(
                f"ImageSet arrays disagree in length: images {n}, pid {len(self.pid)}, camid {len(self.camid)}, "
                f"path {len(self.path)}, states {len(self.states)}"
            )

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_dataset(
        cls,
        dataset,
        split: str,
        size: Sequence[int],
        *,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> "ImageSet":
        """Decode one split of a :class:`mosaic.data.ReIDDataset` at ``size = (H, W)``."""
        from mosaic.data.images import load_image_tensor

        table = dataset.split(split)
        images = load_image_tensor(table["path"].tolist(), size, cache_dir=cache_dir, progress=progress)
        return cls(
            images=images,
            pid=table["pid"].to_numpy(),
            camid=table["camid"].to_numpy(),
            path=np.array([relative_path(p, dataset.root) for p in table["path"].tolist()], dtype=str),
            states=dataset.states(split),
        )


def relative_path(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)
