"""Features of every image under one routing condition, from the cached trunk tokens, without
repeating work whose result is known.

The images fall into two segments, the queries and the gallery, each run in its own batches. A
segment's features are a function of its routing alone: the router, the enabled groups and the
routed codes of its images (with the trunk tokens, the weights and the precision, which a trace
holds fixed). With ``TraceSettings.reuse`` (the default):

- a segment whose routing equals one computed for an earlier condition reuses that condition's
  features, gates and missing-route count (compared on the host, by a digest of the codes). The
  gallery of ``counterfactual:<g>`` is the oracle's gallery: a counterfactual re-routes the
  queries only. :class:`FeatureReuse` keeps a segment only until the last condition that needs it;
- a condition whose router switches every gate off (``none``) runs no mixture, and the others run
  the mixture over the experts of their enabled groups only (``only:<g>``, ``drop:<g>``, subsets).
  The skipped experts' gates are zero, so only the order of the sum changes (a test holds the
  result within 1e-6 of the full mixture, with the same ranks).

Nothing in a batch waits for the device: the codes and the enabled mask go to the device once per
condition, the codes were validated once on the host, and the gates and missing-route counts stay
on the device until the condition is done (:func:`condition_features`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mosaic.conditions import Condition
from mosaic.core.errors import MosaicError
from mosaic.tracing.precision import compute_precision
from mosaic.tracing.settings import FEATURES, TraceSettings

__all__ = ["ConditionResult", "FeatureReuse", "condition_codes", "condition_features", "head_batch", "segment_keys"]


def chunks(start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    for first in range(start, stop, size):
        yield first, min(stop, first + size)


@dataclass
class ConditionResult:
    """Features and routing of every image under one condition."""

    features: torch.Tensor   # (N, D) L2-normalised float32, images in cache order, on the cache's device
    gates: torch.Tensor      # (N, L, E) float32, on the cache's device
    missing_routes: int      # (image, enabled group) pairs left off for lack of a state
    filled_routes: int = 0   # (image, enabled group) pairs whose missing state was filled
    computed_rows: int = 0   # images the head ran on (the others were reused)


def condition_codes(model, condition: Condition, states: np.ndarray, pids: np.ndarray, is_query: np.ndarray | None,
                    fill: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The ``(N, G)`` int64 codes ``condition`` routes every image by, checked on the host, and
    the mask of the routes filled for a missing state."""
    from mosaic.conditions.interventions import fill_missing_routes

    codes, filled = fill_missing_routes(condition, condition.route_states(states, pids, is_query), fill)
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    router = model.routers[condition.router]
    if getattr(router, "validates_codes", False):
        router.check_codes(codes, condition.enabled_mask)  # once, so no batch reads codes back
    return codes, filled


def active_experts(model, condition: Condition, reuse: bool) -> tuple[int, ...] | None:
    """Experts whose gates may be non-zero under ``condition`` (``None``: all, without reuse)."""
    from mosaic.model.routers import NullRouter

    if not reuse:
        return None
    if isinstance(model.routers[condition.router], NullRouter):
        return ()
    return model.active_experts(condition.enabled_mask)


def segment_keys(model, condition: Condition, codes: np.ndarray, segments: Sequence[tuple[int, int]],
                 reuse: bool) -> list[str]:
    """One digest per segment of everything its features depend on that changes between conditions."""
    experts = active_experts(model, condition, reuse)
    head = f"{condition.router}|{condition.enabled_mask.astype(np.uint8).tobytes().hex()}|{experts}".encode()
    return [hashlib.sha256(head + codes[a:b].tobytes()).hexdigest() for a, b in segments]


class FeatureReuse:
    """Segments computed once and reused by later conditions with the same routing.

    Built from every condition's segment keys up front, so a segment is kept exactly as long as a
    later condition will read it (the oracle's gallery until the last counterfactual) and dropped
    afterwards; memory stays at the segments still to be reused.
    """

    def __init__(self, keys_per_condition: Sequence[Sequence[str]] | None = None) -> None:
        self._uses = Counter(k for keys in (keys_per_condition or []) for k in keys)
        self._stored: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def take(self, key: str):
        """The stored segment for ``key`` (or ``None``), counting this use."""
        self._uses[key] -= 1
        found = self._stored.get(key)
        if found is not None and self._uses[key] <= 0:
            del self._stored[key]
        return found

    def offer(self, key: str, value) -> None:
        if self._uses[key] > 0:
            self._stored[key] = value


def head_batch(model, tokens: torch.Tensor, codes: torch.Tensor, router: str, enabled: torch.Tensor,
               experts: tuple[int, ...] | None, feature: str, precision: str):
    """Features ``(B, D)`` float32 L2-normalised, gates ``(B, L, E)`` and the missing-route count
    (a device scalar) of one batch. No host sync: the codes were checked before the loop."""
    with compute_precision(precision, tokens.device):
        routing = model.route(codes, router=router, enabled=enabled, tokens=tokens, check_codes=False)
        out = model.head(tokens, routing.gates, experts)
    features = F.normalize(getattr(out, FEATURES[feature]).float(), dim=1)
    return features, routing.gates.float(), routing.missing.sum()


@torch.inference_mode()
def condition_features(
    model,
    cache,
    states: np.ndarray,
    pids: np.ndarray,
    condition: Condition,
    settings: TraceSettings,
    *,
    is_query: np.ndarray | None = None,
    bar=None,
    fill: np.ndarray | None = None,
    reuse: FeatureReuse | None = None,
) -> ConditionResult:
    """Run the expert blocks over the cached tokens of every image under ``condition``.

    ``states`` and ``pids`` cover every image of the cache, so that a counterfactual gives an
    identity one donor; ``is_query`` marks the queries (a prefix of the cache: the first segment),
    the images a counterfactual re-routes. ``fill`` (from :func:`mosaic.tracing.routing.fill_codes`)
    routes the missing states. ``reuse`` carries segments between conditions (see the module).
    """
    if settings.feature is None:
        raise MosaicError("TraceSettings.feature is None: name the feature to trace, bn or pre_bn")
    device = cache.device
    batch_size = settings.for_device(device.type).batch_size  # unset: the device's default, as for the trunk
    n_query = int(np.count_nonzero(is_query)) if is_query is not None else 0
    segments = [(0, n_query), (n_query, cache.n)] if 0 < n_query < cache.n else [(0, cache.n)]
    codes, filled = condition_codes(model, condition, states, pids, is_query, fill)
    keys = segment_keys(model, condition, codes, segments, settings.reuse)
    experts = active_experts(model, condition, settings.reuse)
    host_codes = torch.from_numpy(codes)
    if device.type == "cuda":
        host_codes = host_codes.pin_memory()  # lets the one copy below run without blocking the host
    routed = host_codes.to(device, non_blocking=True)
    enabled = torch.from_numpy(condition.enabled_mask).to(device, non_blocking=True)
    feats, gates, missing = [], [], []
    computed = 0
    for (first, last), key in zip(segments, keys):
        found = reuse.take(key) if (reuse is not None and settings.reuse) else None
        if found is None:
            parts = [head_batch(model, cache.read(a, b), routed[a:b], condition.router, enabled, experts,
                                settings.feature, settings.precision)
                     for a, b in _progress_chunks(first, last, batch_size, bar)]
            found = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
                     torch.stack([p[2] for p in parts]).sum()) if parts else None
            computed += last - first
            if found is not None and reuse is not None and settings.reuse:
                reuse.offer(key, found)
        elif bar is not None:
            bar.update(last - first)
        if found is not None:
            feats.append(found[0])
            gates.append(found[1])
            missing.append(found[2])
    L, E = len(model.expert_layers), model.n_experts
    return ConditionResult(
        features=torch.cat(feats) if feats else torch.zeros(0, model.embed_dim, device=device),
        gates=torch.cat(gates) if gates else torch.zeros(0, L, E, device=device),
        missing_routes=int(torch.stack(missing).sum()) if missing else 0,  # one read per condition
        filled_routes=int(filled.sum()),
        computed_rows=computed,
    )


def _progress_chunks(first: int, last: int, size: int, bar) -> Iterator[tuple[int, int]]:
    for a, b in chunks(first, last, size):
        yield a, b
        if bar is not None:
            bar.update(b - a)
