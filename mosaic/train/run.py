"""A training run's folder and arguments: where its files live, how ``--config``/``--resume``/``--set``
resolve to a configuration, and what a finished (or stopped) run reports.

Torch-free (the checkpoint is read only when resuming), so the library API and the command line
can resolve a run before the training stack is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic.core.errors import MosaicError
from mosaic.train.config import TrainConfig

__all__ = ["RESUMABLE_OVERRIDES", "RunPaths", "TrainResult", "resolve_run"]


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    total_steps: int
    finished: bool
    last_eval: dict[str, dict[str, Any]] | None
    checkpoint: Path | None
    seconds: float
    is_main: bool = True  # False on the other processes of a torchrun job (they write nothing)

    def summary(self) -> str:
        """What ``mosaic train`` prints when it ends: state, time, and the final test-split metrics."""
        state = "finished" if self.finished else f"stopped at step {self.step} of {self.total_steps}"
        lines = [f"{state} in {self.seconds:.0f}s; run folder {self.run_dir}"]
        if self.finished and self.last_eval:
            lines.append("test split (query/gallery), final model:")
        for router, metrics in (self.last_eval or {}).items():
            if "mAP" in metrics:
                lines.append(
                    f"  {router:8s} mAP {100 * metrics['mAP']:5.1f}  Rank-1 {100 * metrics.get('rank1', float('nan')):5.1f}"
                    f"  mINP {100 * metrics['mINP']:5.1f}"
                )
            if "attribute_accuracy_mean" in metrics:
                lines.append(f"  {'':8s} learned-router attribute accuracy {100 * metrics['attribute_accuracy_mean']:5.1f}% (mean over groups)")
        if not self.finished:
            lines.append(f"continue with: mosaic train --resume {self.run_dir}")
        return "\n".join(lines)


class RunPaths:
    """File names inside a run directory (see the module docstring)."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir)
        self.config = self.root / "config.yaml"
        self.metrics = self.root / "metrics.jsonl"
        self.checkpoints = self.root / "checkpoints"
        self.last = self.checkpoints / "last.pt"
        self.best = self.checkpoints / "best.pt"
        self.images = self.root / "images"



# Settings that may change when resuming: how the run executes and evaluates, never what it learns.
RESUMABLE_OVERRIDES = ("run.device", "run.log_every", "run.checkpoint_every", "run.threads", "run.cache_on_device",
                       "run.compile", "run.cuda_graphs", "run.amp", "run.find_unused_parameters",
                       "run.stop_signals", "eval.")


def resolve_run(
    config_path: str | Path | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    *,
    resume: str | Path | None = None,
    out: str | Path | None = None,
) -> tuple[TrainConfig, Path, bool]:
    """The config, run directory and resume flag for ``mosaic train`` arguments.

    A fresh run reads ``config_path`` plus ``overrides``; its folder is ``out``, else
    ``run.out``, else ``runs/<config file stem>``. A resumed run takes the configuration stored in
    ``RESUME/checkpoints/last.pt`` and accepts only overrides that do not change what is learned
    (:data:`RESUMABLE_OVERRIDES`).
    """
    from mosaic.train.checkpoint import read_checkpoint
    from mosaic.train.config import load_config, parse_override

    if resume is not None:
        run_dir = Path(resume)
        last = RunPaths(run_dir).last
        if not last.is_file():
            raise MosaicError(f"nothing to resume in {run_dir}: no checkpoints/last.pt there (pass the run folder)")
        if out is not None and Path(out).resolve() != run_dir.resolve():
            raise MosaicError("--out and --resume name different folders: a resumed run continues in its own folder")
        for item in overrides:
            key = parse_override(item)[0]
            resumable = any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_OVERRIDES)
            if not resumable or key == "eval.val_ids":  # the held-out identities are not trained on
                raise MosaicError(
                    f"--set {key} cannot change when resuming (it would change what the run learns): "
                    "start a new run with --config instead"
                )
        stored = read_checkpoint(last)["config"]
        config = load_config(None, overrides, base=stored)
        return config, run_dir, True
    if config_path is None:
        raise MosaicError("pass --config FILE or a shipped config name (mosaic configs list) for a new run, or --resume RUN to continue one")
    config = load_config(config_path, overrides)
    if out is not None:
        config.run.out = str(out)
    run_dir = Path(config.run.out) if config.run.out else Path("runs") / Path(config_path).stem
    config.run.out = str(run_dir)
    return config, run_dir, False
