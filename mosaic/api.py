"""The library API: everything the ``mosaic`` commands do, as Python functions.

Each function validates its inputs before any heavy work, raises :class:`mosaic.core.errors.MosaicError`
(one line naming the problem and the fix) for anything the caller can correct, and returns a typed
result. The command line (:mod:`mosaic.app.commands`) only parses options, calls these and prints.
This module is the stable import point; the functions live with the layer that does the work.

Example::

    from mosaic import api

    world = api.synth("worlds/default")
    run = api.train("synthetic_micro", out="runs/micro", overrides=[f"data.root={world.path}"])
    traced = api.trace(run.checkpoint, "runs/micro/trace.h5", conditions="oracle,none,drop:*")
    report = api.report(traced.path, "runs/micro/report.html")

    # any ReID model, from its exported features (docs/audit.md)
    audited = api.trace_features(["osnet.npz"], "osnet_trace.h5", data="Market-1501-v15.09.15")

Importing this module loads neither torch nor the analysis stack; each function loads what it needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from mosaic.app.demo import DemoResult, demo
from mosaic.app.reporting import ReportResult, StudyResult, report, report_output, study, write_reports
from mosaic.core.errors import MosaicError
from mosaic.tracing.checkpoint import TraceResult, trace
from mosaic.tracing.embeddings import EmbeddingTraceResult, trace_features
from mosaic.tracing.settings import TraceSettings
from mosaic.train.launch import train
from mosaic.train.run import TrainResult

__all__ = ["DemoResult", "EmbeddingTraceResult", "MosaicError", "ReportResult", "StudyResult", "SynthResult", "TraceResult", "TraceSettings",
           "TrainResult",
           "check_data", "check_trace", "configs", "copy_config", "demo", "get_attributes", "inspect", "report",
           "report_output", "study", "synth", "trace", "trace_features", "train", "write_reports"]

PathLike = str | os.PathLike


@dataclass
class SynthResult:
    """A synthesised world: its folder and the number of images in each of its image folders."""

    path: Path
    images: dict[str, int]


def synth(out: PathLike, config=None, *, overwrite: bool = False, progress: bool = True) -> SynthResult:
    """Draw a synthetic world (a :class:`mosaic.synth.WorldConfig`; default: the default world) into ``out``,
    in its layout's folders and attribute file, with the sidecar that makes it reproducible."""
    from mosaic.synth import WorldConfig, synthesize

    path = synthesize(Path(out), config if config is not None else WorldConfig(), overwrite=overwrite, progress=progress)
    images = {p.name: sum(1 for _ in p.glob("*.jpg")) for p in sorted(path.iterdir()) if p.is_dir()}
    return SynthResult(path=path, images=images)


def check_data(root: PathLike, *, format: Optional[str] = None, attributes: Optional[PathLike] = None,
               schema: Optional[str] = None):
    """Load a dataset the way training will and report what is in it (:class:`mosaic.data.DataReport`:
    splits, attribute coverage, and every trap found, as findings with a severity)."""
    from mosaic.data import DataReport, load_dataset

    dataset = load_dataset(root, format=format, attributes=attributes, schema=schema, allow_missing_attributes=True)
    return DataReport.from_dataset(dataset)


def get_attributes(out: Optional[PathLike] = None, *, datasets: Optional[Sequence[str]] = None,
                   base_url: Optional[str] = None, timeout: float = 30.0,
                   progress: Callable[[str], None] | None = None) -> list[Path]:
    """Download the Lin et al. attribute files at pinned commits, checksum-verified, into ``out`` (default:
    the user cache, where training finds them); returns their paths. Nothing is written on any failure."""
    from mosaic.data.download import get_attributes as download

    return download(out, datasets=list(datasets) if datasets else None, base_url=base_url, timeout=timeout,
                    progress=progress)


def inspect(trace: PathLike) -> dict[str, Any]:
    """What a trace holds, as JSON-safe data: versions, sizes, provenance, one row per condition and the
    decomposition per group. Reads the attributes and per-condition arrays only (never the gates)."""
    from mosaic.app.inspection import summarize_trace

    return summarize_trace(Path(trace))


def check_trace(trace: PathLike) -> list:
    """Every violation of the format's value rules in ``trace`` (:class:`mosaic.tracefile.check.Violation`),
    rather than the first, which reading raises."""
    from mosaic.tracefile import check_trace_file

    return check_trace_file(Path(trace))


def configs() -> list:
    """The training configs shipped with mosaic (:class:`mosaic.configs.ShippedConfig`), sorted by name.

    Any of their names works wherever a config file does (``train("synthetic_micro", ...)``).
    """
    from mosaic.configs import shipped_configs

    return shipped_configs()


def copy_config(name: str, dest: PathLike, *, overwrite: bool = False) -> Path:
    """Write the shipped config ``name`` to ``dest`` (a file, or a folder for ``NAME.yaml``) to edit it."""
    from mosaic.configs import copy_config as copy

    return copy(name, dest, overwrite=overwrite)
