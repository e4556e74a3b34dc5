"""Cost of the LoRA expert mixture: vit_micro with every group routed versus the bare backbone.

Measures, in one run and on the same random batches, images per second of

- a training step (forward, identity cross-entropy + attribute cross-entropy, backward, AdamW step)
- an inference forward (no grad, eval mode)

for ``adapter="experts"`` (Market-1501 schema, oracle router, all groups enabled, every sample
routed to one expert per group) and ``adapter="none"``, and prints the overhead ratios.

Run: ``.venv/bin/python -m benchmarks.bench_experts [--threads 2] [--batch 64] [--seconds 3]``
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from mosaic.model import ModelConfig, attribute_loss, build_model, normalize_images
from mosaic.schema import load_schema


def _batch(model, batch: int, generator: torch.Generator):
    h, w = model.img_size
    images = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=generator)
    # every group annotated, so every sample switches on one expert per group (the costliest case
    # for the oracle; a missing state would only zero a gate, which costs the same)
    states = torch.stack(
        [torch.randint(0, len(g.states), (batch,), generator=generator) for g in model.schema.groups], dim=1
    )
    pids = torch.randint(0, model.num_classes, (batch,), generator=generator)
    return normalize_images(images, model), states, pids


def _rate(step, images_per_call: int, seconds: float, warmup: int = 3) -> tuple[float, float]:
    """Images per wall-clock second, and per CPU second of this process.

    The second survives a machine shared with other jobs (wall time then counts their work too);
    for the thread counts used here it times the same work.
    """
    for _ in range(warmup):
        step()
    calls, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 3:
        step()
        calls += 1
    cpu = time.process_time() - cpu_start
    return calls * images_per_call / elapsed, calls * images_per_call / cpu


def measure(adapter: str, batch: int, seconds: float, backbone: str = "vit_micro") -> dict[str, float]:
    torch.manual_seed(0)
    schema = load_schema("market1501")
    model = build_model(ModelConfig(backbone=backbone, adapter=adapter), schema, num_classes=751)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x, states, pids = _batch(model, batch, torch.Generator().manual_seed(1))

    def train_step() -> None:
        model.train()
        out = model(x, states, router="oracle")
        loss = F.cross_entropy(out.logits, pids, label_smoothing=0.1) + attribute_loss(out.attr_logits, states)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def forward() -> None:
        model.eval()
        model(x, states, router="oracle")

    (train, train_cpu), (fwd, fwd_cpu) = _rate(train_step, batch, seconds), _rate(forward, batch, seconds)
    return {
        "train": train,
        "forward": fwd,
        "train_cpu": train_cpu,
        "forward_cpu": fwd_cpu,
        "experts": model.n_experts if adapter == "experts" else 0,
        "params": model.parameter_counts()["total"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch", type=int, default=64, help="images per step (default 64 = P16 x K4)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    parser.add_argument("--backbone", default="vit_micro")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    base = measure("none", args.batch, args.seconds, args.backbone)
    experts = measure("experts", args.batch, args.seconds, args.backbone)
    print(f"{args.backbone}, batch {args.batch}, {args.threads} threads, Market-1501 schema ({experts['experts']} experts)")
    print(f"{'':<24}{'adapter=none':>14}{'experts':>12}{'ratio':>9}")
    rows = (
        ("train", "train step (img/s)"),
        ("forward", "forward (img/s)"),
        ("train_cpu", "train step (img/CPU-s)"),
        ("forward_cpu", "forward (img/CPU-s)"),
    )
    for key, label in rows:
        print(f"{label:<24}{base[key]:>14.0f}{experts[key]:>12.0f}{experts[key] / base[key]:>9.2f}")
    print(f"{'parameters':<24}{base['params']:>14,}{experts['params']:>12,}{experts['params'] / base['params']:>9.2f}")


if __name__ == "__main__":
    main()
