"""Training throughput on the CPU: what the model consumes versus what the input pipeline supplies.

Run: ``.venv/bin/python -m benchmarks.bench_train [--threads 2] [--steps 20] [--compile]``

Three numbers (four with ``--compile``), measured in the same run so their ratios hold on a loaded machine:

* **model**: training images/s of the ``mosaic/configs/synthetic_micro.yaml`` model and recipe
  through the real step (:class:`mosaic.train.step.TrainStep`: augment, routing, forward, ReID
  loss, backward, optimiser step) on batches of P x K;
* **model, compiled** (``--compile``): the same step with routing, forward and loss compiled as
  one graph (``run.compile``; the first steps, which compile, are not timed);
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
    parser.add_argument("--compile", action="store_true", help="also time the compiled step (compiling takes minutes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from benchmarks.gpu_check_train import train_step as real_step
    from mosaic.core.schema import load_schema
    from mosaic.model import build_model, normalize_images
    from mosaic.train.augment import BatchAugment
    from mosaic.train.config import load_config

    cfg = load_config(CONFIG)
    schema = load_schema("market1501")
    n_ids = 150
    model = build_model(cfg.model, schema, num_classes=n_ids).train()
    h, w = model.img_size
    size = {"img_size": (h, w), "n_images": args.images, "n_ids": n_ids}
    steps = {"eager": real_step(cfg, model, torch.device("cpu"), size, cfg.sampler.p, cfg.sampler.k)}
    if args.compile:
        compiled = build_model(cfg.model, schema, num_classes=n_ids).train()
        steps["compiled"] = real_step(cfg, compiled, torch.device("cpu"), size, cfg.sampler.p, cfg.sampler.k, compile=True)
    step, sampler = steps["eager"]
    cache = step.images
    batches = sampler.epoch_batches(0)
    batch_size = sampler.batch_size

    augment = BatchAugment(cfg.augment, normalize=lambda x: normalize_images(x, model))
    aug_gen = torch.Generator().manual_seed(1)
    position = iter(range(10**9))

    def next_batch() -> torch.Tensor:
        return torch.from_numpy(batches[next(position) % len(batches)])

    def pipeline_step() -> torch.Tensor:
        index = next_batch()
        return augment(cache.index_select(0, index), aug_gen)

    def timed_step(mode: str):
        one, _ = steps[mode]
        return lambda: one(next_batch().numpy())

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

    rates = {"model (train step)": batch_size / _timed(timed_step("eager"), args.steps)}
    if args.compile:
        start = time.perf_counter()
        compile_step, eager_step = timed_step("compiled"), timed_step("eager")
        compile_step(), compile_step()  # compiles
        print(f"compiling the step took {time.perf_counter() - start:.0f} s")
        # alternate short rounds, so that a change of the machine's load hits both alike
        rounds = [(_timed(eager_step, max(1, args.steps // 5)), _timed(compile_step, max(1, args.steps // 5)))
                  for _ in range(5)]
        ratios = sorted(e / c for e, c in rounds)
        rates["model, compiled"] = batch_size / float(np.median([c for _, c in rounds]))
        rates["model, eager (alternating)"] = batch_size / float(np.median([e for e, _ in rounds]))
    rates["pipeline (batch-wise)"] = batch_size / _timed(pipeline_step, args.steps * 5)
    rates["per-image torchvision"] = batch_size / _timed(per_image_step, args.steps)
    print(f"training throughput, {cfg.model.backbone} {h}x{w}, batch {cfg.sampler.p}x{cfg.sampler.k}, {args.threads} threads")
    print(f"{'stage':24s} {'images/s':>10s} {'x model':>9s}")
    for name, rate in rates.items():
        print(f"{name:24s} {rate:10.0f} {rate / rates['model (train step)']:9.1f}")
    if args.compile:
        print(f"compiled step: {ratios[2]:.2f}x the eager step (median of 5 alternating rounds; "
              f"range {ratios[0]:.2f}-{ratios[-1]:.2f})")
    ratio = rates["pipeline (batch-wise)"] / rates["model (train step)"]
    print(f"pipeline supplies {ratio:.1f}x what the model consumes (must be >= 5); "
          f"batch-wise is {rates['pipeline (batch-wise)'] / rates['per-image torchvision']:.1f}x the per-image pipeline")
    return rates


if __name__ == "__main__":
    main()
