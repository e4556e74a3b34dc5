"""The trunk tokens of every traced image, computed once and read once per condition.

Kept on the compute device when they fit a memory budget, else spilled to a float32 memmap on
disk (:class:`TokenCache`); :mod:`mosaic.tracing.engine` fills it with the trunk and reads it per condition.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mosaic.core.diskspace import SpaceNeed, require_space, reserve_file, write_errors

__all__ = ["SPILL_FIX", "TokenCache", "default_budget"]

SPILL_FIX = "pass --spill-dir on another disk, or raise --cache-budget to keep them in memory"


class TokenCache:
    """Trunk tokens of every image, written once and read once per condition.

    Kept as one tensor on ``device`` when ``n * T * D`` floats fit ``budget_bytes``; otherwise a
    float32 numpy memmap in a temporary folder (deleted by :meth:`close`), read back chunk by
    chunk. Use as a context manager.
    """

    def __init__(
        self,
        n: int,
        tail: Sequence[int],
        *,
        device: torch.device,
        budget_bytes: float,
        spill_dir: str | os.PathLike | None = None,
    ) -> None:
        self.n, self.tail, self.device = int(n), tuple(int(t) for t in tail), torch.device(device)
        self.nbytes = self.n * math.prod(self.tail) * 4
        self._dir: str | None = None
        self._tensor: torch.Tensor | None = None
        self._memmap: np.memmap | None = None
        if self.nbytes <= budget_bytes:
            self._tensor = torch.empty((self.n, *self.tail), dtype=torch.float32, device=self.device)
        else:
            self._spill(spill_dir)

    def _spill(self, spill_dir: str | os.PathLike | None) -> None:
        """The float32 memmap in a new temporary folder, its blocks allocated before the first write.

        A sparse memmap on a disk that fills up kills the process (SIGBUS) at the first page it
        cannot back; allocated up front, the shortage is one error line before the trunk runs.
        """
        root = Path(spill_dir) if spill_dir is not None else Path(tempfile.gettempdir())
        with write_errors(root, needed=self.nbytes, fix=SPILL_FIX):
            require_space([SpaceNeed(root, self.nbytes, "spilled trunk tokens", SPILL_FIX)])
            root.mkdir(parents=True, exist_ok=True)
            self._dir = tempfile.mkdtemp(prefix="mosaic-trunk-", dir=root)
            try:
                path = os.path.join(self._dir, "tokens.npy")
                self._memmap = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(self.n, *self.tail))
                reserve_file(path, os.path.getsize(path))
            except BaseException:
                self.close()
                raise

    @property
    def spilled(self) -> bool:
        return self._memmap is not None

    def write(self, start: int, tokens: torch.Tensor) -> None:
        stop = start + len(tokens)
        if self._tensor is not None:
            self._tensor[start:stop] = tokens.to(self.device, torch.float32)
        else:
            self._memmap[start:stop] = tokens.detach().float().cpu().numpy()

    def read(self, start: int, stop: int) -> torch.Tensor:
        if self._tensor is not None:
            return self._tensor[start:stop]
        return torch.from_numpy(np.ascontiguousarray(self._memmap[start:stop])).to(self.device)

    def close(self) -> None:
        self._tensor = None
        if self._memmap is not None:
            del self._memmap
            self._memmap = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "TokenCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_budget(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.5 * free
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 4 * 2**30
    return 0.5 * available
