"""Trunk-cached tracing against recomputing the full forward for every condition.

The model is the micro ViT (depth 4, the last ``--expert-blocks`` blocks carrying one LoRA expert
per state of the Market-1501 schema, 39 experts) on random images, some of them unannotated; the
conditions are the real default kinds taken in turn (oracle, none, drop, only, counterfactual,
subset, learned, fixed, relabel; ``code`` needs no model and is left out), cut to
``--conditions``. Missing states are filled by the learned router's predictions in both paths
(computed once, outside the timings). Both paths compute the
L2-normalised BNNeck features of every query and gallery image under every condition and give the
same features (checked); the baseline is what a tracer without the trunk/head split does: one
``model.forward`` per condition. The ideal speed-up, counting transformer blocks only, is

    depth * C / (trunk_depth + expert_depth * C)

(expert blocks cost a little more than plain ones, so the measured ratio stays below it). The
end-to-end row adds what both paths share, distances and ``mosaic.core.metrics.evaluate`` per
condition, via :func:`mosaic.tracing.engine.trace_model`.

    .venv/bin/python -m benchmarks.bench_trace [--images 512] [--conditions 24] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from mosaic.conditions import resolve_conditions
from mosaic.conditions.interventions import fill_missing_routes
from mosaic.model import ModelConfig, build_model, normalize_images
from mosaic.core.schema import load_schema
from mosaic.conditions.state_shares import training_state_shares
from mosaic.tracing.engine import ImageSet, TraceSettings, compute_trunk, condition_features, trace_model
from mosaic.tracing.routing import fill_codes


def make_images(n: int, schema, seed: int) -> ImageSet:
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    pid = rng.integers(1, max(2, n // 4), n)
    states = np.stack([rng.integers(-1, len(g.states), n) for g in schema.groups], axis=1)
    return ImageSet(
        images=torch.randint(0, 256, (n, 3, 128, 64), dtype=torch.uint8, generator=gen),
        pid=pid,
        camid=rng.integers(1, 7, n),
        path=np.array([f"{i}.jpg" for i in range(n)]),
        states=states,
    )


def mixed_conditions(schema, shares, n: int) -> list:
    """``n`` default conditions taken from each model-run kind in turn, so every kind is timed."""
    by_kind: dict[str, list] = {}
    for c in resolve_conditions(None, schema, seed=0, has_learned=True, state_shares=shares):
        if not c.by_code:
            by_kind.setdefault(c.kind, []).append(c)
    out, round_ = [], 0
    while len(out) < n and any(len(v) > round_ for v in by_kind.values()):
        out += [v[round_] for v in by_kind.values() if len(v) > round_]
        round_ += 1
    return out[:n]


@torch.inference_mode()
def full_forward_features(model, images: ImageSet, conditions, batch_size: int, device, fill) -> list[torch.Tensor]:
    """The baseline: the whole network per condition (trunk recomputed every time)."""
    out = []
    pids = images.pid
    for condition in conditions:
        codes, _ = fill_missing_routes(condition, condition.route_states(images.states, pids), fill)
        routed = torch.from_numpy(codes.astype(np.int64))
        enabled = torch.from_numpy(condition.enabled_mask).to(device)
        feats = []
        for start in range(0, len(images), batch_size):
            x = normalize_images(images.images[start:start + batch_size].to(device), model)
            o = model(x, routed[start:start + batch_size].to(device), router=condition.router, enabled=enabled)
            feats.append(F.normalize(o.bn_features.float(), dim=1))
        out.append(torch.cat(feats))
    return out


def cached_features(model, images: ImageSet, conditions, settings, device, fill) -> list[torch.Tensor]:
    with compute_trunk(model, [images], settings, device) as cache:
        return [condition_features(model, cache, images.states, images.pid, c, settings, fill=fill).features for c in conditions]


def evaluate_all(features: list[torch.Tensor], n_query: int, images: ImageSet, settings) -> None:
    from mosaic.core.metrics import evaluate

    for f in features:
        distmat = (1.0 - f[:n_query] @ f[n_query:].T).cpu().numpy()
        evaluate(distmat, images.pid[:n_query], images.pid[n_query:], images.camid[:n_query], images.camid[n_query:],
                 max_rank=settings.max_rank, topk=settings.top_k)


def timed(fn) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=384, help="query + gallery images")
    parser.add_argument("--conditions", type=int, default=24)
    parser.add_argument("--expert-blocks", type=int, default=2)
    parser.add_argument("--backbone", default="vit_micro")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    schema = load_schema("market1501")
    model = build_model(ModelConfig(backbone=args.backbone, expert_blocks=args.expert_blocks), schema, num_classes=10)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    images = make_images(args.images, schema, seed=1)
    model.set_state_shares(training_state_shares(images.states, images.pid, schema))
    model = model.to(device).eval()
    conditions = mixed_conditions(schema, model.state_shares, args.conditions)
    C = len(conditions)
    depth = len(model.backbone.blocks)
    expert_depth = len(model.expert_layers)
    trunk_depth = depth - expert_depth
    ideal = depth * C / (trunk_depth + expert_depth * C)

    settings = TraceSettings(batch_size=args.batch_size, progress=False, top_k=10, max_rank=50)
    with compute_trunk(model, [images], settings, device) as cache:
        fill = fill_codes(model, cache, images.states, args.batch_size)

    half = args.images // 2
    query = ImageSet(images.images[:half], images.pid[:half], images.camid[:half], images.path[:half], images.states[:half])
    gallery = ImageSet(images.images[half:], images.pid[half:], images.camid[half:], images.path[half:], images.states[half:])
    paths = {
        "full": lambda: full_forward_features(model, images, conditions, args.batch_size, device, fill),
        "cached": lambda: cached_features(model, images, conditions, settings, device, fill),
        # end to end: the cached path plus the per-condition distances and evaluate()
        "trace": lambda: trace_model(model, query, gallery, conditions, settings, device=device),
        # the same without reusing known segments or cutting the mixture to the enabled experts
        "trace_full": lambda: trace_model(model, query, gallery, conditions, replace(settings, reuse=False), device=device),
        # what both paths share: distances and evaluate() per condition, on given features
        "evaluate": lambda: evaluate_all(results["cached"], half, images, settings),
    }
    # warm-up (allocator, kernels); then the paths take turns, so that a burst of load from
    # other processes hits all of them alike, and each keeps its best time
    cached_features(model, make_images(32, schema, 2), conditions[:2], settings, device, None)
    best = dict.fromkeys(paths, float("inf"))
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(args.repeats):
            for name, fn in paths.items():
                seconds, results[name] = timed(fn)
                best[name] = min(best[name], seconds)
    t_full, t_cached, t_trace, t_eval = best["full"], best["cached"], best["trace"], best["evaluate"]
    worst = max(float((a - b).abs().max()) for a, b in zip(results["full"], results["cached"]))
    assert worst < 1e-4, f"cached and full features differ by {worst}"
    rows = [
        ("full forward per condition (baseline)", t_full, 1.0),
        ("trunk once + expert blocks per condition", t_cached, t_full / t_cached),
        ("distances + evaluate alone (shared by both)", t_eval, float("nan")),
        # the baseline pays the same evaluation on top of its features
        ("trace_model end to end vs baseline + evaluate", t_trace, (t_full + t_eval) / t_trace),
        ("trace_model without reuse (reuse=False)", best["trace_full"], (t_full + t_eval) / best["trace_full"]),
        ("trace_model reuse vs without reuse", t_trace, best["trace_full"] / t_trace),
    ]
    same = results["trace"], results["trace_full"]
    assert (same[0].first_match_rank == same[1].first_match_rank).all() and (same[0].topk_index == same[1].topk_index).all()
    print(f"{args.backbone}: depth {depth}, expert blocks {expert_depth}, {schema.n_experts} experts; "
          f"{args.images} images x {C} conditions; device {device}, {args.threads} thread(s)")
    print("kinds: " + ", ".join(f"{k} {n}" for k, n in zip(*np.unique([c.kind for c in conditions], return_counts=True))))
    print(f"{'path':52s} {'seconds':>8s} {'speed-up':>9s}")
    for name, seconds, ratio in rows:
        print(f"{name:52s} {seconds:8.2f} " + (f"{ratio:8.2f}x" if ratio == ratio else f"{'':>9s}"))
    print(f"{'ideal (blocks): depth*C / (trunk + expert_depth*C)':52s} {'':8s} {ideal:8.2f}x")
    print(f"images/s per condition: baseline {args.images * C / t_full:,.0f}, cached {args.images * C / t_cached:,.0f}; "
          f"max feature difference {worst:.1e}")


if __name__ == "__main__":
    main()
