"""Training throughput on the CPU: what the model consumes versus what the input pipeline supplies.

Run: ``.venv/bin/python -m benchmarks.bench_train [--threads 2] [--steps 20]``

Three numbers, measured in the same run so their ratios hold on a loaded machine:

* **model**: training images/s of the ``mosaic/configs/synthetic_micro.yaml`` model and recipe (augment,
  forward under oracle routing, ReID loss, backward, optimiser step) on batches of P x K;
* **pipeline**: images/s of the input pipeline alone, from the cached uint8 tensor to the
  augmented, normalised float batch (:class:`mosaic.train.augment.BatchAugment`);
* **per-image baseline**: the same augmentations done the usual way, one image at a time with
  torchvision transforms, for scale.

The pipeline must supply at least 5x what the model consumes, so it never limits training.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

CONFIG = "synthetic_micro"  # a shipped config (mosaic.configs)


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, lazy initialisation)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 avoids OpenMP spin-waits on a shared machine")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--images", type=int, default=2400, help="size of the synthetic uint8 cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from mosaic.model import build_model, normalize_images
    from mosaic.core.schema import MISSING, load_schema
    from mosaic.train.augment import BatchAugment
    from mosaic.train.config import load_config
    from mosaic.train.losses import ReIDLoss
    from mosaic.train.optim import build_optimizer
    from mosaic.train.sampler import PKSampler

    cfg = load_config(CONFIG)
    schema = load_schema("market1501")
    n_ids = 150
    model = build_model(cfg.model, schema, num_classes=n_ids).train()
    h, w = model.img_size
    g = torch.Generator().manual_seed(0)
    cache = torch.randint(0, 256, (args.images, 3, h, w), generator=g, dtype=torch.uint8)
    pids = np.arange(args.images) % n_ids
    n_states = torch.tensor([len(gr.states) for gr in schema.groups])
    states = (torch.rand(args.images, len(schema.groups), generator=g) * n_states).long()
    states[torch.rand(states.shape, generator=g) < 0.05] = MISSING
    labels = torch.from_numpy(pids)
    sampler = PKSampler(pids, cfg.sampler.p, cfg.sampler.k, seed=0)
    batches = sampler.epoch_batches(0)
    batch_size = sampler.batch_size

    augment = BatchAugment(cfg.augment, normalize=lambda x: normalize_images(x, model))
    aug_gen = torch.Generator().manual_seed(1)
    optimizer = build_optimizer(model, cfg.optim)
    loss_fn = ReIDLoss(cfg.loss)
    position = iter(range(10**9))

    def next_batch() -> torch.Tensor:
        return torch.from_numpy(batches[next(position) % len(batches)])

    def pipeline_step() -> torch.Tensor:
        index = next_batch()
        return augment(cache.index_select(0, index), aug_gen)

    def train_step() -> None:
        index = next_batch()
        x = augment(cache.index_select(0, index), aug_gen)
        out = model(x, states[index], router="oracle")
        terms = loss_fn(out, labels[index], states[index])
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()

    from torchvision.transforms import v2 as T

    per_image = T.Compose(
        [
            T.RandomHorizontalFlip(cfg.augment.flip_prob),
            T.Pad(cfg.augment.pad),
            T.RandomCrop((h, w)),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(model.pixel_mean, model.pixel_std),
            T.RandomErasing(cfg.augment.erase_prob, scale=cfg.augment.erase_area, ratio=cfg.augment.erase_aspect, value="random"),
        ]
    )

    def per_image_step() -> torch.Tensor:
        index = next_batch()
        return torch.stack([per_image(cache[i]) for i in index.tolist()])

    model_s = _timed(train_step, args.steps)
    pipeline_s = _timed(pipeline_step, args.steps * 5)
    per_image_s = _timed(per_image_step, args.steps)

    rates = {
        "model (train step)": batch_size / model_s,
        "pipeline (batch-wise)": batch_size / pipeline_s,
        "per-image torchvision": batch_size / per_image_s,
    }
    print(f"training throughput, {cfg.model.backbone} {h}x{w}, batch {cfg.sampler.p}x{cfg.sampler.k}, {args.threads} threads")
    print(f"{'stage':24s} {'images/s':>10s} {'x model':>9s}")
    for name, rate in rates.items():
        print(f"{name:24s} {rate:10.0f} {rate / rates['model (train step)']:9.1f}")
    ratio = rates["pipeline (batch-wise)"] / rates["model (train step)"]
    print(f"pipeline supplies {ratio:.1f}x what the model consumes (must be >= 5); "
          f"batch-wise is {rates['pipeline (batch-wise)'] / rates['per-image torchvision']:.1f}x the per-image pipeline")
    return rates


if __name__ == "__main__":
    main()
