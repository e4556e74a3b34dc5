"""`mosaic trace --ckpt CKPT`: retrieval of every query under every routing condition, into HDF5.

The work lives in :func:`mosaic.api.trace` (orchestration in :mod:`mosaic.tracing.checkpoint`, the
engine in :mod:`mosaic.tracing.engine`, the file in :mod:`mosaic.tracefile`); this module parses the options,
calls it and prints the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mosaic.app.commands.options import progress_option


def _conditions_help() -> str:
    """The --conditions help, from the condition-kind registry (kinds registered before the CLI loads join it)."""
    from mosaic.conditions import CONDITION_KINDS

    kinds = "; ".join(f"{kind.syntax} ({kind.help})" for kind in CONDITION_KINDS.values())
    defaults = ", ".join(kind.default_pattern for kind in CONDITION_KINDS.values() if kind.in_default)
    return (
        f"Comma-separated patterns (fnmatch) over condition names: {kinds}. E.g. 'oracle,drop:*' or 'only:up*'. "
        f"Default: {defaults} (learned only if the checkpoint has a learned router)."
    )


CONDITIONS_HELP = _conditions_help()
# the options a trace of exported features reads (the others drive a checkpoint's tracing)
FEATURES_OPTIONS = ("features", "name", "data", "format", "attributes", "schema", "out", "top_k", "max_rank",
                    "distance", "seed")


def trace(
    ctx: typer.Context,
    ckpt: Optional[Path] = typer.Option(None, "--ckpt", help="Checkpoint (.pt) from `mosaic train`, or its run folder (uses checkpoints/last.pt). Either --ckpt or --features.", show_default=False),
    features: Optional[list[Path]] = typer.Option(None, "--features", help="An external model's exported features (.npz or HDF5 with query_features, gallery_features, query_names, gallery_names; docs/audit.md) instead of --ckpt; repeat for several models, each one condition embedding:<model>. Needs --data.", show_default=False),
    name: Optional[list[str]] = typer.Option(None, "--name", help="Model name of each --features file, in order (default: the file's 'model' entry, else its stem).", show_default=False),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset root to trace on. Default: the dataset the checkpoint was trained on (its config's data.root)."),
    format: Optional[str] = typer.Option(None, "--format", help="Dataset format of --data: market1501, dukemtmc or manifest. Default: detected."),
    attributes: Optional[Path] = typer.Option(None, "--attributes", help="Lin et al. attribute file (.mat) of --data. Default: found beside the dataset."),
    schema: Optional[str] = typer.Option(None, "--schema", help="Attribute schema of --data (shipped name or YAML). It must equal the checkpoint's."),
    out: Path = typer.Option(Path("trace.h5"), "--out", "-o", help="Output HDF5 trace (written atomically)."),
    conditions: Optional[str] = typer.Option(None, "--conditions", "-c", help=CONDITIONS_HELP),
    subsets: Optional[int] = typer.Option(None, "--subsets", help="Number of random subset:<i> conditions. Default: enough for 5 configurations per parameter of a configuration-level GLM, 5*(G+1) - (2+2G)."),
    top_k: int = typer.Option(10, "--top-k", help="Nearest gallery images kept per query and condition."),
    max_rank: int = typer.Option(50, "--max-rank", help="CMC curve length."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per forward pass. Default: 128 on the CPU, 256 on CUDA."),
    precision: str = typer.Option("fp32", "--precision", help="Arithmetic of the network: fp32, tf32 (CUDA only; on the CPU the same as fp32) or bf16 (autocast). Distances, ranking and routing decisions stay float32 (docs/validation.md)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Seed of the counterfactual donors, the random subsets, the relabel permutations and the code condition's tie order."),
    fixed_gates: str = typer.Option("shares", "--fixed-gates", help="Gates of fixed:<group>: shares (each of the group's experts weighted by its state's share among the training identities) or majority (the majority state's expert alone)."),
    distance: str = typer.Option("cosine", "--distance", help="cosine or euclidean, on L2-normalised features."),
    feature: Optional[str] = typer.Option(None, "--feature", help="bn (after the BNNeck) or pre_bn. Default: the checkpoint's eval.feature."),
    cache_budget: Optional[float] = typer.Option(None, "--cache-budget", help="MiB the cached trunk tokens may use before spilling to disk. Default: half the free memory of the device."),
    spill_dir: Optional[Path] = typer.Option(None, "--spill-dir", help="Folder for spilled trunk tokens. Default: the system temporary folder."),
    image_cache: Optional[Path] = typer.Option(None, "--image-cache", help="Folder for decoded images. Default: the run's images/ folder if the checkpoint has one."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch. Default: torch's choice."),
    progress: bool = progress_option(),
) -> None:
    """Trace a trained model: retrieval of every query under every routing condition, into one HDF5 file.

    The trunk (the blocks before the experts) runs once per image; each condition only re-runs the expert blocks. The file holds, per condition and query, AP, INP, rank-1, the first-match rank and the top-k neighbours; the gates; the images' ids and attribute states; and the provenance (docs/trace-format.md). Read it with `mosaic inspect`, `analysis.read_trace` or xarray.

    Examples: `mosaic trace --ckpt runs/demo/checkpoints/last.pt --out runs/demo/trace.h5`, or `mosaic trace --ckpt runs/demo --conditions 'oracle,none,drop:*' --device cuda`. Under `torchrun --nproc_per_node N -m mosaic trace ...` the conditions are shared out over the N processes and rank 0 writes the one trace (docs/market1501.md).
    """
    from mosaic import api
    from mosaic.tracing.settings import TraceSettings
    from mosaic.tracing.checkpoint import trace_command_line

    if features:
        if ckpt is not None:
            raise api.MosaicError("pass either --ckpt (a mosaic model) or --features (exported embeddings), not both")
        if data is None:
            raise api.MosaicError("--features needs --data: the dataset whose query/ and bounding_box_test/ images were exported")
        result = api.trace_features(
            features, out, data=data, names=name or None, format=format, attributes=attributes, schema=schema,
            top_k=top_k, max_rank=max_rank, distance=distance, seed=seed,
            command=trace_command_line({k: v for k, v in ctx.params.items() if k in FEATURES_OPTIONS}),
        )
        typer.echo(result.summary(), err=True)
        return
    if ckpt is None:
        # click's UsageError (usage line, exit 2), found as mosaic.app.cli finds ClickException: typer may run on its own click
        usage_error = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")
        raise usage_error("Missing option '--ckpt' (a mosaic model) or '--features' (exported embeddings).", ctx=ctx)

    settings = TraceSettings(
        top_k=top_k, max_rank=max_rank, batch_size=batch_size, feature=feature, distance=distance,
        cache_budget_mb=cache_budget, spill_dir=str(spill_dir) if spill_dir is not None else None, progress=progress,
        precision=precision,
    )
    result = api.trace(
        ckpt, out, conditions=conditions, settings=settings, data=data, format=format, attributes=attributes,
        schema=schema, subsets=subsets, seed=seed, fixed_gates=fixed_gates, device=device, image_cache=image_cache,
        threads=threads, progress=progress, command=trace_command_line(ctx.params),
    )
    typer.echo(result.summary(), err=True)


def register(app: typer.Typer) -> None:
    app.command(name="trace")(trace)
