"""One optimisation step, split where the host hands the batch over to the device.

:meth:`TrainStep.draw` is the host's part: the batch's image indices and every random number of
the step (augmentation, training routings), drawn from the CPU generator that checkpoints hold,
in page-locked memory when the step runs on a GPU. :meth:`TrainStep.run` is the device's part:
copy them over without blocking, gather and augment the cached images, route, forward, loss,
backward, optimiser and schedule. Nothing in ``run`` reads a device value back to the host, so
the host queues the next step while the GPU works on this one (``tests/test_train_step.py``
counts the syncs on the CPU, and on a GPU runs a step under
``torch.cuda.set_sync_debug_mode("error")``). The step's inputs are checked once, before the
loop (:func:`check_training_states`).

With ``compile`` the routing, forward pass and loss are one ``torch.compile`` graph (zero graph
breaks, so ``fullgraph`` holds on one process); with ``cuda_graphs`` that graph's forward and
backward are also captured as CUDA graphs (``mode="reduce-overhead"``), which removes the launch
cost of its ~1,500 small kernels. The augmentation stays eager: it draws its noise from a device
generator that the compiler does not trace.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from mosaic.core.errors import MosaicError
from mosaic.core.schema import FIXED, MISSING
from mosaic.train.augment import AugmentParams, BatchAugment
from mosaic.train.config import RoutingConfig

LOSS_PARTS = ("loss", "id", "triplet", "attribute")


# ----------------------------------------------------------------------------- training routings


@dataclass
class RoutingDraws:
    """The uniforms that decide a batch's training routings (CPU tensors; ``None`` when unused)."""

    groups: torch.Tensor | None  # (B, G): dropped below group_dropout, fixed in [p, p + fixed_prob)
    all_off: torch.Tensor | None  # (B,) bool: every group dropped


def draw_routing(routing: RoutingConfig, batch: int, n_groups: int, generator: torch.Generator) -> RoutingDraws:
    """Draw a batch's routing uniforms from ``generator`` (the augmentation's CPU stream, checkpointed).

    One uniform per (sample, group) whether or not ``fixed_prob`` is set, so adding it does not
    change which groups a dropout-only run drops.
    """
    groups = all_off = None
    if routing.group_dropout or routing.fixed_prob:
        groups = torch.rand((batch, n_groups), generator=generator)
    if routing.all_off_prob:
        all_off = torch.rand(batch, generator=generator) < routing.all_off_prob
    return RoutingDraws(groups, all_off)


def apply_routing(routing: RoutingConfig, states: torch.Tensor, draws: RoutingDraws) -> torch.Tensor:
    """States the oracle routes by (see :class:`~mosaic.train.config.RoutingConfig`): each group
    dropped (``-1``) with ``group_dropout``, routed by its fixed gates (``-2``) with
    ``fixed_prob``; every group dropped with ``all_off_prob``. Branch-free on device values."""
    p, q = routing.group_dropout, routing.fixed_prob
    if draws.groups is not None:
        states = states.masked_fill(draws.groups < p, MISSING)
        if q:
            states = states.masked_fill((draws.groups >= p) & (draws.groups < p + q), FIXED)
    if draws.all_off is not None:
        states = states.masked_fill(draws.all_off[:, None], MISSING)
    return states


def route_training_states(routing: RoutingConfig, states: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """:func:`draw_routing` then :func:`apply_routing` on ``states`` (B, G)."""
    draws = draw_routing(routing, states.shape[0], states.shape[1], generator)
    return apply_routing(routing, states, _to_device(draws, states.device))


def check_training_states(model, states: np.ndarray, routing: RoutingConfig) -> None:
    """Check the training set's state codes ``(N, G)`` once, on the host, so the step never has to:
    the oracle router's range check (:meth:`~mosaic.model.routers.OracleRouter.check_codes`), and
    the fixed gates that ``routing.fixed_prob`` routes by (the training identities' state shares)."""
    model.routers["oracle"].check_codes(states)
    if routing.fixed_prob and not model.routers["oracle"].has_fixed_gates:
        raise MosaicError("routing.fixed_prob routes by fixed gates but the model has none: set its state shares first")


# ----------------------------------------------------------------------------- the step


@dataclass
class HostBatch:
    """Everything the host decides for one step (CPU tensors, page-locked when the step runs on a GPU)."""

    index: torch.Tensor  # (B,) int64 rows of the image cache
    augment: AugmentParams
    routing: RoutingDraws


class TrainStep:
    """One optimisation step over a cached uint8 image tensor.

    Parameters
    ----------
    model, forward_model:
        The model, and the module the step calls (``model`` itself or its DistributedDataParallel wrapper).
    images, labels, states:
        The training set: uint8 ``(N, 3, H, W)`` images, class labels ``(N,)`` and state codes
        ``(N, G)`` (checked once by :func:`check_training_states`), on one device: the training
        device, or the CPU when the image cache stays there (each batch is then copied over).
    compile, cuda_graphs, fullgraph:
        Compile routing, forward and loss into one graph; capture it as CUDA graphs (CUDA only);
        insist on one graph (false under DistributedDataParallel, whose compiler splits the graph
        at its gradient buckets on purpose).
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        forward_model: torch.nn.Module,
        loss_fn: Callable,
        augment: BatchAugment,
        optimizer: torch.optim.Optimizer,
        scheduler,
        routing: RoutingConfig,
        generator: torch.Generator,
        images: torch.Tensor,
        labels: torch.Tensor,
        states: torch.Tensor,
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        clip_grad_norm: float | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
        fullgraph: bool = True,
    ):
        self.model, self.forward_model, self.loss_fn = model, forward_model, loss_fn
        self.augment, self.optimizer, self.scheduler = augment, optimizer, scheduler
        self.routing, self.generator = routing, generator
        self.images, self.labels, self.states = images, labels, states
        self.device, self.autocast, self.clip_grad_norm = device, autocast, clip_grad_norm
        self.cuda_graphs = bool(cuda_graphs and compile and device.type == "cuda")
        if cuda_graphs and device.type != "cuda":
            print("run.cuda_graphs needs CUDA; this run is not captured", file=sys.stderr)
        self._pin = device.type == "cuda"
        self.forward_loss: Callable = self._forward_loss
        if compile:
            mode = "reduce-overhead" if self.cuda_graphs else None
            self.forward_loss = torch.compile(self._forward_loss, fullgraph=fullgraph, mode=mode, dynamic=False)

    # ------------------------------------------------------------------ host
    def draw(self, indices: np.ndarray) -> HostBatch:
        """The host's part of a step: indices and every random draw, in the order checkpoints expect."""
        index = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
        _, _, h, w = self.images.shape
        params = self.augment.draw(len(index), h, w, self.generator)
        routing = draw_routing(self.routing, len(index), self.states.shape[1], self.generator)
        if self._pin:
            index, params = index.pin_memory(), params.pin_memory()
            routing = RoutingDraws(*(t.pin_memory() if t is not None else None for t in (routing.groups, routing.all_off)))
        return HostBatch(index, params, routing)

    # ------------------------------------------------------------------ device
    def run(self, batch: HostBatch) -> torch.Tensor:
        """The device's part of a step; returns the loss parts :data:`LOSS_PARTS` (on device, detached)."""
        index = batch.index.to(self.images.device, non_blocking=True)
        images = self._to_device(self.images.index_select(0, index))
        labels = self._to_device(self.labels.index_select(0, index))
        states = self._to_device(self.states.index_select(0, index))
        x = self.augment.apply(images, batch.augment)
        draws = _to_device(batch.routing, self.device)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        total, parts = self.forward_loss(x, states, labels, draws.groups, draws.all_off)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        # a CUDA graph's outputs are overwritten by its next replay; the loss window keeps them
        return parts.clone() if self.cuda_graphs else parts

    def __call__(self, indices: np.ndarray) -> torch.Tensor:
        return self.run(self.draw(indices))

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if t.device == self.device:
            return t
        return (t.pin_memory() if self._pin else t).to(self.device, non_blocking=True)

    def _forward_loss(self, x, states, labels, groups, all_off) -> tuple[torch.Tensor, torch.Tensor]:
        """Routing, forward and loss: the part that is compiled. Returns the total and the parts."""
        routed = apply_routing(self.routing, states, RoutingDraws(groups, all_off))
        with self.autocast():
            # the codes were checked once (check_training_states), so routing reads nothing back
            output = self.forward_model(x, routed, router="oracle", check_codes=False)
        terms = self.loss_fn(output, labels, states)  # the router heads learn the true states
        zero = terms.total.detach() * 0
        parts = torch.stack([terms.total.detach()] + [terms.parts.get(n, zero) for n in LOSS_PARTS[1:]])
        return terms.total, parts


def _to_device(draws: RoutingDraws, device: torch.device) -> RoutingDraws:
    move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
    return RoutingDraws(move(draws.groups), move(draws.all_off))
