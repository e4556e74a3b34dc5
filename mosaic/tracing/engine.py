"""Trunk-cached tracing: retrieval of every query under every routing condition, into a TraceData.

Experts sit only in the last blocks of the backbone, so everything before them (patch embedding
and the first ``depth - expert_blocks`` blocks: the *trunk*) does not depend on routing. The
tracer runs ``model.trunk`` once per query and gallery image and keeps the tokens; each condition
then runs only ``model.head`` (the expert blocks, norm, pooling, BNNeck) under its own gates. With
C conditions the cost falls from ``C * depth`` blocks per image to ``trunk_depth + C *
expert_depth`` (``benchmarks/bench_trace.py`` measures it).

The cached tokens (N images x T tokens x D floats; about 7.5 GB for Market-1501 at ViT-B
256x128) stay on the compute device when they fit a memory budget, and otherwise spill to a
temporary numpy memmap on disk that is removed afterwards. The head needs every token, so the
cache cannot be cut down to the CLS token.

Per condition the features are L2-normalised, compared by cosine (or Euclidean) distance, and
scored by :func:`mosaic.core.metrics.evaluate` with the standard protocol.
"""

from __future__ import annotations

import math
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mosaic.conditions import Condition
from mosaic.core.diskspace import SpaceNeed
from mosaic.core.errors import MosaicError
from mosaic.tracing.image_set import ImageSet
from mosaic.core.provenance import git_commit
from mosaic.tracing.token_cache import SPILL_FIX, TokenCache, default_budget
from mosaic.tracefile import TraceData
from mosaic.tracing.settings import FEATURES, TraceSettings

__all__ = [
    "ImageSet",
    "TokenCache",
    "TraceSettings",
    "ConditionResult",
    "build_provenance",
    "complete_provenance",
    "compute_trunk",
    "condition_features",
    "describe_conditions",
    "spill_need",
    "trace_model",
    "trunk_token_shape",
]

def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _progress(total: int, desc: str, enabled: bool):
    from mosaic.core.progress import progress_bar

    return progress_bar(total, desc, unit="img", enabled=enabled)


@torch.inference_mode()
def compute_trunk(model, image_sets: Sequence[ImageSet], settings: TraceSettings, device: torch.device) -> TokenCache:
    """Run ``model.trunk`` once over every image of ``image_sets`` (in order) into a :class:`TokenCache`."""
    from mosaic.model import normalize_images

    total = sum(len(s) for s in image_sets)
    budget = token_budget(settings, device)
    cache: TokenCache | None = None
    offset = 0
    with _progress(total, "trunk", settings.progress) as bar:
        for image_set in image_sets:
            for start, stop in _chunks(len(image_set), settings.batch_size):
                x = normalize_images(image_set.images[start:stop].to(device), model)
                tokens = model.trunk(x)
                if cache is None:
                    cache = TokenCache(total, tokens.shape[1:], device=device, budget_bytes=budget, spill_dir=settings.spill_dir)
                cache.write(offset, tokens)
                offset += stop - start
                bar.update(stop - start)
    if cache is None:  # no image at all: an empty cache of the right width
        cache = TokenCache(0, trunk_token_shape(model), device=device, budget_bytes=0)
    return cache


def trunk_token_shape(model) -> tuple[int, int]:
    """(tokens, width) of one image's trunk output: its patches plus the prefix (class) tokens."""
    backbone = model.backbone
    return backbone.patch_embed.num_patches + getattr(backbone, "num_prefix_tokens", 1), model.embed_dim


def token_budget(settings: TraceSettings, device: torch.device) -> float:
    """Bytes the cached trunk tokens may take on ``device`` before they spill to disk."""
    return settings.cache_budget_mb * 2**20 if settings.cache_budget_mb is not None else default_budget(device)


def spill_need(model, n_images: int, settings: TraceSettings, device: torch.device) -> SpaceNeed | None:
    """What the trunk tokens of ``n_images`` will write to disk (``None`` when they stay in memory)."""
    nbytes = n_images * math.prod(trunk_token_shape(model)) * 4
    if nbytes <= token_budget(settings, device):
        return None
    return SpaceNeed(Path(settings.spill_dir or tempfile.gettempdir()), nbytes, "spilled trunk tokens", SPILL_FIX)


@dataclass
class ConditionResult:
    """Features and routing of every image under one condition."""

    features: torch.Tensor   # (N, D) L2-normalised, images in cache order
    gates: torch.Tensor      # (N, L, E) float32 on the CPU
    missing_routes: int      # (image, enabled group) pairs left off for lack of a state
    filled_routes: int = 0   # (image, enabled group) pairs whose missing state was filled


@torch.inference_mode()
def condition_features(
    model,
    cache: TokenCache,
    states: np.ndarray,
    pids: np.ndarray,
    condition: Condition,
    settings: TraceSettings,
    *,
    is_query: np.ndarray | None = None,
    bar=None,
    fill: np.ndarray | None = None,
) -> ConditionResult:
    """Run the expert blocks over the cached tokens of every image under ``condition``.

    ``states`` and ``pids`` cover every image of the cache, so that a counterfactual gives an
    identity one donor; ``is_query`` marks the queries, the images a counterfactual re-routes.
    ``fill`` (from :func:`mosaic.tracing.routing.fill_codes`) routes the missing states.
    """
    from mosaic.conditions.interventions import fill_missing_routes

    device = cache.device
    codes, filled = fill_missing_routes(condition, condition.route_states(states, pids, is_query), fill)
    routed = torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64))
    enabled = torch.from_numpy(condition.enabled_mask).to(device)
    if settings.feature is None:
        raise MosaicError("TraceSettings.feature is None: name the feature to trace, bn or pre_bn")
    attr = FEATURES[settings.feature]
    feats, gates, missing = [], [], 0
    for start, stop in _chunks(cache.n, settings.batch_size):
        tokens = cache.read(start, stop)
        routing = model.route(routed[start:stop].to(device), router=condition.router, enabled=enabled, tokens=tokens)
        out = model.head(tokens, routing.gates)
        feats.append(F.normalize(getattr(out, attr).float(), dim=1))
        gates.append(routing.gates.float().cpu())
        missing += routing.n_missing
        if bar is not None:
            bar.update(stop - start)
    D = model.embed_dim
    L, E = len(model.expert_layers), model.n_experts
    return ConditionResult(
        features=torch.cat(feats) if feats else torch.zeros(0, D, device=device),
        gates=torch.cat(gates) if gates else torch.zeros(0, L, E),
        missing_routes=int(missing),
        filled_routes=int(filled.sum()),
    )


def _distance(qf: torch.Tensor, gf: torch.Tensor, kind: str) -> torch.Tensor:
    cos = qf @ gf.T
    if kind == "cosine":
        return 1.0 - cos
    return (2.0 - 2.0 * cos).clamp_(min=0.0).sqrt_()  # |a - b| for unit vectors


def trace_model(
    model,
    query: ImageSet,
    gallery: ImageSet,
    conditions: Sequence[Condition],
    settings: TraceSettings | None = None,
    *,
    device: str | torch.device = "cpu",
    provenance: Mapping[str, Any] | None = None,
    dataset: Mapping[str, Any] | None = None,
) -> TraceData:
    """Trace ``model`` on ``query`` x ``gallery`` under every condition (trunk computed once).

    Returns the in-memory :class:`TraceData`; write it with :func:`mosaic.tracefile.write_trace`.
    """
    settings = settings or TraceSettings()
    device = torch.device(device)
    schema = model.schema
    _check_inputs(model, query, gallery, conditions)
    from mosaic.conditions.codes import code_evaluation
    from mosaic.core.metrics import evaluate
    from mosaic.tracing.routing import check_condition_inputs, fill_codes, fill_method_of

    check_condition_inputs(model, conditions, query.states, gallery.states)
    model.eval()

    C, Q = len(conditions), len(query)
    L, E, K, R = len(model.expert_layers), model.n_experts, settings.top_k, settings.max_rank
    states = np.concatenate([query.states, gallery.states])
    pids = np.concatenate([query.pid, gallery.pid])
    is_query = np.arange(len(pids)) < Q
    out = {
        "ap": np.full((C, Q), np.nan, np.float32),
        "inp": np.full((C, Q), np.nan, np.float32),
        "rank1": np.zeros((C, Q), bool),
        "first_match_rank": np.full((C, Q), -1, np.int32),
        "topk_index": np.full((C, Q, K), -1, np.int32),
        "topk_distance": np.full((C, Q, K), np.nan, np.float32),
        "mAP": np.full(C, np.nan),
        "mINP": np.full(C, np.nan),
        "cmc": np.full((C, R), np.nan),
        "gates": np.zeros((C, Q, L, E), np.float32),
        "filled_routes": np.zeros(C, np.int64),
        "fill_method": np.full(C, "none", dtype=object),
    }
    valid: np.ndarray | None = None
    missing_routes: dict[str, int] = {}
    with compute_trunk(model, [query, gallery], settings, device) as cache:
        fill = fill_codes(model, cache, states, settings.batch_size)
        with _progress(C * cache.n, "conditions", settings.progress) as bar:
            for c, condition in enumerate(conditions):
                bar.set_postfix_str(condition.name, refresh=False)
                if condition.by_code:  # no model: gates stay zero
                    missing_routes[condition.name] = 0
                    ev = code_evaluation(query.states, gallery.states, query.pid, gallery.pid, query.camid,
                                         gallery.camid, seed=condition.code_tie_seed, max_rank=R, topk=K)
                    bar.update(cache.n)
                else:
                    result = condition_features(model, cache, states, pids, condition, settings, is_query=is_query, bar=bar, fill=fill)
                    missing_routes[condition.name] = result.missing_routes
                    out["filled_routes"][c] = result.filled_routes
                    out["fill_method"][c] = fill_method_of(model) if result.filled_routes else "none"
                    out["gates"][c] = result.gates[:Q].numpy()
                    distmat = _distance(result.features[:Q], result.features[Q:], settings.distance)
                    if distmat.device.type == "cpu":
                        distmat = distmat.numpy()  # the numpy evaluation avoids full sorts on the CPU
                    ev = evaluate(distmat, query.pid, gallery.pid, query.camid, gallery.camid, max_rank=R, topk=K)
                if valid is None:
                    valid = np.asarray(ev.valid, dtype=bool)
                elif not np.array_equal(valid, np.asarray(ev.valid, dtype=bool)):
                    raise RuntimeError("query validity changed between conditions: it must depend on ids and cameras only")
                _store(out, c, ev, K, R)
        cache_info = {"bytes": int(cache.nbytes), "spilled": bool(cache.spilled)}
    provenance = complete_provenance(provenance, conditions, schema, settings, missing_routes=missing_routes,
                                     trunk_cache=cache_info)
    return TraceData(
        schema=schema,
        query_pid=query.pid,
        query_camid=query.camid,
        query_path=query.path,
        query_states=query.states,
        gallery_pid=gallery.pid,
        gallery_camid=gallery.camid,
        gallery_path=gallery.path,
        gallery_states=gallery.states,
        condition_name=np.array([c.name for c in conditions], dtype=str).reshape(-1),
        condition_kind=np.array([c.kind for c in conditions], dtype=str).reshape(-1),
        condition_group=np.array([c.group for c in conditions], dtype=str).reshape(-1),
        condition_router=np.array([c.router for c in conditions], dtype=str).reshape(-1),
        enabled_groups=np.array([c.enabled for c in conditions], dtype=bool).reshape(C, len(schema.groups)),
        valid=valid if valid is not None else np.zeros(Q, bool),
        layers=np.asarray(model.expert_layers, dtype=np.int32),
        fixed_gates=model.routers["oracle"].fixed_gates.detach().cpu().numpy(),
        distance=settings.distance,
        provenance=provenance,
        dataset=dict(dataset or {}),
        **out,
    ).validate()


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _store(out: dict[str, np.ndarray], c: int, ev, K: int, R: int) -> None:
    """Copy one condition's Evaluation into the trace arrays (NaN / -1 where a query is invalid)."""
    valid = _as_numpy(ev.valid).astype(bool)
    out["ap"][c] = np.where(valid, _as_numpy(ev.ap), np.nan)
    out["inp"][c] = np.where(valid, _as_numpy(ev.inp), np.nan)
    out["rank1"][c] = _as_numpy(ev.rank1).astype(bool) & valid
    out["first_match_rank"][c] = np.where(valid, _as_numpy(ev.first_match_rank), -1)
    if K and ev.topk_index is not None:
        index, dist = _as_numpy(ev.topk_index)[:, :K], _as_numpy(ev.topk_distance)[:, :K]
        k = index.shape[1]
        out["topk_index"][c, :, :k] = index
        out["topk_distance"][c, :, :k] = np.where(index >= 0, dist, np.nan)  # pads: -1 / NaN in the trace
    out["mAP"][c] = float(ev.mAP)
    out["mINP"][c] = float(ev.mINP)
    cmc = _as_numpy(ev.cmc).astype(np.float64)
    out["cmc"][c, : min(R, len(cmc))] = cmc[:R]


def _check_inputs(model, query: ImageSet, gallery: ImageSet, conditions: Sequence[Condition]) -> None:
    G = len(model.schema.groups)
    for name, image_set in (("query", query), ("gallery", gallery)):
        if image_set.states.shape[1] != G:
            raise MosaicError(
                f"{name} images carry {image_set.states.shape[1]} attribute groups but the model's schema "
                f"{model.schema.name!r} has {G}: trace with data of the model's schema"
            )
    if not conditions:
        raise MosaicError("no routing condition to trace: pass at least one, e.g. --conditions oracle")
    names = [c.name for c in conditions]
    if len(set(names)) != len(names):
        raise MosaicError(f"condition names must be unique, got {names}")
    for c in conditions:
        if len(c.enabled) != G:
            raise MosaicError(f"condition {c.name!r} has an enabled mask of {len(c.enabled)} groups, the schema has {G}")
        if c.router not in model.routers:
            hint = ": the checkpoint has no learned router" if c.router == "learned" else ""
            raise MosaicError(f"condition {c.name!r} needs router {c.router!r}, which this model lacks{hint}")


def complete_provenance(provenance: Mapping[str, Any] | None, conditions: Sequence[Condition], schema,
                        settings: TraceSettings, *, missing_routes: Mapping[str, int],
                        trunk_cache: Mapping[str, Any]) -> dict[str, Any]:
    """``provenance`` with what the tracing itself adds: the conditions, the settings, the routes and the cache."""
    provenance = dict(provenance or {})
    provenance.setdefault("missing_routes", dict(missing_routes))
    provenance.setdefault("conditions", describe_conditions(conditions, schema))
    provenance.setdefault("trace_settings", asdict(settings))
    provenance.setdefault("trunk_cache", dict(trunk_cache))
    return provenance


def describe_conditions(conditions: Sequence[Condition], schema) -> list[dict[str, Any]]:
    """JSON-safe description of each condition (for provenance)."""
    return [
        {
            "name": c.name,
            "kind": c.kind,
            "group": c.group,
            "router": c.router,
            "enabled": [g for g, on in zip(schema.group_names, c.enabled) if on],
            "states": "attribute codes, no model" if c.by_code else str(c.transform),
        }
        for c in conditions
    ]


# ------------------------------------------------------------------------------- provenance

def _package_versions() -> dict[str, str]:
    from mosaic import __version__
    from mosaic.core.provenance import package_versions

    return {"python": platform.python_version(), "mosaic": __version__,
            **package_versions(("torch", "timm", "numpy", "h5py", "pandas", "peft"))}


def build_provenance(
    *,
    command: str | Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
    checkpoint: Mapping[str, Any] | None = None,
    dataset_paths: Mapping[str, Any] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance record of a trace: command, config, versions, git commit, checkpoint, data, seed, device."""
    if command is None:
        command = sys.argv
    if not isinstance(command, str):
        command = " ".join(str(a) for a in command)
    device_name = str(device) if device is not None else None
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        device_name = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    record = {
        "command": command,
        "config": dict(config or {}),
        "versions": _package_versions(),
        "git_commit": git_commit(),
        "checkpoint": dict(checkpoint or {}),
        # flat as well: the one fact most readers look up, a plain attribute in /provenance
        "checkpoint_sha256": (checkpoint or {}).get("sha256"),
        "dataset_paths": dict(dataset_paths or {}),
        "seed": seed,
        "device": device_name,
    }
    record.update(extra)
    return {k: v for k, v in record.items() if v is not None}
