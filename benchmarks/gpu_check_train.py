"""The training half of ``benchmarks/gpu_check.py``: the recipe under test, the real training step
over random images, its speed per mode and batch, and the host syncs it makes.

Each training row times :class:`mosaic.train.step.TrainStep`, the step ``Trainer.train_step`` runs
(augmentation, routing, forward, ReID + attribute loss, backward, Adam), in one of
:data:`TRAIN_MODES`:

* ``eager``: no compiler;
* ``compiled``: routing, forward and loss as one ``torch.compile`` graph (``run.compile``);
* ``cuda_graphs``: that graph captured as CUDA graphs (``run.cuda_graphs``), CUDA only.

The rows run in :data:`TRAIN_ROWS` order, most telling first, so that the time budget drops the
least telling ones.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import numpy as np
import torch

CONFIG = "market1501_clip_vitb16"  # a shipped config (mosaic.configs)

SIZES: dict[str, dict[str, Any]] = {
    "full": dict(backbone="clip_vit_b16", img_size=(256, 128), pk=((16, 4), (32, 4)), n_ids=751, n_images=4096,
                 warmup=6, steps=25, n_query=3368, n_gallery=15913, n_conditions=40, parity_batch=8),
    "smoke": dict(backbone="vit_micro", img_size=(128, 64), pk=((4, 2), (8, 2)), n_ids=32, n_images=128,
                  warmup=1, steps=2, n_query=24, n_gallery=96, n_conditions=2, parity_batch=2),
}

# mode -> (run.compile, run.cuda_graphs)
TRAIN_MODES: dict[str, tuple[bool, bool]] = {"eager": (False, False), "compiled": (True, False), "cuda_graphs": (True, True)}

# (adapter, mode, index into the size's pk); the first rows answer the target (experts at the recipe's 16x4)
TRAIN_ROWS: tuple[tuple[str, str, int], ...] = (
    ("experts", "eager", 0), ("experts", "eager", 1), ("none", "eager", 0), ("none", "eager", 1),
    ("experts", "compiled", 0), ("experts", "cuda_graphs", 0), ("experts", "compiled", 1), ("experts", "cuda_graphs", 1),
    ("none", "compiled", 0), ("none", "cuda_graphs", 0), ("none", "compiled", 1), ("none", "cuda_graphs", 1),
)


# ----------------------------------------------------------------------------- the recipe under test


def recipe(size: dict[str, Any], adapter: str):
    """The shipped Market recipe with the architecture under test and no pretrained file."""
    from mosaic.train.config import load_config

    experts = adapter == "experts"
    return load_config(CONFIG, [
        f"model.backbone={size['backbone']}",
        f"model.img_size=[{size['img_size'][0]},{size['img_size'][1]}]",
        "model.pretrained=false",
        f"model.adapter={adapter}",
        f"model.learned_router={'true' if experts else 'false'}",
        f"loss.attribute_weight={0.5 if experts else 0.0}",
    ])


def market_schema():
    from mosaic.core.schema import load_schema

    return load_schema("market1501")


def random_states(schema, n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.stack([torch.randint(0, len(g.states), (n,), generator=generator) for g in schema.groups], dim=1)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(cfg, model, device: torch.device, size: dict[str, Any], p: int, k: int, *, compile: bool = False,
               cuda_graphs: bool = False, forward_model=None, seed: int = 0, fused: bool | None = None):
    """The real training step (:class:`mosaic.train.step.TrainStep`) over random images, and a P x K sampler."""
    from mosaic.model import normalize_images
    from mosaic.conditions.state_shares import training_state_shares
    from mosaic.train.augment import BatchAugment
    from mosaic.train.loop import _autocast_factory
    from mosaic.train.losses import ReIDLoss
    from mosaic.train.optim import build_optimizer, build_scheduler
    from mosaic.train.sampler import PKSampler
    from mosaic.train.step import TrainStep, check_training_states

    cfg.sampler.p, cfg.sampler.k = p, k
    g = torch.Generator().manual_seed(seed)
    h, w = size["img_size"]
    labels = np.arange(size["n_images"]) % size["n_ids"]
    schema = market_schema()
    images = torch.randint(0, 256, (size["n_images"], 3, h, w), generator=g, dtype=torch.uint8)
    states = random_states(schema, size["n_images"], g)
    # the recipe routes some groups by their fixed gates, which come from the training identities' states
    model.set_state_shares(training_state_shares(states.numpy(), labels, schema))
    check_training_states(model, states.numpy(), cfg.routing)
    optimizer = build_optimizer(model, cfg.optim, fused=fused)
    scheduler, _ = build_scheduler(optimizer, cfg.optim, steps_per_epoch=100)
    step = TrainStep(
        model=model, forward_model=forward_model or model, loss_fn=ReIDLoss(cfg.loss),
        augment=BatchAugment(cfg.augment, normalize=lambda x: normalize_images(x, model)),
        optimizer=optimizer, scheduler=scheduler, routing=cfg.routing, generator=torch.Generator().manual_seed(seed + 1),
        images=images.to(device), labels=torch.from_numpy(labels).to(device), states=states.to(device), device=device,
        autocast=_autocast_factory(device, True), clip_grad_norm=cfg.optim.clip_grad_norm,
        compile=compile, cuda_graphs=cuda_graphs, fullgraph=forward_model is None,
    )
    return step, PKSampler(labels, p, k, seed=seed)


def time_training(step, sampler, device: torch.device, warmup: int, steps: int) -> dict[str, float]:
    """Images/s over ``steps`` steps after ``warmup`` (allocations, autotuning, compilation)."""
    batches = sampler.epoch_batches(0)
    take = iter(range(10**9))
    one = lambda: step(batches[next(take) % len(batches)])  # noqa: E731
    start = time.perf_counter()
    for _ in range(warmup):
        one()
    synchronize(device)
    warm = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        parts = one()
    synchronize(device)
    elapsed = time.perf_counter() - start
    if not torch.isfinite(parts).all():
        raise RuntimeError(f"training produced a non-finite loss: {parts.tolist()}")
    out = {"images_per_s": steps * sampler.batch_size / elapsed, "warmup_s": warm, "step_ms": 1000 * elapsed / steps}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def count_step_syncs(step, sampler, device: torch.device) -> dict[str, Any]:
    """Host syncs in one warm step, as the GPU reports them (``torch.cuda.set_sync_debug_mode("warn")``).

    The step runs twice before it is counted (lazy state, compilation). Only on CUDA: on the CPU
    nothing waits (``tests/test_train_step.py`` counts the would-be syncs there).
    """
    if device.type != "cuda":
        return {"skipped": "needs CUDA (the CPU test suite counts them: tests/test_train_step.py)"}
    batches = sampler.epoch_batches(0)
    for i in range(2):
        step(batches[i])
    synchronize(device)
    host = step.draw(batches[2])  # the host's part; what is counted is the device's part
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step.run(host)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    synchronize(device)
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
    return {"syncs_per_step": len(syncs), "first": syncs[:3]}


# ----------------------------------------------------------------------------- the section


def check_train(size: dict[str, Any], device: torch.device, rows_to_run, budget: Callable[[], bool],
                models: dict[str, torch.nn.Module] | None = None) -> dict[str, Any]:
    """The given rows of :data:`TRAIN_ROWS` until the budget is spent, and the syncs of one step of
    the experts model at the recipe's P x K in each mode. ``models`` caches one model per adapter."""
    from mosaic.model import build_model

    rows: list[dict] = []
    syncs: dict[str, Any] = {}
    models = {} if models is None else models
    for adapter, mode, which in rows_to_run:
        p, k = size["pk"][which]
        compile, cuda_graphs = TRAIN_MODES[mode]
        row = {"adapter": adapter, "mode": mode, "compile": compile, "cuda_graphs": cuda_graphs, "pk": f"{p}x{k}",
               "batch": p * k}
        if budget():
            rows.append({**row, "skipped": "time budget spent"})
            continue
        cfg = recipe(size, adapter)
        if adapter not in models:
            torch.manual_seed(0)
            models[adapter] = build_model(cfg.model, market_schema(), num_classes=size["n_ids"]).to(device).train()
        step, sampler = train_step(cfg, models[adapter], device, size, p, k, compile=compile, cuda_graphs=cuda_graphs)
        try:
            row.update(time_training(step, sampler, device, size["warmup"], size["steps"]))
            if adapter == "experts" and which == 0 and mode not in syncs:
                syncs[mode] = count_step_syncs(step, sampler, device)
        except torch.OutOfMemoryError:
            row["skipped"] = "out of memory"
        del step
        torch._dynamo.reset()  # each row compiles its own graphs
        if device.type == "cuda":
            torch.cuda.empty_cache()
        rows.append(row)
    return {"rows": rows, "syncs": syncs}
