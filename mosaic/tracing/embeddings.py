"""Traces from external embeddings: ``mosaic trace --features FILE [--features FILE2 ...]`` (torch-free).

Each features file (:mod:`mosaic.tracing.features_file`) is one model's query and gallery features;
it becomes one ``embedding:<model>`` condition of the trace. Identities, cameras and attribute
states come from the dataset, loaded as for a mosaic model (:func:`mosaic.data.load_dataset`: junk
pid -1 dropped, distractors 0000 kept in the gallery); retrieval is scored by the project's protocol
(:func:`mosaic.core.metrics.evaluate`) on L2-normalised features. The trace is written by the one
trace writer, so it is the same self-describing format as a checkpoint's: no experts (no layers,
no gates), router ``none``, and in its provenance the features files with their SHA-256.
The arrays of the trace (retrieval, sampled pairs) are built by :func:`mosaic.tracefile.embedding.embedding_trace`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mosaic.core.errors import MosaicError
from mosaic.tracing.checkpoint import TraceResult, check_output, trace_command_line
from mosaic.tracefile.embedding import DEFAULT_PAIRS_PER_QUERY
from mosaic.tracing.features_file import FeaturesFile, read_features_file

__all__ = ["EmbeddingTraceResult", "match_to_dataset", "trace_embeddings", "trace_features"]

JUNK_NAME = re.compile(r"^-1_")  # Market-1501 / DukeMTMC-reID junk boxes: the loaders drop them


@dataclass
class EmbeddingTraceResult(TraceResult):
    """A trace of external embeddings: the file written and its :class:`mosaic.tracefile.TraceData`."""

    @property
    def headline(self) -> dict[str, float]:
        """mAP of every model."""
        return {str(n): float(m) for n, m in zip(self.data.condition_name.tolist(), self.data.mAP.tolist())}

    def summary(self) -> str:
        junk = sum(sum(f.get("junk_names_ignored", {}).values()) for f in self.data.provenance.get("features", []))
        return super().summary() + (f"; {junk} junk (pid -1) names in the features ignored, as the loaders drop "
                                    f"those images" if junk else "")


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


def match_to_dataset(features: FeaturesFile, table, split: str, folder: str) -> tuple[np.ndarray, int]:
    """Row of ``features`` for each image of the dataset split ``table`` (in the dataset's order),
    and how many of the file's names were junk (pid -1) images, which the loaders drop."""
    names = np.asarray(getattr(features, f"{split}_names"))
    dataset_names = np.array([os.path.basename(p) for p in table["path"].tolist()], dtype=str)
    position = {n: i for i, n in enumerate(names.tolist())}
    junk = np.array([bool(JUNK_NAME.match(n)) for n in names.tolist()], dtype=bool)
    known = set(dataset_names.tolist())
    unknown = [n for n, j in zip(names.tolist(), junk.tolist()) if not j and n not in known]
    if unknown:
        raise MosaicError(
            f"features file {features.path}: {len(unknown)} {split} names are not images of the dataset's {folder}/ "
            f"(e.g. {unknown[0]!r}): pass the --data the features were exported from, with names as in {folder}/"
        )
    absent = [n for n in dataset_names.tolist() if n not in position]
    if absent:
        raise MosaicError(
            f"features file {features.path} lacks {len(absent)} of the dataset's {len(dataset_names)} {folder}/ images "
            f"(e.g. {absent[0]!r}): export the features of every {split} image, as the evaluation protocol ranks them all"
        )
    return np.array([position[n] for n in dataset_names.tolist()], dtype=np.int64), int(junk.sum())


def trace_embeddings(files: Sequence[FeaturesFile], dataset, *, top_k: int = 10, max_rank: int = 50,
                     distance: str = "cosine", pairs_per_query: int = DEFAULT_PAIRS_PER_QUERY, seed: int = 0,
                     command: str = "", progress=None):
    """The :class:`mosaic.tracefile.TraceData` of these models' features on ``dataset`` (a ``ReIDDataset``)."""
    from mosaic import __version__
    from mosaic.core.provenance import git_commit, package_versions
    from mosaic.tracefile.embedding import embedding_trace

    models = [f.model for f in files]
    if len(set(models)) != len(models):
        raise MosaicError(f"two features files are named {sorted(m for m in models if models.count(m) > 1)[0]!r}: "
                          f"give each model its own name (--name, in the order of --features)")
    tables = {s: dataset.split(s) for s in ("query", "gallery")}
    if len(tables["query"]) == 0 or len(tables["gallery"]) == 0:
        raise MosaicError(f"dataset {dataset.root} has no query or no gallery images: both are needed to trace")
    folders = {"query": "query", "gallery": "bounding_box_test" if dataset.format in ("market1501", "dukemtmc") else "gallery"}
    features, junk = {}, []
    for f in files:  # every file is checked against the dataset before any distance is computed
        matched = {s: match_to_dataset(f, tables[s], s, folders[s]) for s in tables}
        features[f.model] = (f.query_features[matched["query"][0]], f.gallery_features[matched["gallery"][0]])
        junk.append({s: matched[s][1] for s in matched})
    images = {s: {"pid": tables[s]["pid"].to_numpy(np.int64), "camid": tables[s]["camid"].to_numpy(np.int64),
                  "path": np.array([_relative(p, dataset.root) for p in tables[s]["path"].tolist()], dtype=str),
                  "states": dataset.states(s)} for s in tables}
    provenance = {
        "command": command,
        "config": {"trace": {"features": [str(f.path) for f in files], "names": models, "top_k": top_k,
                             "max_rank": max_rank, "distance": distance, "pairs_per_query": pairs_per_query,
                             "seed": seed}},
        "versions": {"mosaic": __version__, **package_versions(("numpy", "h5py", "pandas"))},
        "git_commit": git_commit(),
        # the source of every condition's numbers: the features file and its hash
        "features": [{"model": f.model, "path": str(f.path), "sha256": f.sha256, "dimensions": f.dim,
                      "junk_names_ignored": junk[i]} for i, f in enumerate(files)],
        "features_sha256": ",".join(f.sha256 for f in files),
        "dataset_paths": {"root": str(dataset.root),
                          "attribute_file": str(dataset.attribute_file) if dataset.attribute_file else None},
        "seed": seed,
    }
    data_info = {
        "name": dataset.name, "format": dataset.format, "root": str(dataset.root),
        "attribute_file": str(dataset.attribute_file) if dataset.attribute_file else "",
        "schema": dataset.schema.name, "n_query": len(tables["query"]), "n_gallery": len(tables["gallery"]),
        "n_query_ids": int(len(set(images["query"]["pid"].tolist()))),
    }
    return embedding_trace(dataset.schema, images["query"], images["gallery"], features, top_k=top_k,
                           max_rank=max_rank, distance=distance, pairs_per_query=pairs_per_query, seed=seed,
                           provenance={k: v for k, v in provenance.items() if v is not None}, dataset=data_info,
                           progress=progress)


def trace_features(
    features: str | os.PathLike | Sequence[str | os.PathLike],
    out: Optional[str | os.PathLike] = None,
    *,
    data: str | os.PathLike,
    names: Optional[Sequence[str] | str] = None,
    format: Optional[str] = None,
    attributes: Optional[str | os.PathLike] = None,
    schema: Optional[str] = None,
    top_k: int = 10,
    max_rank: int = 50,
    distance: str = "cosine",
    pairs_per_query: int = DEFAULT_PAIRS_PER_QUERY,
    seed: int = 0,
    command: Optional[str] = None,
    progress=None,
) -> EmbeddingTraceResult:
    """Trace external models' features (``.npz`` / HDF5 files, one model each) on the dataset ``data``
    into ``out`` (``None``: return the trace without writing it). ``names``: one condition name per
    file (default: the file's ``model`` entry, else its stem). Every input is checked before any
    distance is computed, and nothing is written on any error."""
    from mosaic.data import load_dataset
    from mosaic.tracefile import write_trace

    paths = [features] if isinstance(features, (str, os.PathLike)) else list(features)
    if not paths:
        raise MosaicError("no features file given: pass --features FILE (one per model)")
    if isinstance(names, str):
        names = [names]
    if names is not None and len(names) != len(paths):
        raise MosaicError(f"{len(names)} --name for {len(paths)} --features: give one name per features file, or none")
    out = check_output(Path(out)) if out is not None else None
    files = [read_features_file(p, None if names is None else names[i]) for i, p in enumerate(paths)]
    dataset = load_dataset(data, format=format, attributes=attributes, schema=schema)
    if command is None:
        command = trace_command_line({"features": paths, "data": data, "name": names, "top_k": top_k,
                                      "max_rank": max_rank, "distance": distance, "seed": seed, "out": out})
    result = trace_embeddings(files, dataset, top_k=top_k, max_rank=max_rank, distance=distance,
                              pairs_per_query=pairs_per_query, seed=seed, command=command, progress=progress)
    if out is not None:
        write_trace(result, out)
    return EmbeddingTraceResult(path=out, data=result)
