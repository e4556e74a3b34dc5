"""The training loop: P x K batches from the cached uint8 images, batch-wise augmentation, the
ReID loss under oracle routing, periodic evaluation and exact-resume checkpoints.

Run directory (``RUN``)::

    RUN/config.yaml              the resolved configuration (every default filled in)
    RUN/metrics.jsonl            one JSON object per line: {"kind": "train", "step", "epoch", "lr",
                                 "loss", "id", "triplet", "attribute", ...} every run.log_every
                                 steps and {"kind": "eval", "step", "router", "mAP", "rank1", ...}
                                 per router at each evaluation
    RUN/checkpoints/last.pt      the latest checkpoint (every run.checkpoint_every epochs, on
                                 Ctrl-C and at the end); --resume continues from it
    RUN/checkpoints/best.pt      the checkpoint with the best eval.best_router mAP on the validation
                                 split so far (only with eval.val_ids; never chosen on the test split)
    RUN/images/                  decoded-image cache (unless data.cache_dir points elsewhere)

Exactness: on the CPU with a fixed seed, training ``2k`` steps in one go and training ``k``
steps, resuming and training ``k`` more give equal weights and equal loss lines. Everything
random is either restored from the checkpoint (Python/NumPy/torch generators, the augmentation
generator) or a pure function of ``(seed, epoch)`` (the sampler).

Loss values stay on the device between log lines (no host sync per step); they are checked for
NaN/inf whenever they are flushed, which always happens before a checkpoint is written, so a
diverged run never overwrites the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mosaic.core.diskspace import require_space
from mosaic.core.errors import MosaicError
from mosaic.core.fileio import write_text_atomic
from mosaic.core.schema import FIXED, MISSING
from mosaic.conditions.state_shares import training_state_shares
from mosaic.train.augment import BatchAugment
from mosaic.train.checkpoint import save_checkpoint, unwrap_model
from mosaic.train.config import TrainConfig
from mosaic.train.interrupt import StopFlag, TrainingDiverged, TrainingInterrupted  # noqa: F401  (raised here, public here)
from mosaic.train.monitor import MetricsLog
from mosaic.train.run_state import checkpoint_fix, checkpoint_payload, restore_run, space_needs
from mosaic.train.run import RunPaths, TrainResult
from mosaic.train.distributed import DistContext, init_distributed, wrap_for_training
from mosaic.train.evaluate import EvalSet, evaluate_model
from mosaic.train.losses import ReIDLoss
from mosaic.train.optim import build_optimizer, build_scheduler
from mosaic.train.sampler import PKSampler
from mosaic.train.validation import training_split

LOSS_PARTS = ("loss", "id", "triplet", "attribute")


def _autocast_factory(device: torch.device, amp: bool) -> Callable[[], contextlib.AbstractContextManager]:
    if device.type == "cuda" and amp:
        return lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext  # CPU runs in fp32


class Trainer:
    """One training run: build everything from a :class:`TrainConfig`, then :meth:`fit`.

    Parameters
    ----------
    config:
        The resolved configuration.
    run_dir:
        The run directory (see the module docstring for its layout).
    resume:
        Continue from ``run_dir/checkpoints/last.pt`` instead of starting fresh.
    progress:
        Show progress bars on stderr (main process only).
    dist:
        The distributed context; ``None`` initialises it from the ``torchrun`` environment.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        dist: DistContext | None = None,
    ):
        from mosaic.data import load_dataset
        from mosaic.data.images import load_image_tensor
        from mosaic.model import build_model, normalize_images

        self.config = config
        self.paths = RunPaths(run_dir)
        self.dist = dist or init_distributed(config.run.device)
        self.device = self.dist.device
        self.progress = progress and self.dist.is_main
        self.main = self.dist.is_main
        run = config.run
        if run.threads:
            torch.set_num_threads(run.threads)

        if not resume and self.paths.last.exists():
            raise MosaicError(
                f"{self.paths.root} already holds a run (checkpoints/last.pt): resume it with "
                f"--resume {self.paths.root} or choose another --out"
            )
        _seed_everything(run.seed)

        # ---- data
        data_cfg = config.data
        self.dataset = load_dataset(data_cfg.root, format=data_cfg.format, attributes=data_cfg.attributes, schema=data_cfg.schema)
        self.schema = self.dataset.schema
        # identities held out for evaluation during training (the test split is read only at the end)
        self.validation = training_split(self.dataset, config.eval.val_ids, run.seed)
        train = self.validation.train
        self.class_pids = np.unique(train["pid"].to_numpy(dtype=np.int64, copy=True))
        labels = np.searchsorted(self.class_pids, train["pid"].to_numpy(dtype=np.int64, copy=True))
        self.train_frame = train

        # ---- model
        model = build_model(config.model, self.schema, num_classes=len(self.class_pids))
        # the fixed gates: per group, each state's share among the training identities (stored in checkpoints)
        model.set_state_shares(
            training_state_shares(train[list(self.schema.group_names)].to_numpy(), train["pid"].to_numpy(), self.schema)
        )
        self.model = model.to(self.device)
        self.img_size = tuple(model.img_size)

        # ---- images: decoded once by the main process, read back from its cache by the others
        cache_dir = Path(data_cfg.cache_dir) if data_cfg.cache_dir else self.paths.images
        self.cache_dir = cache_dir
        self._load_images = lambda paths, bar: load_image_tensor(paths, self.img_size, cache_dir=cache_dir, progress=bar)
        if self.main:  # what the run will write must fit before an image is decoded or a step taken
            require_space(space_needs(self, resume))
            images = self._load_images(train["path"].tolist(), self.progress)
        self.dist.barrier()
        if not self.main:
            images = self._load_images(train["path"].tolist(), False)
        on_device = run.cache_on_device if run.cache_on_device is not None else self.device.type == "cuda"
        self.image_device = self.device if on_device else torch.device("cpu")
        self.train_images = images.to(self.image_device)
        if self.image_device.type == "cpu" and self.device.type == "cuda":
            self.train_images = self.train_images.pin_memory()
        self.train_labels = torch.from_numpy(labels).to(self.image_device)
        self.train_states = torch.from_numpy(train[list(self.schema.group_names)].to_numpy(dtype=np.int64, copy=True)).to(
            self.image_device
        )
        self._eval_sets: dict[str, EvalSet] = {}

        # ---- recipe
        self.sampler = PKSampler(
            labels, config.sampler.p, config.sampler.k, seed=run.seed, rank=self.dist.rank, world_size=self.dist.world_size
        )
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.optimizer = build_optimizer(model, config.optim)
        self.scheduler, self.total_steps = build_scheduler(self.optimizer, config.optim, self.steps_per_epoch)
        self.loss_fn: Callable = ReIDLoss(config.loss)
        self.augment = BatchAugment(config.augment, normalize=lambda x: normalize_images(x, model))
        self.augment_generator = torch.Generator().manual_seed(_rank_seed(run.seed, self.dist.rank))
        self.autocast = _autocast_factory(self.device, run.amp)

        self.forward_model = wrap_for_training(model, self.dist, compile=run.compile,
                                               find_unused_parameters=run.find_unused_parameters)

        # ---- state
        self.step = 0
        self.best: dict[str, Any] | None = None
        self.last_eval: dict[str, dict[str, Any]] | None = None
        self.last_good_checkpoint: tuple[int, Path] | None = None
        self._window: list[torch.Tensor] = []
        self._window_start = 0
        self._window_time = time.perf_counter()
        self._stop: StopFlag | None = None
        self._bar = None
        self.metrics_log = MetricsLog(self.paths.metrics, enabled=self.main)
        if resume:
            self._resume()
        else:
            # Model initialisation used the shared seed (identical on every rank); from here on
            # each rank draws its own dropout / drop-path noise.
            torch.manual_seed(_rank_seed(run.seed, self.dist.rank))
        if self.main:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.paths.config, config.to_yaml())
            self.metrics_log.open_tensorboard(self.paths.root)

    # ------------------------------------------------------------------ resume
    def _resume(self) -> None:
        restore_run(self)

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict[str, Any]) -> None:
        self.metrics_log.write(record)

    def _check_window(self) -> torch.Tensor | None:
        """The buffered per-step losses averaged over processes; raises on the first NaN/inf step."""
        if not self._window:
            return None
        values = torch.stack(self._window).float()  # (steps, parts)
        values = (self.dist.all_reduce_sum(values) / self.dist.world_size).cpu()
        bad = torch.nonzero(~torch.isfinite(values[:, 0]))
        if len(bad):
            row = int(bad[0, 0])
            raise self._diverged(self._window_start + 1 + row, float(values[row, 0]))
        return values

    def _flush_window(self) -> None:
        """Check the buffered per-step losses and log their mean as one metrics line."""
        values = self._check_window()
        if values is None:
            return
        elapsed = time.perf_counter() - self._window_time
        n = len(self._window)
        mean = values.mean(dim=0)
        record = {"kind": "train", "step": self.step, "epoch": self.step / self.steps_per_epoch}
        record["lr"] = float(self.optimizer.param_groups[0]["lr"])
        for name, value in zip(LOSS_PARTS, mean.tolist()):
            record[name] = value
        record["images_per_s"] = n * self.sampler.batch_size * self.dist.world_size / max(elapsed, 1e-9)
        self._log(record)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
        self._window.clear()
        self._window_start = self.step
        self._window_time = time.perf_counter()

    def _diverged(self, step: int, value: float) -> TrainingDiverged:
        if self.last_good_checkpoint is not None:
            good_step, path = self.last_good_checkpoint
            kept = f"the last good checkpoint ({path}, step {good_step}) is kept"
        else:
            kept, path = "no checkpoint had been written yet", None
        message = (
            f"training diverged: the loss became {value} at step {step}; {kept}. "
            "Lower optim.lr or raise optim.warmup_epochs, then start again"
            + (f" or resume with --resume {self.paths.root}" if path is not None else "")
        )
        return TrainingDiverged(message, step, path)

    # ------------------------------------------------------------------ checkpoints
    def _payload(self, finished: bool) -> dict[str, Any]:
        return checkpoint_payload(self, finished)

    def save(self, *, finished: bool = False, best: bool = False) -> Path:
        """Write ``checkpoints/last.pt`` (and ``best.pt``) after checking the pending losses."""
        # Never checkpoint weights that a NaN step already touched. Off a log step the window is
        # only checked and travels in the checkpoint, so a resumed run logs the same means.
        if self.step % self.config.run.log_every == 0:
            self._flush_window()
        else:
            self._check_window()
        payload = self._payload(finished)  # collective in DDP: every rank takes part
        if self.main:
            save_checkpoint(self.paths.last, payload, fix=checkpoint_fix(self))
            if best:
                save_checkpoint(self.paths.best, payload, fix=checkpoint_fix(self))
        self.last_good_checkpoint = (self.step, self.paths.last)
        self.dist.barrier()
        return self.paths.last

    # ------------------------------------------------------------------ evaluation
    @property
    def has_validation(self) -> bool:
        return not self.validation.query.empty

    def eval_frames(self, split: str):
        """(query, gallery) tables: ``val`` the held-out training identities, ``test`` the dataset's."""
        if split == "val":
            return self.validation.query, self.validation.gallery
        return self.dataset.split("query"), self.dataset.split("gallery")

    def eval_set(self, split: str = "test") -> EvalSet:
        if split not in self._eval_sets:
            query, gallery = self.eval_frames(split)
            images = self._load_images(query["path"].tolist() + gallery["path"].tolist(), self.progress)
            self._eval_sets[split] = EvalSet.from_frames(query, gallery, images, self.schema.group_names)
        return self._eval_sets[split]

    def evaluate(self, split: str = "test") -> dict[str, dict[str, Any]] | None:
        """Evaluate on ``split`` (main process; the others wait) and log one line per router.

        ``val`` runs during training and may pick ``best.pt``; ``test`` runs once, after the last
        step, and picks nothing.
        """
        results = None
        if self.main:
            cfg = self.config.eval
            stop = (lambda: self._stop.requested) if self._stop is not None else (lambda: False)
            try:
                results = evaluate_model(
                    unwrap_model(self.model),
                    self.eval_set(split),
                    cfg.routers,
                    device=self.device,
                    batch_size=cfg.batch_size,
                    feature=cfg.feature,
                    max_rank=cfg.max_rank,
                    autocast=self.autocast,
                    should_stop=stop,
                )
            except InterruptedError:
                results = None  # Ctrl-C during evaluation: checkpoint without it
            if results is not None:
                for router, metrics in results.items():
                    epoch = self.step / self.steps_per_epoch
                    self._log({"kind": "eval", "split": split, "step": self.step, "epoch": epoch, "router": router, **metrics})
        # Every rank needs the same results: they decide whether best.pt is written (a collective).
        results = self.dist.broadcast_object(results)
        if results is not None:
            self.last_eval = results
        return results

    def _is_better(self, results: dict[str, dict[str, Any]] | None) -> bool:
        if results is None:
            return False
        key = self.config.eval.best_router if self.config.eval.best_router in results else next(iter(results))
        score = results[key].get("mAP", float("nan"))
        if not math.isfinite(score):
            return False
        if self.best is None or score > self.best["mAP"]:
            self.best = {"step": self.step, "router": key, "mAP": score, "rank1": results[key].get("rank1")}
            return True
        return False

    # ------------------------------------------------------------------ training
    def train_step(self, indices: np.ndarray) -> torch.Tensor:
        """One optimisation step on the images at ``indices``; returns the loss parts (on device, detached)."""
        index = torch.from_numpy(indices).to(self.image_device)
        images = self.train_images.index_select(0, index).to(self.device, non_blocking=True)
        labels = self.train_labels.index_select(0, index).to(self.device, non_blocking=True)
        states = self.train_states.index_select(0, index).to(self.device, non_blocking=True)
        x = self.augment(images, self.augment_generator)
        with self.autocast():
            output = self.forward_model(x, self._route_states(states), router="oracle")
        terms = self.loss_fn(output, labels, states)  # the router heads learn the true states
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        if self.config.optim.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        zero = terms.total.detach() * 0
        return torch.stack([terms.total.detach()] + [terms.parts.get(n, zero) for n in LOSS_PARTS[1:]])

    def _route_states(self, states: torch.Tensor) -> torch.Tensor:
        """States the oracle routes by (see :class:`~mosaic.train.config.RoutingConfig`): each group
        dropped (``-1``) with ``group_dropout``, routed by its fixed gates (``-2``) with
        ``fixed_prob``; every group dropped with ``all_off_prob``."""
        cfg = self.config.routing
        p, q = cfg.group_dropout, cfg.fixed_prob
        if p or q:
            # one uniform per (sample, group), CPU stream: checkpointed, and the same draws as a
            # dropout-only run, so adding fixed_prob does not change which groups are dropped
            u = torch.rand(states.shape, generator=self.augment_generator).to(states.device, non_blocking=True)
            states = states.masked_fill(u < p, MISSING)
            if q:
                states = states.masked_fill((u >= p) & (u < p + q), FIXED)
        if cfg.all_off_prob:
            off = torch.rand(states.shape[0], generator=self.augment_generator) < cfg.all_off_prob
            states = states.masked_fill(off.to(states.device, non_blocking=True)[:, None], MISSING)
        return states

    def fit(self, stop_at: int | None = None) -> TrainResult:
        """Train until the configured number of steps (or ``stop_at``), evaluating and checkpointing.

        Raises :class:`TrainingDiverged` on a NaN/inf loss and :class:`TrainingInterrupted` after
        Ctrl-C (a checkpoint has then been written).
        """
        from mosaic.core.progress import progress_bar

        start_time = time.perf_counter()
        cfg = self.config
        spe = self.steps_per_epoch
        end = self.total_steps if stop_at is None else min(stop_at, self.total_steps)
        if self.step >= self.total_steps:
            return TrainResult(self.paths.root, self.step, self.total_steps, True, self.last_eval, self.paths.last, 0.0)
        self._bar = progress_bar(self.total_steps, "training", unit="step", initial=self.step, enabled=self.progress)
        self._window_start, self._window_time = self.step - len(self._window), time.perf_counter()
        evaluated_at = -1
        self.model.train()
        with StopFlag(announce=self.main) as stop:
            self._stop = stop
            try:
                while self.step < end:
                    epoch, offset = divmod(self.step, spe)
                    self.sampler.set_epoch(epoch)
                    for indices in self.sampler.epoch_batches(epoch, start=offset):
                        self._window.append(self.train_step(indices))
                        self.step += 1
                        self._bar.update(1)
                        if self.step % cfg.run.log_every == 0:
                            self._flush_window()
                        if self.step % spe == 0 and self.step < end:
                            done_epochs = self.step // spe
                            is_best = False
                            if cfg.eval.every and done_epochs % cfg.eval.every == 0 and self.has_validation:
                                is_best = self._is_better(self.evaluate("val"))
                                evaluated_at = self.step
                            if done_epochs % cfg.run.checkpoint_every == 0 or is_best:
                                self.save(best=is_best)
                        if self._stop_requested(at_sync_point=self.step % cfg.run.log_every == 0):
                            path = self.save()
                            raise TrainingInterrupted(self.step, path, self.paths.root)
                        if self.step >= end:
                            break
                finished = self.step >= self.total_steps
                if finished:
                    self._flush_window()  # the last, possibly partial, window
                is_best = False
                if finished and self.has_validation and evaluated_at != self.step:
                    is_best = self._is_better(self.evaluate("val"))
                if finished:
                    self.evaluate("test")  # the final model's numbers; selects nothing
                checkpoint = self.save(finished=finished, best=is_best)
            finally:
                self._stop = None
                self._bar.close()
                self.metrics_log.flush()
        return TrainResult(
            self.paths.root, self.step, self.total_steps, finished, self.last_eval, checkpoint, time.perf_counter() - start_time
        )

    def _stop_requested(self, at_sync_point: bool) -> bool:
        requested = self._stop is not None and self._stop.requested
        if self.dist.enabled:
            # Every rank must stop at the same step: agree at log steps only (one tiny all-reduce
            # there) rather than synchronising every step; a SUM says "anyone was asked".
            if not at_sync_point:
                return False
            flag = torch.tensor([1.0 if requested else 0.0], device=self.device)
            return bool(self.dist.all_reduce_sum(flag).item() > 0)
        return requested


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rank_seed(seed: int, rank: int) -> int:
    return (seed * 1_000_003 + rank * 7919 + 1) % 2**63
