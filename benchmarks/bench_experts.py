"""Cost of the LoRA expert mixture: vit_micro with every group routed versus the bare backbone.

Measures, on the same random batch, images per second of

- a training step (forward, identity cross-entropy + attribute cross-entropy, backward, AdamW step)
- an inference forward (no grad, eval mode)

for ``adapter="experts"`` (Market-1501 schema, oracle router, all groups enabled, every sample
routed to one expert per group) and ``adapter="none"``, and prints the overhead ratios.

The two models are timed in alternating short rounds and each keeps its best round, so a burst
of load from other jobs on a shared machine hits both alike and cannot decide the ratio.

A second table counts, from the module shapes (on the meta device, nothing is run), the
multiply-accumulates per image of the backbone and of the experts for each registered backbone:
what the measured ratio becomes at the sizes that cannot be timed on a CPU.

Run: ``.venv/bin/python -m benchmarks.bench_experts [--threads 2] [--batch 64] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mosaic.model import BACKBONES, LoRAExpertMixture, ModelConfig, attribute_loss, build_model, normalize_images
from mosaic.core.schema import load_schema


def _workloads(adapter: str, batch: int, backbone: str) -> tuple[dict[str, Callable[[], None]], dict[str, int]]:
    torch.manual_seed(0)
    schema = load_schema("market1501")
    model = build_model(ModelConfig(backbone=backbone, adapter=adapter), schema, num_classes=751)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (batch, 3, *model.img_size), dtype=torch.uint8, generator=gen)
    x = normalize_images(images, model)
    # every group annotated, so every sample switches on one expert per group (a missing state
    # would only zero a gate, which costs the same)
    states = torch.stack([torch.randint(0, len(g.states), (batch,), generator=gen) for g in schema.groups], dim=1)
    pids = torch.randint(0, model.num_classes, (batch,), generator=gen)

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

    info = {"experts": model.n_experts if adapter == "experts" else 0, "params": model.parameter_counts()["total"]}
    return {"train": train_step, "forward": forward}, info


def _round(step: Callable[[], None], seconds: float) -> float:
    """Calls per second over at least ``seconds`` (and at least two calls)."""
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 2:
        step()
        calls += 1
    return calls / elapsed


def forward_macs(model) -> dict[str, float]:
    """Multiply-accumulates per image of one forward pass: backbone (patch embedding, linear
    layers, attention products) and experts (the LoRA factors of every mixture)."""
    bb = model.backbone
    tokens = bb.patch_embed.num_patches + bb.num_prefix_tokens
    patch = bb.patch_embed.proj
    embed = bb.patch_embed.num_patches * patch.in_channels * patch.out_channels * patch.kernel_size[0] * patch.kernel_size[1]
    linear = tokens * sum(m.in_features * m.out_features for m in bb.blocks.modules() if isinstance(m, nn.Linear))
    attention = len(bb.blocks) * 2 * tokens * tokens * bb.embed_dim  # q k^T and attn v
    experts = tokens * sum(
        m.n_experts * m.rank * (m.in_features + m.out_features) for m in bb.modules() if isinstance(m, LoRAExpertMixture)
    )
    return {"tokens": tokens, "backbone": embed + linear + attention, "experts": experts}


def mac_table(expert_blocks: int) -> None:
    schema = load_schema("market1501")
    print(f"\nper-image forward MACs, experts on the last {expert_blocks} blocks (counted from shapes, not timed)")
    print(f"{'backbone':<24}{'tokens':>7}{'backbone GMAC':>15}{'experts GMAC':>14}{'experts/backbone':>18}")
    for name in BACKBONES:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            model = build_model(ModelConfig(backbone=name, expert_blocks=expert_blocks), schema, num_classes=751)
        macs = forward_macs(model)
        print(
            f"{name:<24}{macs['tokens']:>7}{macs['backbone'] / 1e9:>15.3f}{macs['experts'] / 1e9:>14.3f}"
            f"{macs['experts'] / macs['backbone']:>18.3f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch", type=int, default=64, help="images per step (default 64 = P16 x K4)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds per workload")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per round")
    parser.add_argument("--backbone", default="vit_micro")
    parser.add_argument("--macs-only", action="store_true", help="print only the counted MACs table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.macs_only:
        mac_table(expert_blocks=2)
        return

    models = {adapter: _workloads(adapter, args.batch, args.backbone) for adapter in ("none", "experts")}
    best = {(a, w): 0.0 for a in models for w in ("train", "forward")}
    for steps, _ in models.values():  # warm-up: allocator, kernels, optimizer state
        for step in steps.values():
            for _ in range(3):
                step()
    for _ in range(args.rounds):
        for adapter, (steps, _) in models.items():
            for workload, step in steps.items():
                best[adapter, workload] = max(best[adapter, workload], _round(step, args.seconds) * args.batch)

    info = {a: models[a][1] for a in models}
    print(
        f"{args.backbone}, batch {args.batch}, {args.threads} threads, Market-1501 schema "
        f"({info['experts']['experts']} experts), best of {args.rounds} rounds"
    )
    print(f"{'':<22}{'adapter=none':>14}{'experts':>12}{'ratio':>9}")
    for workload, label in (("train", "train step (img/s)"), ("forward", "forward (img/s)")):
        none, experts = best["none", workload], best["experts", workload]
        print(f"{label:<22}{none:>14.0f}{experts:>12.0f}{experts / none:>9.2f}")
    n, e = info["none"]["params"], info["experts"]["params"]
    print(f"{'parameters':<22}{n:>14,}{e:>12,}{e / n:>9.2f}")
    mac_table(expert_blocks=2)


if __name__ == "__main__":
    main()
