"""A mosaic checkpoint's features under one routing condition, exported in the features-file format of
``mosaic trace --features`` (docs/audit.md), so the embedding audit runs end to end on a real
trained network: ``mosaic demo`` exports its model with every expert off (condition ``none``) and
audits it like any external model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from mosaic.core.errors import MosaicError

__all__ = ["export_features"]


def export_features(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    data: Optional[str | os.PathLike] = None,
    condition: str = "none",
    feature: Optional[str] = None,
    batch_size: int = 128,
    device: str = "auto",
    image_cache: Optional[str | os.PathLike] = None,
    model_name: Optional[str] = None,
    progress: bool = False,
) -> Path:
    """Write the query and gallery features of ``checkpoint`` under ``condition`` (default ``none``:
    the trained network with every expert off) on ``data`` (default: the dataset it was trained on)
    to ``out`` (``.npz``, atomically); returns ``out``."""
    import dataclasses

    from mosaic.conditions import resolve_conditions
    from mosaic.core.fileio import atomic_path
    from mosaic.data import load_dataset
    from mosaic.tracing.checkpoint import resolve_device
    from mosaic.tracing.engine import compute_trunk, condition_features
    from mosaic.tracing.image_set import ImageSet
    from mosaic.tracing.routing import fill_codes
    from mosaic.tracing.settings import TraceSettings
    from mosaic.train.checkpoint import load_checkpoint

    out = Path(out)
    if out.suffix != ".npz":
        raise MosaicError(f"--out {out}: the exported features are an .npz file, e.g. {out.with_suffix('.npz')}")
    torch_device = resolve_device(device)
    loaded = load_checkpoint(checkpoint, map_location=torch_device)
    model, config = loaded.model, loaded.config
    selected = resolve_conditions(condition, loaded.schema, has_learned=model.learned_router is not None,
                                  state_shares=model.state_shares)
    if len(selected) != 1:
        raise MosaicError(f"condition {condition!r} names {len(selected)} conditions: export one, e.g. none or oracle")
    own = data is None
    dataset = load_dataset(config.data.root if own else data, format=config.data.format if own else None,
                           attributes=config.data.attributes if own else None, schema=config.data.schema if own else None)
    if dataset.schema.fingerprint() != loaded.schema.fingerprint():
        raise MosaicError(f"checkpoint {loaded.path} was trained with attribute schema {loaded.schema.name!r} but the "
                          f"dataset {dataset.root} uses {dataset.schema.name!r}: export on data of the model's schema")
    settings = dataclasses.replace(TraceSettings(batch_size=batch_size, progress=progress),
                                   feature=feature or getattr(config.eval, "feature", "bn"))
    sets = [ImageSet.from_dataset(dataset, split, model.img_size, cache_dir=image_cache, progress=progress)
            for split in ("query", "gallery")]
    states = np.concatenate([s.states for s in sets])
    pids = np.concatenate([s.pid for s in sets])
    is_query = np.arange(len(pids)) < len(sets[0])
    model.eval()
    with compute_trunk(model, sets, settings, torch_device) as cache:
        fill = fill_codes(model, cache, states, settings.batch_size)
        result = condition_features(model, cache, states, pids, selected[0], settings, is_query=is_query, fill=fill)
    features = result.features.float().cpu().numpy()
    Q = len(sets[0])
    names = {split: np.array([Path(p).name for p in dataset.split(split)["path"].tolist()], dtype=str)
             for split in ("query", "gallery")}
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:  # np.savez would append .npz to a temporary name without it
            np.savez(handle, query_features=features[:Q], gallery_features=features[Q:], query_names=names["query"],
                     gallery_names=names["gallery"],
                     model=model_name or f"{Path(loaded.path).parent.parent.name or 'mosaic'}_{selected[0].name}")
    return out
