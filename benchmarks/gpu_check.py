"""One command that checks the GPU path of a real run: speed, memory, parity, DDP. No downloads.

Run on a CUDA machine (about 5-8 minutes on one GPU):

    python -m benchmarks.gpu_check --out gpu_check.json

and on the CPU, in seconds, with a micro model (the test suite runs this, so the script cannot rot):

    python -m benchmarks.gpu_check --smoke --out /tmp/gpu_check.json

What it measures, with the CLIP ViT-B/16 architecture at 256x128 and random weights (the numbers
do not depend on the weights), under the shipped recipe of ``mosaic/configs/market1501_clip_vitb16.yaml``:

* **train**: bf16 training images/s and peak GPU memory of the real training step
  (:meth:`mosaic.train.loop.Trainer.train_step`: augmentation, forward under oracle routing,
  ReID + attribute loss, backward, Adam step) at P x K 16x4 and 32x4, eager and with
  ``torch.compile``, with the attribute experts and without (``adapter: none``);
* **trace**: :func:`mosaic.tracing.engine.trace_model` over 40 routing conditions on a Market-sized
  synthetic set (3,368 queries x 15,913 gallery images, random pixels and attribute states),
  trunk computed once, then every condition's head, distances and metrics (and once more with
  TF32 matmuls allowed, to show what that setting would buy);
* **parity**: one fp32 forward pass on the CPU and on CUDA (TF32 off), max absolute difference;
* **ddp**: NCCL DistributedDataParallel over every visible GPU when there is more than one
  (in ``--smoke``: gloo over two CPU processes), training images/s summed over ranks.

It writes one JSON file and prints a table with the targets it is judged against
(:data:`TARGETS`). A time budget (``--budget-s``) skips what is left rather than overrunning.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

CONFIG = "market1501_clip_vitb16"  # a shipped config (mosaic.configs)

# What a real run needs, on an H100-class card: 60 Market-1501 epochs (12,936 images each) in well
# under 10 minutes, and a full trace of 40 conditions within a minute.
TARGETS = {"train_images_per_s_bf16": 3000.0, "trace_40_conditions_s": 60.0}

SIZES: dict[str, dict[str, Any]] = {
    "full": dict(backbone="clip_vit_b16", img_size=(256, 128), pk=((16, 4), (32, 4)), n_ids=751, n_images=4096,
                 warmup=6, steps=25, n_query=3368, n_gallery=15913, n_conditions=40, parity_batch=8),
    "smoke": dict(backbone="vit_micro", img_size=(128, 64), pk=((4, 2), (8, 2)), n_ids=32, n_images=128,
                  warmup=1, steps=2, n_query=24, n_gallery=96, n_conditions=4, parity_batch=2),
}


# ----------------------------------------------------------------------------- building blocks


def _config(size: dict[str, Any], adapter: str):
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


def _schema():
    from mosaic.core.schema import load_schema

    return load_schema("market1501")


def _random_states(schema, n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.stack([torch.randint(0, len(g.states), (n,), generator=generator) for g in schema.groups], dim=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_step(cfg, model, device: torch.device, size: dict[str, Any], p: int, k: int, *, compile: bool = False,
                cuda_graphs: bool = False, forward_model=None, seed: int = 0):
    """The real training step (:class:`mosaic.train.step.TrainStep`, what ``Trainer.train_step`` runs) over
    random images, and a P x K sampler over them."""
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
    schema = _schema()
    images = torch.randint(0, 256, (size["n_images"], 3, h, w), generator=g, dtype=torch.uint8)
    states = _random_states(schema, size["n_images"], g)
    # the recipe routes some groups by their fixed gates, which come from the training identities' states
    model.set_state_shares(training_state_shares(states.numpy(), labels, schema))
    check_training_states(states.numpy(), [len(gr.states) for gr in schema.groups], cfg.routing, True)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler, _ = build_scheduler(optimizer, cfg.optim, steps_per_epoch=100)
    step = TrainStep(
        model=model, forward_model=forward_model or model, loss_fn=ReIDLoss(cfg.loss),
        augment=BatchAugment(cfg.augment, normalize=lambda x: normalize_images(x, model)),
        optimizer=optimizer, scheduler=scheduler, routing=cfg.routing, generator=torch.Generator().manual_seed(seed + 1),
        images=images.to(device),
        labels=torch.from_numpy(labels).to(device), states=states.to(device), device=device,
        autocast=_autocast_factory(device, True), clip_grad_norm=cfg.optim.clip_grad_norm,
        compile=compile, cuda_graphs=cuda_graphs, fullgraph=forward_model is None,
    )
    return step, PKSampler(labels, p, k, seed=seed)


def _time_training(train_step, sampler, device: torch.device, warmup: int, steps: int) -> dict[str, float]:
    batches = sampler.epoch_batches(0)
    take = iter(range(10**9))
    step = lambda: train_step(batches[next(take) % len(batches)])  # noqa: E731
    start = time.perf_counter()
    for _ in range(warmup):  # allocations, autotuning and, when compiled, the compilation
        step()
    _sync(device)
    warm = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        parts = step()
    _sync(device)
    elapsed = time.perf_counter() - start
    if not torch.isfinite(parts).all():
        raise RuntimeError(f"training produced a non-finite loss: {parts.tolist()}")
    out = {"images_per_s": steps * sampler.batch_size / elapsed, "warmup_s": warm, "step_ms": 1000 * elapsed / steps}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


# ----------------------------------------------------------------------------- sections


def check_train(size: dict[str, Any], device: torch.device, compile_modes: tuple[bool, ...], budget: Callable[[], bool]) -> list[dict]:
    from mosaic.model import build_model

    rows = []
    for adapter in ("experts", "none"):
        cfg = _config(size, adapter)
        torch.manual_seed(0)
        model = build_model(cfg.model, _schema(), num_classes=size["n_ids"]).to(device).train()
        for compiled in compile_modes:
            forward = torch.compile(model) if compiled else model
            for p, k in size["pk"]:
                row = {"adapter": adapter, "compile": compiled, "pk": f"{p}x{k}", "batch": p * k}
                if budget():
                    rows.append({**row, "skipped": "time budget spent"})
                    continue
                trainer, sampler = _train_step(cfg, model, device, size, p, k, compile=compiled)
                try:
                    row.update(_time_training(trainer, sampler, device, size["warmup"], size["steps"]))
                except torch.OutOfMemoryError:
                    row["skipped"] = "out of memory"
                del trainer
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                rows.append(row)
        del model
    return rows


def check_trace(size: dict[str, Any], device: torch.device, tf32: bool = False) -> dict[str, Any]:
    from mosaic.conditions import resolve_conditions
    from mosaic.model import build_model
    from mosaic.tracing.engine import ImageSet, TraceSettings, trace_model

    cfg = _config(size, "experts")
    schema = _schema()
    torch.manual_seed(0)
    model = build_model(cfg.model, schema, num_classes=size["n_ids"]).to(device).eval()
    g = torch.Generator().manual_seed(2)
    h, w = size["img_size"]
    n_ids = max(2, size["n_query"] // 5)

    def image_set(n: int, camera_offset: int) -> ImageSet:
        pids = torch.randint(1, n_ids + 1, (n,), generator=g).numpy()
        by_pid = _random_states(schema, n_ids + 1, g).numpy()  # identity-level states, as in Lin et al.
        return ImageSet(
            images=torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8),
            pid=pids, camid=(np.arange(n) + camera_offset) % 6 + 1, path=np.array([f"{i}.jpg" for i in range(n)]),
            states=by_pid[pids],
        )

    query, gallery = image_set(size["n_query"], 0), image_set(size["n_gallery"], 3)
    conditions = resolve_conditions(None, schema, has_learned=True)[: size["n_conditions"]]
    settings = TraceSettings(progress=False, batch_size=256 if device.type == "cuda" else 32)
    # The trace runs in fp32; TF32 matmuls (a global torch setting the trace leaves alone) are the
    # cheap way to speed it up, so the check measures what they would buy.
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        _sync(device)
        start = time.perf_counter()
        trace = trace_model(model, query, gallery, conditions, settings, device=device)
        _sync(device)
        seconds = time.perf_counter() - start
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    if not np.isfinite(trace.mAP).all():
        raise RuntimeError("the trace produced a non-finite mAP")
    return {"conditions": len(conditions), "queries": len(query), "gallery": len(gallery), "seconds": seconds,
            "seconds_per_condition": seconds / len(conditions), "tf32": tf32}


def check_parity(size: dict[str, Any], device: torch.device) -> dict[str, Any]:
    from mosaic.model import build_model

    if device.type != "cuda":
        return {"skipped": "needs CUDA (compares a CPU and a CUDA forward pass)"}
    cfg = _config(size, "experts")
    schema = _schema()
    torch.manual_seed(0)
    model = build_model(cfg.model, schema, num_classes=size["n_ids"]).eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(size["parity_batch"], 3, *size["img_size"], generator=g)
    states = _random_states(schema, size["parity_batch"], g)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            cpu = model(x, states).features
            gpu = model.to(device)(x.to(device), states.to(device)).features.cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return {"max_abs_diff": float((cpu - gpu).abs().max()), "max_abs_value": float(cpu.abs().max()), "dtype": "float32"}


def _ddp_worker(rank: int, world: int, port: int, backend: str, size: dict[str, Any], results) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mosaic.model import build_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        cfg = _config(size, "experts")
        torch.manual_seed(0)
        model = build_model(cfg.model, _schema(), num_classes=size["n_ids"]).to(device).train()
        wrapped = DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)
        p, k = size["pk"][0]
        trainer, sampler = _train_step(cfg, model, device, size, p, k, forward_model=wrapped, seed=rank)
        row = _time_training(trainer, sampler, device, size["warmup"], size["steps"])
        results[rank] = row
    finally:
        dist.destroy_process_group()


def check_ddp(size: dict[str, Any], device: torch.device, smoke: bool) -> dict[str, Any]:
    import torch.multiprocessing as mp

    if device.type == "cuda" and torch.cuda.device_count() > 1:
        world, backend = torch.cuda.device_count(), "nccl"
    elif smoke:
        world, backend = 2, "gloo"  # the same code path on two CPU processes
    else:
        return {"skipped": "one GPU visible"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.get_context("spawn").Manager().dict()
    mp.start_processes(_ddp_worker, args=(world, port, backend, size, results), nprocs=world, join=True, start_method="spawn")
    rows = [results[r] for r in range(world)]
    return {"backend": backend, "world_size": world, "pk_per_rank": "{}x{}".format(*size["pk"][0]),
            "images_per_s": sum(r["images_per_s"] for r in rows), "per_rank": rows}


# ----------------------------------------------------------------------------- report


def environment(device: torch.device) -> dict[str, Any]:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "host": platform.node()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2**30, gpu_count=torch.cuda.device_count(),
                   capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda)
    return env


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    """Each target with the measured value and whether it is met (None where it was not measured)."""
    trained = [r["images_per_s"] for r in result["train"] if "images_per_s" in r and r["adapter"] == "experts"]
    best_train = max(trained) if trained else None
    trace = result.get("trace", {}).get("seconds")
    full = result["mode"] == "full" and result["environment"]["device"].startswith("cuda")
    return {
        "train_images_per_s_bf16": {"target": TARGETS["train_images_per_s_bf16"], "measured": best_train,
                                    "met": (best_train >= TARGETS["train_images_per_s_bf16"]) if full and best_train else None},
        "trace_40_conditions_s": {"target": TARGETS["trace_40_conditions_s"], "measured": trace,
                                  "met": (trace <= TARGETS["trace_40_conditions_s"]) if full and trace else None},
    }


def format_table(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [f"gpu_check ({result['mode']}) on {env.get('gpu', env['device'])}, torch {env['torch']}", ""]
    lines.append(f"{'adapter':8s} {'compile':7s} {'PxK':5s} {'img/s':>9s} {'step ms':>8s} {'peak GiB':>9s} {'warm-up s':>9s}")
    for r in result["train"]:
        if "skipped" in r:
            lines.append(f"{r['adapter']:8s} {str(r['compile']):7s} {r['pk']:5s} skipped: {r['skipped']}")
            continue
        peak = f"{r['peak_memory_gib']:9.1f}" if "peak_memory_gib" in r else f"{'-':>9s}"
        lines.append(f"{r['adapter']:8s} {str(r['compile']):7s} {r['pk']:5s} {r['images_per_s']:9.0f} "
                     f"{r['step_ms']:8.1f} {peak} {r['warmup_s']:9.1f}")
    trace = result.get("trace", {})
    if "seconds" in trace:
        lines.append(f"\ntrace: {trace['conditions']} conditions, {trace['queries']} x {trace['gallery']}: "
                     f"{trace['seconds']:.1f} s ({trace['seconds_per_condition']:.2f} s per condition)")
    else:
        lines.append(f"\ntrace: skipped: {trace.get('skipped', 'not run')}")
    tf32 = result.get("trace_tf32", {})
    if "seconds" in tf32:
        lines.append(f"trace with TF32 matmuls: {tf32['seconds']:.1f} s ({tf32['seconds_per_condition']:.2f} s per condition)")
    parity = result.get("parity", {})
    lines.append("parity: " + (f"fp32 CPU vs CUDA max |diff| {parity['max_abs_diff']:.2e} (values up to {parity['max_abs_value']:.1f})"
                               if "max_abs_diff" in parity else f"skipped: {parity.get('skipped')}"))
    ddp = result.get("ddp", {})
    lines.append("ddp: " + (f"{ddp['backend']} x{ddp['world_size']}, {ddp['pk_per_rank']} per rank: {ddp['images_per_s']:.0f} img/s"
                            if "images_per_s" in ddp else f"skipped: {ddp.get('skipped')}"))
    lines.append("")
    for name, v in result["targets"].items():
        state = {True: "met", False: "NOT met", None: "not judged (needs the full run on CUDA)"}[v["met"]]
        measured = "-" if v["measured"] is None else f"{v['measured']:.1f}"
        lines.append(f"target {name}: {v['target']:g}, measured {measured}: {state}")
    lines.append(f"total {result['seconds']:.0f} s")
    return "\n".join(lines)


def run(
    smoke: bool, device: torch.device, budget_s: float, compile_modes: tuple[bool, ...] | None = None, ddp: bool = True
) -> dict[str, Any]:
    size = SIZES["smoke" if smoke else "full"]
    start = time.perf_counter()
    over = lambda: time.perf_counter() - start > budget_s  # noqa: E731
    if compile_modes is None:
        # torch.compile on the CPU takes minutes for nothing a GPU run learns from
        compile_modes = (False, True) if device.type == "cuda" else (False,)
    result: dict[str, Any] = {"mode": "smoke" if smoke else "full", "environment": environment(device),
                              "size": {k: list(v) if isinstance(v, tuple) else v for k, v in size.items()}}
    result["parity"] = check_parity(size, device)
    eager = tuple(m for m in compile_modes if not m)
    result["train"] = check_train(size, device, eager, over)
    result["trace"] = check_trace(size, device) if not over() else {"skipped": "time budget spent"}
    if any(compile_modes):
        result["train"] += check_train(size, device, (True,), over)
    if device.type == "cuda":  # last: the one measurement beyond the plan's questions
        result["trace_tf32"] = check_trace(size, device, tf32=True) if not over() else {"skipped": "time budget spent"}
    if not ddp:
        result["ddp"] = {"skipped": "--no-ddp"}
    else:
        result["ddp"] = check_ddp(size, device, smoke) if not over() else {"skipped": "time budget spent"}
    result["seconds"] = time.perf_counter() - start
    result["targets"] = verdicts(result)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a micro model on the CPU: checks that the script runs")
    parser.add_argument("--out", default="gpu_check.json", help="the JSON file to write")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip what is left after this many seconds")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurements")
    parser.add_argument("--no-ddp", action="store_true", help="skip the multi-process check")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: --device cuda but torch sees no CUDA device: install a CUDA build of torch")
    compile_modes = (False,) if args.no_compile else None
    result = run(args.smoke, device, args.budget_s, compile_modes, ddp=not args.no_ddp)

    from mosaic.core.fileio import write_text_atomic

    write_text_atomic(Path(args.out), json.dumps(result, indent=2, default=float) + "\n")
    print(format_table(result))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
