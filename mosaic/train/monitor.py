"""A training run's log: ``metrics.jsonl`` lines, mirrored to TensorBoard when it is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mosaic.core.diskspace import write_errors
from mosaic.core.fileio import write_text_atomic

__all__ = ["MetricsLog"]


class MetricsLog:
    """Appends one JSON object per line to ``path`` (main process only: ``enabled``)."""

    def __init__(self, path: Path, *, enabled: bool = True) -> None:
        self.path, self.enabled = Path(path), enabled
        self.tensorboard = None

    def open_tensorboard(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package
        except Exception:
            return
        self.tensorboard = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        # a line cut short by a full disk is dropped when the run resumes (see truncate)
        fix = f"move the run to another disk; `mosaic train --resume {self.path.parent}` continues from its last checkpoint"
        with write_errors(self.path, fix=fix), open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, allow_nan=True) + "\n")
        if self.tensorboard is not None:
            prefix = record["kind"] if record["kind"] != "eval" else f"eval/{record.get('router')}"
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.tensorboard.add_scalar(f"{prefix}/{key}", value, record["step"])

    def flush(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def truncate(self, step: int) -> None:
        """Drop log lines written after the checkpoint at ``step``, so a resumed log continues seamlessly."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the interruption
            if int(record.get("step", 0)) <= step:
                kept.append(line)
        write_text_atomic(self.path, "".join(f"{line}\n" for line in kept))
