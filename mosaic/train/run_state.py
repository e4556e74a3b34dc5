"""What a run's checkpoint holds and how a resumed run takes it back (exact resume, see :mod:`mosaic.train.loop`).

Model, optimiser, scheduler and sampler states, every process's random streams and pending loss
window, the configuration, the schema and the training identities; :func:`restore_run` refuses a
checkpoint whose schema or identities differ from the data it resumes on.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from mosaic.core.diskspace import SpaceNeed
from mosaic.core.errors import MosaicError
from mosaic.train.checkpoint import capture_rng_state, checkpoint_bytes, read_checkpoint, restore_rng_state, unwrap_model

__all__ = ["checkpoint_fix", "checkpoint_payload", "restore_run", "space_needs"]

RUN_FIX = "start the run with --out on another disk"


def checkpoint_payload(trainer, finished: bool) -> dict[str, Any]:
    """Everything ``trainer`` (a :class:`mosaic.train.loop.Trainer`) needs to continue exactly; collective in DDP."""
    rng = {
        "global": capture_rng_state(),
        "augment": trainer.augment_generator.get_state(),
        "window": torch.stack(trainer._window).cpu() if trainer._window else None,
    }
    all_rng = [rng]
    if trainer.dist.enabled:
        import torch.distributed as tdist

        all_rng = [None] * trainer.dist.world_size
        tdist.all_gather_object(all_rng, rng)
    return {
        "model": unwrap_model(trainer.model).state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "sampler": trainer.sampler.state_dict(),
        "rng": all_rng,
        "step": trainer.step,
        "epoch": trainer.step // trainer.steps_per_epoch,
        "total_steps": trainer.total_steps,
        "steps_per_epoch": trainer.steps_per_epoch,
        "finished": finished,
        "config": trainer.config.to_dict(),
        "schema": trainer.schema.to_dict(),
        "schema_fingerprint": trainer.schema.fingerprint(),
        "num_classes": len(trainer.class_pids),
        "class_pids": trainer.class_pids.tolist(),
        "state_shares": unwrap_model(trainer.model).state_shares,
        "best": trainer.best,
        "last_eval": trainer.last_eval,
        "world_size": trainer.dist.world_size,
    }


def restore_run(trainer) -> None:
    """Load ``trainer``'s ``checkpoints/last.pt`` into it: weights, optimiser, schedule, sampler, random streams."""
    if not trainer.paths.last.is_file():
        raise MosaicError(f"nothing to resume in {trainer.paths.root}: no checkpoints/last.pt there")
    data = read_checkpoint(trainer.paths.last, map_location="cpu")
    if data["schema_fingerprint"] != trainer.schema.fingerprint():
        raise MosaicError(
            f"cannot resume {trainer.paths.root}: its checkpoint was trained on attribute schema "
            f"{data['schema']['name']!r} but data.root now gives {trainer.schema.name!r}: point data.root back at the run's dataset"
        )
    if list(data["class_pids"]) != trainer.class_pids.tolist():
        raise MosaicError(
            f"cannot resume {trainer.paths.root}: the training identities differ from the checkpoint's; "
            "point data.root back at the run's dataset"
        )
    unwrap_model(trainer.model).load_state_dict(data["model"])
    trainer.optimizer.load_state_dict(data["optimizer"])
    trainer.scheduler.load_state_dict(data["scheduler"])
    trainer.sampler.load_state_dict(data["sampler"])
    trainer.step = int(data["step"])
    trainer.best = data.get("best")
    trainer.last_eval = data.get("last_eval")
    trainer.last_good_checkpoint = (trainer.step, trainer.paths.last)
    rng = data["rng"]
    if len(rng) == trainer.dist.world_size:
        mine = rng[trainer.dist.rank]
        restore_rng_state(mine["global"])
        trainer.augment_generator.set_state(mine["augment"])
        if mine.get("window") is not None:
            trainer._window = [row.to(trainer.device) for row in mine["window"]]
    elif trainer.main:
        print(
            f"resuming on {trainer.dist.world_size} process(es) from a {len(rng)}-process checkpoint: "
            "random streams restart (the result is not bit-identical to an uninterrupted run)",
            file=sys.stderr,
        )
    if trainer.main:
        trainer.metrics_log.truncate(trainer.step)


def space_needs(trainer, resuming: bool) -> list[SpaceNeed]:
    """What ``trainer``'s run will write, known before it decodes an image or takes a step.

    The decoded-image caches of the training images and the held-out identities, and the
    checkpoints at their largest: ``last.pt``, ``best.pt`` when identities are held out, and the
    copy staged while one of them is replaced. Files a resumed run replaces count as free. The
    test split is not looked at: a run reads it only after its last step.
    """
    from mosaic.data.images import cache_need

    path_lists = [trainer.train_frame["path"].tolist()]
    if trainer.has_validation:
        query, gallery = trainer.eval_frames("val")
        path_lists.append(query["path"].tolist() + gallery["path"].tolist())
    needs = [cache_need(paths, trainer.img_size, trainer.cache_dir) for paths in path_lists]
    files = [trainer.paths.last] + ([trainer.paths.best] if trainer.has_validation else [])
    held = sum(f.stat().st_size for f in files if resuming and f.is_file())
    checkpoints = (len(files) + 1) * checkpoint_bytes(trainer.model) - held
    names = ", ".join(f.name for f in files)
    needs.append(SpaceNeed(trainer.paths.checkpoints, checkpoints, f"checkpoints ({names} and one staged copy) in", RUN_FIX))
    return [need for need in needs if need is not None]


def checkpoint_fix(trainer) -> str:
    """How to go on after a checkpoint could not be written: the previous one is intact."""
    if trainer.last_good_checkpoint is None:
        return RUN_FIX
    step, _ = trainer.last_good_checkpoint
    return f"move the run to another disk; `mosaic train --resume {trainer.paths.root}` continues from step {step}"
