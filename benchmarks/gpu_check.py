"""One command that checks the GPU path of a real run: speed, memory, parity, DDP. No downloads.

Run on a CUDA machine (about 5-8 minutes on one GPU):

    python -m benchmarks.gpu_check            # writes benchmarks/results/gpu_check-<card>.json

and on the CPU, in seconds, with a micro model (the test suite runs this, so the script cannot rot):

    python -m benchmarks.gpu_check --smoke --out /tmp/gpu_check.json

What it measures, with the CLIP ViT-B/16 architecture at 256x128 and random weights (the numbers
do not depend on the weights), under the shipped recipe of ``mosaic/configs/market1501_clip_vitb16.yaml``:

* **train**: bf16 training images/s and peak GPU memory of the real training step
  (:class:`mosaic.train.step.TrainStep`, what ``Trainer.train_step`` runs: augmentation, routing,
  forward, ReID + attribute loss, backward, Adam) at P x K 16x4 and 32x4, eager, compiled and
  compiled with CUDA graphs, with the attribute experts and without (``adapter: none``); see
  :mod:`benchmarks.gpu_check_train`;
* **syncs**: host syncs in one step, eager and compiled, as ``torch.cuda.set_sync_debug_mode``
  reports them (the target is zero);
* **trace**: :func:`mosaic.tracing.engine.trace_model` on a Market-sized synthetic set (3,368
  queries x 15,913 gallery images, random pixels and attribute states), trunk computed once, then
  every condition's head, distances and metrics, once per row of :data:`TRACE_ROWS` (a precision,
  with or without reuse of known results; 40 conditions, or a sample of every kind for the slower
  TF32 and fp32 rows);
* **sharded trace**: the bf16 trace with reuse over every visible GPU, when there are several (in
  ``--smoke``: gloo over two CPU processes);
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

from benchmarks.gpu_check_train import (
    SIZES, TRAIN_MODES, TRAIN_ROWS, check_train, market_schema, random_states, recipe, synchronize, time_training,
    train_step,
)

# What a real run needs, on an H100-class card: 60 Market-1501 epochs (12,936 images each) in well
# under 5 minutes, and a full trace of 40 conditions in 20 s.
TARGETS = {"train_images_per_s_bf16": 3000.0, "trace_40_conditions_s": 20.0}

# One trace per row, in this order (the time budget drops the last ones). ``settings`` are
# TraceSettings fields; a row whose fields this mosaic's TraceSettings lacks is reported as
# skipped, naming them. ``conditions``: how many of the 40, sampled across every kind (see _sample).
TRACE_ROWS: tuple[dict[str, Any], ...] = (
    {"name": "bf16, reuse", "settings": {"precision": "bf16", "reuse": True}, "conditions": 40, "target": True},
    {"name": "bf16", "settings": {"precision": "bf16", "reuse": False}, "conditions": 40},
    {"name": "tf32, reuse", "settings": {"precision": "tf32", "reuse": True}, "conditions": 16},
    {"name": "tf32", "settings": {"precision": "tf32", "reuse": False}, "conditions": 16},
    {"name": "fp32, reuse", "settings": {"precision": "fp32", "reuse": True}, "conditions": 8},
    {"name": "fp32", "settings": {"precision": "fp32", "reuse": False}, "conditions": 8},
)

# The order of work, what the targets need first; each phase runs the rows it matches that have not
# run yet, and the time budget drops what is left. Train rows are (adapter, mode, index of P x K).
PLAN: tuple[tuple[str, Callable[..., bool]], ...] = (
    ("train", lambda adapter, mode, pk: mode == "eager"),
    ("trace", lambda row: bool(row.get("target"))),
    ("train", lambda adapter, mode, pk: adapter == "experts" and pk == 0),  # the training target
    ("trace", lambda row: row["settings"].get("precision") == "bf16"),
    ("train", lambda adapter, mode, pk: adapter == "experts"),
    ("trace", lambda row: True),
    ("train", lambda adapter, mode, pk: True),
)


# ----------------------------------------------------------------------------- sections


def _sample(conditions: list, n: int) -> list:
    """``n`` of ``conditions``, taking each kind in turn (oracle, none, drop, only, counterfactual,
    subset, ...), so that a short row sees the same mix of work as the full one."""
    if n >= len(conditions):
        return list(conditions)
    kinds: dict[str, list] = {}
    for c in conditions:
        kinds.setdefault(c.name.split(":")[0], []).append(c)
    picked, queues = [], list(kinds.values())
    while len(picked) < n:
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked


def _trace_problem(size: dict[str, Any], device: torch.device):
    """The model, query and gallery sets and the 40 conditions every trace row draws from."""
    from mosaic.conditions import resolve_conditions
    from mosaic.model import build_model
    from mosaic.tracing.engine import ImageSet

    cfg = recipe(size, "experts")
    schema = market_schema()
    torch.manual_seed(0)
    model = build_model(cfg.model, schema, num_classes=size["n_ids"]).to(device).eval()
    g = torch.Generator().manual_seed(2)
    h, w = size["img_size"]
    n_ids = max(2, size["n_query"] // 5)

    def image_set(n: int, camera_offset: int) -> ImageSet:
        pids = torch.randint(1, n_ids + 1, (n,), generator=g).numpy()
        by_pid = random_states(schema, n_ids + 1, g).numpy()  # identity-level states, as in Lin et al.
        return ImageSet(
            images=torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8),
            pid=pids, camid=(np.arange(n) + camera_offset) % 6 + 1, path=np.array([f"{i}.jpg" for i in range(n)]),
            states=by_pid[pids],
        )

    query, gallery = image_set(size["n_query"], 0), image_set(size["n_gallery"], 3)
    conditions = resolve_conditions(None, schema, has_learned=True)[: size["n_conditions"]]
    return model, query, gallery, conditions


def trace_row(row: dict[str, Any], size: dict[str, Any], device: torch.device, problem) -> dict[str, Any]:
    """One row of :data:`TRACE_ROWS`: the trace's wall time, or why it was skipped."""
    import dataclasses

    from mosaic.tracing.engine import trace_model
    from mosaic.tracing.settings import TraceSettings

    out: dict[str, Any] = {"name": row["name"], **row["settings"]}
    known = {f.name for f in dataclasses.fields(TraceSettings)}
    missing = sorted(set(row["settings"]) - known)
    if missing:
        return {**out, "skipped": f"TraceSettings has no {', '.join(missing)}"}
    model, query, gallery, conditions = problem
    share = max(1, round(row["conditions"] * len(conditions) / 40))  # the smoke size has 4, not 40
    conditions = _sample(conditions, share)
    settings = TraceSettings(progress=False, batch_size=256 if device.type == "cuda" else 32, **row["settings"])
    synchronize(device)
    start = time.perf_counter()
    trace = trace_model(model, query, gallery, conditions, settings, device=device)
    synchronize(device)
    seconds = time.perf_counter() - start
    if not np.isfinite(trace.mAP).all():
        raise RuntimeError(f"trace row {row['name']!r} produced a non-finite mAP")
    return {**out, "conditions": len(conditions), "condition_names": [c.name for c in conditions],
            "queries": len(query), "gallery": len(gallery), "seconds": seconds,
            "seconds_per_condition": seconds / len(conditions), "mAP_mean": float(np.mean(trace.mAP))}


def check_trace(size: dict[str, Any], device: torch.device, rows, budget: Callable[[], bool], problem) -> list[dict[str, Any]]:
    """The given rows of :data:`TRACE_ROWS`, in order, until the budget is spent."""
    out = []
    for row in rows:
        if budget():
            out.append({"name": row["name"], **row["settings"], "skipped": "time budget spent"})
            continue
        out.append(trace_row(row, size, device, problem))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def check_parity(size: dict[str, Any], device: torch.device) -> dict[str, Any]:
    from mosaic.model import build_model
    from mosaic.tracing.precision import exact_float32  # TF32 off: both sides IEEE float32

    if device.type != "cuda":
        return {"skipped": "needs CUDA (compares a CPU and a CUDA forward pass)"}
    cfg = recipe(size, "experts")
    schema = market_schema()
    torch.manual_seed(0)
    model = build_model(cfg.model, schema, num_classes=size["n_ids"]).eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(size["parity_batch"], 3, *size["img_size"], generator=g)
    states = random_states(schema, size["parity_batch"], g)
    with torch.no_grad(), exact_float32(device):
        cpu = model(x, states).features
        gpu = model.to(device)(x.to(device), states.to(device)).features.cpu()
    return {"max_abs_diff": float((cpu - gpu).abs().max()), "max_abs_value": float(cpu.abs().max()), "dtype": "float32"}


def _worker(rank: int, world: int, port: int, backend: str, job: str, size: dict[str, Any], results) -> None:
    """One process of a multi-process check: ``job`` is ``ddp`` (training) or ``trace`` (sharded trace)."""
    import torch.distributed as dist

    from mosaic.train.distributed import DistContext

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        context = DistContext(rank, world, rank, device)
        results[rank] = (_ddp_rank if job == "ddp" else _sharded_trace_rank)(context, size)
    finally:
        dist.destroy_process_group()


def _ddp_rank(dist, size: dict[str, Any]) -> dict[str, Any]:
    """The recipe's training step wrapped as training wraps it (:func:`mosaic.train.distributed.wrap_for_training`)."""
    from mosaic.model import build_model
    from mosaic.train.distributed import wrap_for_training

    cfg = recipe(size, "experts")
    torch.manual_seed(0)
    model = build_model(cfg.model, market_schema(), num_classes=size["n_ids"]).to(dist.device).train()
    wrapped = wrap_for_training(model, dist, find_unused_parameters=cfg.run.find_unused_parameters)
    p, k = size["pk"][0]
    step, sampler = train_step(cfg, model, dist.device, size, p, k, forward_model=wrapped, seed=dist.rank)
    return time_training(step, sampler, dist.device, size["warmup"], size["steps"])


def _sharded_trace_rank(dist, size: dict[str, Any]) -> dict[str, Any]:
    """The target trace row with its conditions shared out over the ranks (``trace_model(dist=...)``)."""
    import torch.distributed

    from mosaic.tracing.engine import trace_model
    from mosaic.tracing.settings import TraceSettings

    model, query, gallery, conditions = _trace_problem(size, dist.device)
    row = next(r for r in TRACE_ROWS if r.get("target"))
    settings = TraceSettings(progress=False, batch_size=256 if dist.device.type == "cuda" else 32, **row["settings"])
    torch.distributed.barrier()
    start = time.perf_counter()
    trace = trace_model(model, query, gallery, conditions, settings, device=dist.device, dist=dist)
    synchronize(dist.device)
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "rank": dist.rank}
    if trace is not None:  # rank 0 holds the gathered trace
        out.update(name=row["name"], conditions=len(trace.condition_name), mAP_mean=float(np.mean(trace.mAP)))
    return out


def _spawn(job: str, size: dict[str, Any], device: torch.device, smoke: bool) -> tuple[list[dict], str] | str:
    """Run ``job`` on every visible GPU (NCCL), or in ``--smoke`` on two CPU processes (gloo);
    the per-rank results, or why it was skipped."""
    import torch.multiprocessing as mp

    if device.type == "cuda" and torch.cuda.device_count() > 1:
        world, backend = torch.cuda.device_count(), "nccl"
    elif smoke:
        world, backend = 2, "gloo"  # the same code path on two CPU processes
    else:
        return "one GPU visible"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.get_context("spawn").Manager().dict()
    mp.start_processes(_worker, args=(world, port, backend, job, size, results), nprocs=world, join=True, start_method="spawn")
    return [results[r] for r in range(world)], backend


def check_ddp(size: dict[str, Any], device: torch.device, smoke: bool) -> dict[str, Any]:
    spawned = _spawn("ddp", size, device, smoke)
    if isinstance(spawned, str):
        return {"skipped": spawned}
    rows, backend = spawned
    return {"backend": backend, "world_size": len(rows), "pk_per_rank": "{}x{}".format(*size["pk"][0]),
            "images_per_s": sum(r["images_per_s"] for r in rows), "per_rank": rows}


def check_sharded_trace(size: dict[str, Any], device: torch.device, smoke: bool) -> dict[str, Any]:
    """The target trace row over every visible GPU: wall time of the slowest rank, gather included."""
    spawned = _spawn("trace", size, device, smoke)
    if isinstance(spawned, str):
        return {"skipped": spawned}
    rows, backend = spawned
    return {"backend": backend, "world_size": len(rows), **rows[0], "seconds": max(r["seconds"] for r in rows),
            "per_rank_seconds": [r["seconds"] for r in rows]}


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
    recipe_pk = "{}x{}".format(*result["size"]["pk"][0])
    trained = [r["images_per_s"] for r in result["train"]
               if "images_per_s" in r and r["adapter"] == "experts" and r["pk"] == recipe_pk]
    best_train = max(trained) if trained else None
    target_rows = [r for r, spec in zip(result["trace"], TRACE_ROWS) if spec.get("target")]
    trace = target_rows[0].get("seconds") if target_rows else None
    full = result["mode"] == "full" and result["environment"]["device"].startswith("cuda")
    return {
        "train_images_per_s_bf16": {"target": TARGETS["train_images_per_s_bf16"], "measured": best_train, "at": recipe_pk,
                                    "met": (best_train >= TARGETS["train_images_per_s_bf16"]) if full and best_train else None},
        "trace_40_conditions_s": {"target": TARGETS["trace_40_conditions_s"], "measured": trace,
                                  "row": target_rows[0]["name"] if target_rows else None,
                                  "met": (trace <= TARGETS["trace_40_conditions_s"]) if full and trace else None},
    }


def format_table(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [f"gpu_check ({result['mode']}) on {env.get('gpu', env['device'])}, torch {env['torch']}", ""]
    lines.append(f"{'adapter':8s} {'mode':11s} {'PxK':5s} {'img/s':>9s} {'step ms':>8s} {'peak GiB':>9s} {'warm-up s':>9s}")
    for r in result["train"]:
        head = f"{r['adapter']:8s} {r['mode']:11s} {r['pk']:5s}"
        if "skipped" in r:
            lines.append(f"{head} skipped: {r['skipped']}")
            continue
        peak = f"{r['peak_memory_gib']:9.1f}" if "peak_memory_gib" in r else f"{'-':>9s}"
        lines.append(f"{head} {r['images_per_s']:9.0f} {r['step_ms']:8.1f} {peak} {r['warmup_s']:9.1f}")
    for mode, syncs in result["syncs"].items():
        lines.append(f"syncs per step ({mode}): " + (str(syncs["syncs_per_step"]) if "syncs_per_step" in syncs
                                                     else f"skipped: {syncs['skipped']}"))
    lines.append("")
    for r in result["trace"]:
        if "seconds" in r:
            lines.append(f"trace {r['name']}: {r['conditions']} conditions, {r['queries']} x {r['gallery']}: "
                         f"{r['seconds']:.1f} s ({r['seconds_per_condition']:.2f} s per condition)")
        else:
            lines.append(f"trace {r['name']}: skipped: {r['skipped']}")
    sharded = result.get("trace_sharded", {})
    lines.append("sharded trace: " + (f"{sharded['backend']} x{sharded['world_size']}, {sharded['conditions']} conditions: "
                                      f"{sharded['seconds']:.1f} s" if "seconds" in sharded else f"skipped: {sharded.get('skipped')}"))
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


def card_slug(result: dict[str, Any]) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``; ``cpu`` without a GPU."""
    import re

    name = result["environment"].get("gpu", result["environment"]["device"])
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def run(smoke: bool, device: torch.device, budget_s: float, modes: tuple[str, ...] | None = None, ddp: bool = True) -> dict[str, Any]:
    """Every section, most telling first: eager training, the target trace, the compiled step,
    the other traces, the rest of the training rows, DDP; the budget drops what is left."""
    size = SIZES["smoke" if smoke else "full"]
    start = time.perf_counter()
    over = lambda: time.perf_counter() - start > budget_s  # noqa: E731
    if modes is None:
        # torch.compile on the CPU takes minutes for nothing a GPU run learns from
        modes = tuple(TRAIN_MODES) if device.type == "cuda" else ("eager",)
    result: dict[str, Any] = {"mode": "smoke" if smoke else "full", "environment": environment(device),
                              "size": {k: list(v) if isinstance(v, tuple) else v for k, v in size.items()},
                              "train": [], "syncs": {}, "trace": []}
    result["parity"] = check_parity(size, device)
    pending_train = [r for r in TRAIN_ROWS if r[1] in modes]
    pending_trace = list(TRACE_ROWS)
    models: dict[str, torch.nn.Module] = {}
    problem = None
    for section, wanted in PLAN:
        if section == "train":
            batch = [r for r in pending_train if wanted(*r)]
            pending_train = [r for r in pending_train if r not in batch]
            found = check_train(size, device, batch, over, models)
            result["train"].extend(found["rows"])
            result["syncs"].update(found["syncs"])
        else:
            batch = [r for r in pending_trace if wanted(r)]
            pending_trace = [r for r in pending_trace if r not in batch]
            problem = problem or _trace_problem(size, device)
            result["trace"].extend(check_trace(size, device, batch, over, problem))
    result["train"].sort(key=lambda r: [(a, m, "{}x{}".format(*size["pk"][i])) for a, m, i in TRAIN_ROWS].index(
        (r["adapter"], r["mode"], r["pk"])))
    result["trace"].sort(key=lambda r: [t["name"] for t in TRACE_ROWS].index(r["name"]))
    for name, check in (("trace_sharded", check_sharded_trace), ("ddp", check_ddp)):
        if not ddp:
            result[name] = {"skipped": "--no-ddp"}
        else:
            result[name] = check(size, device, smoke) if not over() else {"skipped": "time budget spent"}
    result["seconds"] = time.perf_counter() - start
    result["targets"] = verdicts(result)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a micro model on the CPU: checks that the script runs")
    parser.add_argument("--out", default=None,
                        help="the JSON file to write (default: benchmarks/results/gpu_check-<card>.json; "
                             "with --smoke gpu_check-smoke.json here)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip what is left after this many seconds")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurements")
    parser.add_argument("--no-ddp", action="store_true", help="skip the multi-process checks (DDP, sharded trace)")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: --device cuda but torch sees no CUDA device: install a CUDA build of torch")
    modes = ("eager",) if args.no_compile else None
    result = run(args.smoke, device, args.budget_s, modes, ddp=not args.no_ddp)

    from mosaic.core.fileio import write_text_atomic

    if args.out:
        out = Path(args.out)
    else:  # a card's measurement is committed beside the table in benchmarks/README.md
        out = Path("gpu_check-smoke.json") if args.smoke else Path(__file__).parent / "results" / f"gpu_check-{card_slug(result)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=2, default=float) + "\n")
    print(format_table(result))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
