"""Tracing a trained checkpoint end to end: checkpoint -> dataset -> conditions -> trace file.

:func:`trace` is the orchestration behind ``mosaic trace`` and :func:`mosaic.api.trace`; the engine that
computes features and retrieval lives in :mod:`mosaic.tracing.engine`, the file contract in
:mod:`mosaic.tracefile`. Every check that can fail on the inputs (conditions, schema, annotations,
output path) runs before the first image is decoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from mosaic.core.diskspace import OUT_FIX, SpaceNeed
from mosaic.core.errors import MosaicError

__all__ = ["TraceResult", "check_output", "resolve_device", "space_needs", "trace", "trace_checkpoint", "trace_command_line"]


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MosaicError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MosaicError(f"device {name!r} asked for but CUDA is not available here: use --device cpu")
    return device


def check_output(out: Path) -> Path:
    from mosaic.core.fileio import ensure_writable_dir

    if out.is_dir():
        raise MosaicError(f"--out {out} is a folder: give a file name such as {out / 'trace.h5'}")
    ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    return out


def trace_command_line(params: dict[str, Any]) -> str:
    """``mosaic trace ...`` with these options (the command recorded in the trace's provenance)."""
    parts = ["mosaic", "trace"]
    for key, value in params.items():
        if value is None or value is False or key == "progress":  # progress changes no number of the trace
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, (list, tuple)):  # a repeated option: --features A --features B
            parts.extend(f"{flag} {item}" for item in value)
            continue
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def _image_cache_dir(explicit: Optional[Path], config_dir: Optional[str], ckpt_path: Path) -> Optional[Path]:
    """Where decoded images are cached: the explicit folder, else the config's, else the run's images/ if present."""
    if explicit is not None:
        return Path(explicit)
    if config_dir:
        return Path(config_dir)
    run_images = ckpt_path.resolve().parent.parent / "images"
    return run_images if ckpt_path.resolve().parent.name == "checkpoints" and run_images.is_dir() else None


def trace_checkpoint(
    checkpoint: Path,
    *,
    settings,
    data: Optional[Path] = None,
    format: Optional[str] = None,
    attributes: Optional[Path] = None,
    schema: Optional[str] = None,
    conditions: Optional[str] = None,
    subsets: Optional[int] = None,
    seed: int = 0,
    fixed_gates: str = "shares",
    device: str = "auto",
    image_cache: Optional[Path] = None,
    threads: Optional[int] = None,
    command: str = "",
    out: Optional[Path] = None,
):
    """Trace ``checkpoint`` on its dataset (or ``data``) under the selected conditions.

    ``settings`` is a :class:`mosaic.tracing.settings.TraceSettings`; its ``feature`` may be ``None`` for the
    checkpoint's ``eval.feature``. Returns the :class:`mosaic.tracefile.TraceData` (not yet written).
    ``out``: where the caller will write it; with the image cache and any spilled trunk tokens, its
    estimated size must fit the free space before the first image is decoded.
    """
    import dataclasses

    import torch

    from mosaic.conditions import resolve_conditions
    from mosaic.data import load_dataset
    from mosaic.core.diskspace import require_space
    from mosaic.tracing.engine import ImageSet, build_provenance, trace_model
    from mosaic.train.checkpoint import load_checkpoint

    dist = _distributed(device)
    torch_device = dist.device if dist is not None else resolve_device(device)
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    loaded = load_checkpoint(checkpoint, map_location=torch_device)
    model, config = loaded.model, loaded.config
    # conditions first: a typo in a pattern should fail before the dataset is read (the shares a
    # checkpoint may lack are looked up there later, so any valid shares stand in for them now)
    resolve_options = dict(n_subsets=subsets, seed=seed, has_learned=model.learned_router is not None, fixed_gates=fixed_gates)
    resolve_conditions(conditions, loaded.schema, state_shares=model.state_shares or _uniform_shares(loaded.schema), **resolve_options)
    data_cfg = config.data
    # `data` replaces the whole dataset description; otherwise it is the training one.
    own = data is None
    root = Path(data_cfg.root) if own else Path(data)
    dataset = load_dataset(
        root,
        format=format or (data_cfg.format if own else None),
        attributes=attributes or (data_cfg.attributes if own else None),
        schema=schema or (data_cfg.schema if own else None),
    )
    if dataset.schema.fingerprint() != loaded.schema.fingerprint():
        raise MosaicError(
            f"checkpoint {loaded.path} was trained with attribute schema {loaded.schema.name!r} "
            f"(groups {', '.join(loaded.schema.group_names)}) but the dataset {root} uses {dataset.schema.name!r} "
            f"(groups {', '.join(dataset.schema.group_names)}): trace with a checkpoint trained on this schema, "
            f"or pass --data/--schema of the checkpoint's"
        )
    shares_source = "checkpoint" if model.state_shares is not None else _recover_state_shares(model, dataset if own else None, data_cfg)
    selected = resolve_conditions(
        conditions, loaded.schema, state_shares=model.state_shares,
        has_annotations=_annotated(dataset, "query") and _annotated(dataset, "gallery"), **resolve_options,
    )
    if settings.feature is None:
        settings = dataclasses.replace(settings, feature=getattr(config.eval, "feature", "bn"))
    cache_dir = _image_cache_dir(image_cache, data_cfg.cache_dir if own else None, loaded.path)
    n_query, n_gallery = len(dataset.split("query")), len(dataset.split("gallery"))
    if n_query == 0 or n_gallery == 0:
        raise MosaicError(f"dataset {root} has {n_query} query and {n_gallery} gallery images: both are needed to trace")

    provenance = build_provenance(
        command=command,
        config={"train": config.to_dict(), "trace": {"conditions": conditions, "subsets": subsets, "seed": seed, "fixed_gates": fixed_gates}},
        checkpoint={
            "path": str(loaded.path),
            "sha256": loaded.sha256,
            "verified": loaded.verified,  # the checkpoint's digests checked on loading (mosaic.train.checkpoint_digest)
            "step": loaded.step,
            "epoch": loaded.epoch,
            "finished": loaded.finished,
        },
        dataset_paths={
            "root": str(dataset.root),
            "attribute_file": str(dataset.attribute_file) if dataset.attribute_file else None,
        },
        seed=seed,
        device=torch_device,
        state_shares=model.state_shares,
        state_shares_source=shares_source,
    )
    # everything tracing will write must fit before the first image is decoded or the model runs
    require_space(space_needs(out, dataset, model, selected, settings, torch_device, cache_dir, provenance))
    if dist is not None and not dist.is_main:
        dist.barrier()  # rank 0 decodes the images into the cache first; the others then read it
    query = ImageSet.from_dataset(dataset, "query", model.img_size, cache_dir=cache_dir, progress=settings.progress)
    gallery = ImageSet.from_dataset(dataset, "gallery", model.img_size, cache_dir=cache_dir, progress=settings.progress)
    if dist is not None and dist.is_main:
        dist.barrier()
    data_info = {
        "name": dataset.name,
        "format": dataset.format,
        "root": str(dataset.root),
        "attribute_file": str(dataset.attribute_file) if dataset.attribute_file else "",
        "schema": dataset.schema.name,
        "n_query": len(query),
        "n_gallery": len(gallery),
        "n_query_ids": int(len(set(query.pid.tolist()))),
    }
    try:
        return trace_model(model, query, gallery, selected, settings, device=torch_device, provenance=provenance,
                           dataset=data_info, dist=dist)
    finally:
        if dist is not None:
            from mosaic.train.distributed import shutdown_distributed

            shutdown_distributed(dist)


def _distributed(device: str):
    """The process group when launched by ``torchrun`` with several processes (each traces a share
    of the conditions, :mod:`mosaic.tracing.sharding`); ``None`` for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from mosaic.train.distributed import init_distributed

    return init_distributed(device)


def space_needs(out, dataset, model, conditions, settings, device, cache_dir, provenance) -> list[SpaceNeed]:
    """What tracing ``dataset`` will write: the trace (estimated from its layout), the decoded
    images' cache and the spilled trunk tokens, where they go."""
    from mosaic.tracing.image_set import relative_path
    from mosaic.data.images import cache_need
    from mosaic.tracing.engine import complete_provenance, spill_need
    from mosaic.tracefile.size import estimate_trace_bytes
    from mosaic.tracefile.write import attribute_json

    paths = {split: dataset.split(split)["path"].tolist() for split in ("query", "gallery")}
    needs = [cache_need(paths[split], model.img_size, cache_dir) for split in paths]
    needs.append(spill_need(model, sum(len(p) for p in paths.values()), settings, device))
    if out is not None:
        schema = model.schema
        names = [c.name for c in conditions]
        recorded = complete_provenance(provenance, conditions, schema, settings, missing_routes=dict.fromkeys(names, 0),
                                       trunk_cache={"bytes": 0, "spilled": False})
        sizes = {"condition": len(conditions), "query": len(paths["query"]), "gallery": len(paths["gallery"]),
                 "group": len(schema.groups), "expert": schema.n_experts, "layer": len(model.expert_layers),
                 "rank": settings.max_rank, "topk": settings.top_k}
        nbytes = estimate_trace_bytes(
            sizes,
            query_paths=[relative_path(p, dataset.root) for p in paths["query"]],
            gallery_paths=[relative_path(p, dataset.root) for p in paths["gallery"]],
            condition_names=names,
            routed_conditions=sum(1 for c in conditions if c.n_enabled and not c.by_code),
            metadata_bytes=len(attribute_json(recorded)) + len(schema.to_json()),
        )
        needs.append(SpaceNeed(Path(out), nbytes, "trace", OUT_FIX))
    return [need for need in needs if need is not None]


def _uniform_shares(schema) -> dict[str, list[float]]:
    return {g.name: [1.0 / len(g.states)] * len(g.states) for g in schema.groups}


def _annotated(dataset, split: str) -> bool:
    import numpy as np

    from mosaic.core.schema import MISSING

    states = dataset.states(split)
    return bool(np.size(states) and (np.asarray(states) != MISSING).any())


def _recover_state_shares(model, dataset, data_cfg) -> str | None:
    """Training state shares for a checkpoint that predates them: from its training split.

    ``dataset`` is the traced dataset when it is the checkpoint's own; otherwise the checkpoint's
    training dataset is read if it is still there. Returns where the shares came from, or
    ``None`` when they cannot be known (the kinds that need them are then unavailable).
    """
    from mosaic.data import load_dataset
    from mosaic.conditions.state_shares import training_state_shares

    if dataset is None:
        try:
            dataset = load_dataset(Path(data_cfg.root), format=data_cfg.format, attributes=data_cfg.attributes, schema=data_cfg.schema)
        except MosaicError:
            return None
    train = dataset.split("train")
    if not len(train) or dataset.schema.fingerprint() != model.schema.fingerprint():
        return None
    model.set_state_shares(training_state_shares(dataset.states("train"), train["pid"].to_numpy(), model.schema))
    return f"recomputed from the training split of {dataset.root}"


@dataclass(repr=False)
class TraceResult:
    """A traced checkpoint: the file written (``None`` when not asked to write) and its contents
    (a :class:`mosaic.tracefile.TraceData`)."""

    path: Optional[Path]
    data: Any

    @property
    def headline(self) -> dict[str, float]:
        """mAP of the ``oracle`` and ``none`` conditions, where traced."""
        names = self.data.condition_name.tolist()
        return {n: float(self.data.mAP[names.index(n)]) for n in ("oracle", "none") if n in names}

    def summary(self) -> str:
        data = self.data
        if data is None:
            return "traced this process's share of the conditions; rank 0 wrote the trace"
        headline = ", ".join(f"{n} mAP {100 * v:.1f}" for n, v in self.headline.items())
        return (f"wrote {self.path}: {data.n_conditions} conditions x {data.n_queries} queries "
                f"({int(data.valid.sum())} valid) x {data.n_gallery} gallery" + (f"; {headline}" if headline else ""))

    def _display(self):
        """In a notebook, the short display of the trace itself (:func:`analysis.trace.trace_display`)."""
        from analysis.trace import Trace, trace_display

        display = trace_display(Trace(self.data, self.path))
        display.title = "TraceResult"
        return display

    def _repr_html_(self) -> str:
        return self._display().to_html()

    def __repr__(self) -> str:
        return self._display().to_text()


def trace(
    checkpoint: str | os.PathLike,
    out: Optional[str | os.PathLike] = None,
    *,
    conditions: Optional[str] = None,
    settings=None,
    data: Optional[str | os.PathLike] = None,
    format: Optional[str] = None,
    attributes: Optional[str | os.PathLike] = None,
    schema: Optional[str] = None,
    subsets: Optional[int] = None,
    seed: int = 0,
    fixed_gates: str = "shares",
    device: str = "auto",
    image_cache: Optional[str | os.PathLike] = None,
    threads: Optional[int] = None,
    progress: bool = True,
    command: Optional[str] = None,
) -> TraceResult:
    """Trace a checkpoint (a ``.pt`` file or a run folder) under routing conditions, into ``out`` (HDF5).

    ``conditions``: comma-separated name patterns (``"oracle,drop:*"``; default: all kinds).
    ``settings``: a :class:`mosaic.tracing.settings.TraceSettings` (its ``feature=None`` means the checkpoint's
    ``eval.feature``; its ``progress`` is replaced by ``progress``). ``out=None`` returns the trace
    without writing it. ``command`` is recorded in the provenance (default: the equivalent
    ``mosaic trace`` command line).
    """
    import dataclasses

    from mosaic.tracing.settings import TraceSettings
    from mosaic.tracefile import write_trace

    out = check_output(Path(out)) if out is not None else None
    settings = dataclasses.replace(settings or TraceSettings(feature=None), progress=progress)
    if command is None:
        command = trace_command_line({
            "ckpt": checkpoint, "data": data, "format": format, "attributes": attributes, "schema": schema,
            "out": out, "conditions": conditions, "subsets": subsets, "top_k": settings.top_k,
            "max_rank": settings.max_rank, "batch_size": settings.batch_size, "precision": settings.precision,
            "device": device, "seed": seed,
            "fixed_gates": fixed_gates, "distance": settings.distance, "feature": settings.feature,
            "cache_budget": settings.cache_budget_mb, "spill_dir": settings.spill_dir, "image_cache": image_cache,
            "threads": threads,
        })
    result = trace_checkpoint(
        Path(checkpoint), settings=settings, data=data, format=format, attributes=attributes, schema=schema,
        conditions=conditions, subsets=subsets, seed=seed, fixed_gates=fixed_gates, device=device,
        image_cache=image_cache, threads=threads, command=command, out=out,
    )
    if result is None:  # a rank other than 0 of a multi-process trace: rank 0 writes
        return TraceResult(path=None, data=None)
    if out is not None:
        write_trace(result, out)
    return TraceResult(path=out, data=result)
