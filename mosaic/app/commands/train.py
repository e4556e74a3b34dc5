"""``mosaic train``: train a ReID model with per-attribute LoRA experts (:func:`mosaic.api.train`, :mod:`mosaic.train.loop`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mosaic.app.commands.options import progress_option

HELP = """Train a ViT ReID model with one LoRA expert per attribute state (oracle-routed).

The recipe is that of the strong ViT baselines: BNNeck, label-smoothed ID loss + batch-hard
triplet loss (margin 0.3), P x K identity sampler, warm-up then cosine/step decay, flip /
pad-crop / random erasing on the training device, bf16 autocast on CUDA. Periodic evaluation on
query/gallery reports mAP and Rank-1 under the 'oracle' and 'none' routers (and 'learned' with
per-group attribute accuracy when the model has a learned router).

\b
Examples:
  mosaic train --config synthetic_micro
  mosaic train -c market1501_clip_vitb16 --set data.root=/data/Market-1501-v15.09.15
  mosaic train --resume runs/synthetic_micro            # continue after Ctrl-C or --stop-at
  torchrun --nproc_per_node 4 -m mosaic train --config market1501_clip_vitb16

\b
Run folder (--out, default runs/<config name>):
  RUN/config.yaml            resolved configuration (all defaults filled in)
  RUN/metrics.jsonl          JSON lines: {"kind": "train", step, lr, loss, id, triplet, attribute}
                             and {"kind": "eval", split, step, router, mAP, rank1, rank5, mINP, ...}
                             (split "val": held-out training ids, eval.val_ids, every eval.every
                             epochs; split "test": query/gallery, once after the last step)
  RUN/checkpoints/last.pt    latest checkpoint (each run.checkpoint_every epochs, Ctrl-C, end);
                             the one to report and trace
  RUN/checkpoints/best.pt    best eval.best_router validation mAP (only with eval.val_ids)
  RUN/images/                decoded-image cache (reused by later runs on the same images)

\b
Exit codes: 0 done; 2 bad input (config, data, checkpoint); 3 the loss became NaN/inf (the
last good checkpoint is kept); 130 Ctrl-C (a checkpoint was written; resume with --resume RUN).
With several processes (torchrun) P x K is per process and only rank 0 writes files.
"""


def train_command(
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="A YAML file or the name of a shipped config (mosaic configs list); required unless --resume.", show_default=False
    ),
    overrides: Optional[List[str]] = typer.Option(
        None,
        "--set",
        "-s",
        help="Override one setting, KEY=VALUE with a dotted key, value parsed as YAML "
        "(--set model.lora_rank=8 --set optim.lr=3e-4). Repeatable. With --resume only run.* and "
        "eval.* settings may change.",
        show_default=False,
    ),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue the run in this folder from its checkpoints/last.pt.", show_default=False
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Run folder (default: run.out, else runs/<config name>).", show_default=False
    ),
    stop_at: Optional[int] = typer.Option(
        None,
        "--stop-at",
        help="Stop after this global step with a checkpoint (to split a run across job time limits); "
        "continue with --resume.",
        show_default=False,
    ),
    progress: bool = progress_option(),
) -> None:
    from mosaic import api

    # Ctrl-C raises TrainingInterrupted (a MosaicError with exit status 130) after the checkpoint
    # is written; the CLI prints its one line with the resume command.
    result = api.train(config, out, resume=resume, overrides=overrides or (), stop_at=stop_at, progress=progress)
    if result.is_main:
        typer.echo(result.summary())


def register(app: typer.Typer) -> None:
    app.command(name="train", help=HELP)(train_command)
