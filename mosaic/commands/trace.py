"""`mosaic trace --ckpt CKPT`: retrieval of every query under every routing condition, into HDF5.

The work lives in :mod:`mosaic.trace` (tracing) and :mod:`mosaic.traceio` (the file); this module
resolves the checkpoint, the dataset, the conditions and the settings from the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from mosaic.errors import MosaicError

CONDITIONS_HELP = (
    "Comma-separated patterns (fnmatch) over condition names: oracle, none, drop:<group> (information and "
    "capacity removed), fixed:<group> (same gates for every image: information removed, capacity kept), "
    "counterfactual:<group> (misrouting: the queries routed by another identity's state, how far a wrong route "
    "misleads retrieval), relabel:<group> (states permuted for every image: semantic specialisation), "
    "only:<group>, subset:<i>, learned, code (retrieval by attribute codes alone, no model). "
    "E.g. 'oracle,drop:*' or 'only:up*'. "
    "Default: all of them (learned only if the checkpoint has a learned router)."
)


def _resolve_device(name: str):
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


def _check_output(out: Path) -> Path:
    from mosaic.fileio import ensure_writable_dir

    if out.is_dir():
        raise MosaicError(f"--out {out} is a folder: give a file name such as {out / 'trace.h5'}")
    ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    return out


def _image_cache_dir(explicit: Optional[Path], config_dir: Optional[str], ckpt_path: Path) -> Optional[Path]:
    """Where decoded images are cached: --image-cache, else the config's, else the run's images/ if present."""
    if explicit is not None:
        return explicit
    if config_dir:
        return Path(config_dir)
    run_images = ckpt_path.resolve().parent.parent / "images"
    return run_images if ckpt_path.resolve().parent.name == "checkpoints" and run_images.is_dir() else None


def _command_line(params: dict[str, Any]) -> str:
    parts = ["mosaic", "trace"]
    for key, value in params.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def trace(
    ctx: typer.Context,
    ckpt: Path = typer.Option(..., "--ckpt", help="Checkpoint (.pt) from `mosaic train`, or its run folder (uses checkpoints/last.pt).", show_default=False),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset root to trace on. Default: the dataset the checkpoint was trained on (its config's data.root)."),
    format: Optional[str] = typer.Option(None, "--format", help="Dataset format of --data: market1501, dukemtmc or manifest. Default: detected."),
    attributes: Optional[Path] = typer.Option(None, "--attributes", help="Lin et al. attribute file (.mat) of --data. Default: found beside the dataset."),
    schema: Optional[str] = typer.Option(None, "--schema", help="Attribute schema of --data (shipped name or YAML). It must equal the checkpoint's."),
    out: Path = typer.Option(Path("trace.h5"), "--out", "-o", help="Output HDF5 trace (written atomically)."),
    conditions: Optional[str] = typer.Option(None, "--conditions", "-c", help=CONDITIONS_HELP),
    subsets: Optional[int] = typer.Option(None, "--subsets", help="Number of random subset:<i> conditions. Default: enough for 5 configurations per parameter of a configuration-level GLM, 5*(G+1) - (2+2G)."),
    top_k: int = typer.Option(10, "--top-k", help="Nearest gallery images kept per query and condition."),
    max_rank: int = typer.Option(50, "--max-rank", help="CMC curve length."),
    batch_size: int = typer.Option(128, "--batch-size", help="Images per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Seed of the counterfactual donors, the random subsets, the relabel permutations and the code condition's tie order."),
    fixed_gates: str = typer.Option("shares", "--fixed-gates", help="Gates of fixed:<group>: shares (each of the group's experts weighted by its state's share among the training identities) or majority (the majority state's expert alone)."),
    distance: str = typer.Option("cosine", "--distance", help="cosine or euclidean, on L2-normalised features."),
    feature: Optional[str] = typer.Option(None, "--feature", help="bn (after the BNNeck) or pre_bn. Default: the checkpoint's eval.feature."),
    cache_budget: Optional[float] = typer.Option(None, "--cache-budget", help="MiB the cached trunk tokens may use before spilling to disk. Default: half the free memory of the device."),
    spill_dir: Optional[Path] = typer.Option(None, "--spill-dir", help="Folder for spilled trunk tokens. Default: the system temporary folder."),
    image_cache: Optional[Path] = typer.Option(None, "--image-cache", help="Folder for decoded images. Default: the run's images/ folder if the checkpoint has one."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch. Default: torch's choice."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Trace a trained model: retrieval of every query under every routing condition, into one HDF5 file.

    The trunk (the blocks before the experts) runs once per image; each condition only re-runs the expert blocks. The file holds, per condition and query, AP, INP, rank-1, the first-match rank and the top-k neighbours; the gates; the images' ids and attribute states; and the provenance (docs/trace-format.md). Read it with `mosaic inspect`, `analysis.read_trace` or xarray.

    Examples: `mosaic trace --ckpt runs/demo/checkpoints/last.pt --out runs/demo/trace.h5`, or `mosaic trace --ckpt runs/demo --conditions 'oracle,none,drop:*' --device cuda`.
    """
    import torch

    from mosaic.conditions import resolve_conditions
    from mosaic.data import load_dataset
    from mosaic.trace import ImageSet, TraceSettings, build_provenance, trace_model
    from mosaic.train.checkpoint import load_checkpoint
    from mosaic.traceio import write_trace

    out = _check_output(Path(out))
    torch_device = _resolve_device(device)
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    loaded = load_checkpoint(ckpt, map_location=torch_device)
    model, config = loaded.model, loaded.config
    # conditions first: a typo in a pattern should fail before the dataset is read (the shares a
    # checkpoint may lack are looked up there later, so any valid shares stand in for them now)
    resolve_options = dict(n_subsets=subsets, seed=seed, has_learned=model.learned_router is not None, fixed_gates=fixed_gates)
    resolve_conditions(conditions, loaded.schema, state_shares=model.state_shares or _uniform_shares(loaded.schema), **resolve_options)
    data_cfg = config.data
    # --data replaces the whole dataset description; otherwise it is the training one.
    own = data is None
    root = Path(data_cfg.root) if own else data
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
    settings = TraceSettings(
        top_k=top_k,
        max_rank=max_rank,
        batch_size=batch_size,
        feature=feature or getattr(config.eval, "feature", "bn"),
        distance=distance,
        cache_budget_mb=cache_budget,
        spill_dir=str(spill_dir) if spill_dir is not None else None,
        progress=not quiet,
    )
    cache_dir = _image_cache_dir(image_cache, data_cfg.cache_dir if own else None, loaded.path)
    query = ImageSet.from_dataset(dataset, "query", model.img_size, cache_dir=cache_dir, progress=not quiet)
    gallery = ImageSet.from_dataset(dataset, "gallery", model.img_size, cache_dir=cache_dir, progress=not quiet)
    if len(query) == 0 or len(gallery) == 0:
        raise MosaicError(f"dataset {root} has {len(query)} query and {len(gallery)} gallery images: both are needed to trace")

    provenance = build_provenance(
        command=_command_line(ctx.params),
        config={"train": config.to_dict(), "trace": {"conditions": conditions, "subsets": subsets, "seed": seed, "fixed_gates": fixed_gates}},
        checkpoint={
            "path": str(loaded.path),
            "sha256": loaded.sha256,
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
    result = trace_model(
        model, query, gallery, selected, settings, device=torch_device, provenance=provenance, dataset=data_info
    )
    write_trace(result, out)
    names = result.condition_name.tolist()
    headline = ", ".join(f"{n} mAP {100 * result.mAP[names.index(n)]:.1f}" for n in ("oracle", "none") if n in names)
    typer.echo(
        f"wrote {out}: {result.n_conditions} conditions x {result.n_queries} queries "
        f"({int(result.valid.sum())} valid) x {result.n_gallery} gallery" + (f"; {headline}" if headline else ""),
        err=True,
    )


def _uniform_shares(schema) -> dict[str, list[float]]:
    return {g.name: [1.0 / len(g.states)] * len(g.states) for g in schema.groups}


def _annotated(dataset, split: str) -> bool:
    import numpy as np

    from mosaic.schema import MISSING

    states = dataset.states(split)
    return bool(np.size(states) and (np.asarray(states) != MISSING).any())


def _recover_state_shares(model, dataset, data_cfg) -> str | None:
    """Training state shares for a checkpoint that predates them: from its training split.

    ``dataset`` is the traced dataset when it is the checkpoint's own; otherwise the checkpoint's
    training dataset is read if it is still there. Returns where the shares came from, or
    ``None`` when they cannot be known (the kinds that need them are then unavailable).
    """
    from mosaic.data import load_dataset
    from mosaic.state_shares import training_state_shares

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


def register(app: typer.Typer) -> None:
    app.command(name="trace")(trace)
