"""Query/gallery evaluation of a model under several routers, as during training.

The trunk (every block before the first expert) does not depend on routing, so each batch runs
it once and reuses the tokens for every router. Retrieval uses cosine distance on L2-normalised
features and :func:`mosaic.core.metrics.evaluate` (the protocol of every public ReID toolkit).

The oracle routes an image whose state is missing like the tracer does (the learned router's
prediction, else the group's fixed gates), so that training's evaluation and ``mosaic trace``
score a checkpoint alike and the routing never marks the unannotated images (distractors).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mosaic.model.routers import state_accuracy
from mosaic.core.schema import FIXED, MISSING


@dataclass
class EvalSet:
    """Query and gallery images (uint8, model input size) with their labels, concatenated."""

    images: torch.Tensor  # (Nq + Ng, 3, H, W) uint8
    states: torch.Tensor  # (Nq + Ng, G) int64, -1 missing
    pids: np.ndarray
    camids: np.ndarray
    n_query: int

    @classmethod
    def from_frames(cls, query, gallery, images: torch.Tensor, group_names: Sequence[str]) -> "EvalSet":
        import pandas as pd

        both = pd.concat([query, gallery], ignore_index=True)
        return cls(
            images=images,
            states=torch.from_numpy(both[list(group_names)].to_numpy(dtype=np.int64, copy=True)),
            pids=both["pid"].to_numpy(dtype=np.int64),
            camids=both["camid"].to_numpy(dtype=np.int64),
            n_query=len(query),
        )


def available_routers(model, requested: Sequence[str]) -> list[str]:
    """The requested routers the model has (``learned`` needs a learned router)."""
    return [r for r in requested if r in model.routers]


@torch.no_grad()
def extract_features(
    model,
    data: EvalSet,
    routers: Sequence[str],
    *,
    device: torch.device,
    batch_size: int = 256,
    feature: str = "bn",
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Features ``(N, D)`` per router (float32, CPU) and the learned router's predicted states ``(N, G)``."""
    from mosaic.model import normalize_images

    normalize = normalize or (lambda x: normalize_images(x, model))
    was_training = model.training
    model.eval()
    feats: dict[str, list[torch.Tensor]] = {r: [] for r in routers}
    predicted: list[torch.Tensor] = []
    learned = getattr(model, "learned_router", None)
    try:
        for start in range(0, len(data.images), batch_size):
            if should_stop():
                raise InterruptedError
            images = normalize(data.images[start : start + batch_size].to(device, non_blocking=True))
            states = data.states[start : start + batch_size].to(device, non_blocking=True)
            with autocast():
                tokens = model.trunk(images)
                filled = _fill_missing(model, states, tokens)
                for router in routers:
                    routed = filled if router == "oracle" else states
                    out = model.head(tokens, model.gates(routed, router=router, tokens=tokens))
                    vec = out.bn_features if feature == "bn" else out.features
                    feats[router].append(vec.float().cpu())
                if learned is not None:
                    predicted.append(learned.predict(tokens).cpu())
    finally:
        model.train(was_training)
    return (
        {r: torch.cat(v) for r, v in feats.items()},
        torch.cat(predicted) if predicted else None,
    )


def _fill_missing(model, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Missing states replaced by the learned router's prediction, else by ``FIXED`` (the fixed
    gates); left missing only by a model with neither (built outside training)."""
    missing = states == MISSING
    if not bool(missing.any()):
        return states
    learned = getattr(model, "learned_router", None)
    if learned is not None:
        return torch.where(missing, learned.predict(tokens).to(states.dtype), states)
    if model.routers["oracle"].has_fixed_gates:
        return states.masked_fill(missing, FIXED)
    return states


def retrieval_metrics(features: torch.Tensor, data: EvalSet, max_rank: int = 50) -> dict[str, Any]:
    """mAP, mINP and CMC ranks of query-versus-gallery retrieval on cosine distance."""
    from mosaic.core.metrics import evaluate

    f = F.normalize(features.float(), dim=1)
    q, g = f[: data.n_query], f[data.n_query :]
    distmat = (1.0 - q @ g.t()).numpy()
    nq = data.n_query
    result = evaluate(distmat, data.pids[:nq], data.pids[nq:], data.camids[:nq], data.camids[nq:], max_rank=max_rank)
    cmc = np.asarray(result.cmc, dtype=float)
    out = {"mAP": float(result.mAP), "mINP": float(result.mINP), "n_valid": int(result.n_valid)}
    for k in (1, 5, 10, 20):
        if k <= len(cmc):
            out[f"rank{k}"] = float(cmc[k - 1])
    return out


def evaluate_model(
    model,
    data: EvalSet,
    routers: Sequence[str],
    *,
    device: torch.device,
    batch_size: int = 256,
    feature: str = "bn",
    max_rank: int = 50,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, dict[str, Any]]:
    """Retrieval metrics per router; the ``learned`` entry also holds per-group attribute accuracy."""
    routers = available_routers(model, routers)
    feats, predicted = extract_features(
        model, data, routers, device=device, batch_size=batch_size, feature=feature, autocast=autocast, should_stop=should_stop
    )
    results = {r: retrieval_metrics(feats[r], data, max_rank) for r in routers}
    if predicted is not None:
        acc = state_accuracy(predicted, data.states, model.schema.group_names)
        finite = [v for v in acc.values() if v == v]
        entry = results.setdefault("learned", {})
        entry["attribute_accuracy"] = acc
        entry["attribute_accuracy_mean"] = float(np.mean(finite)) if finite else float("nan")
    return results
