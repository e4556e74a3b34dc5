"""``load_dataset``: one entry point over a registry of dataset formats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd

from mosaic.data.attributes import AttributeTable, read_attribute_file
from mosaic.data.dataset import DISTRACTOR_PID, SPLITS, Finding, ReIDDataset, finalize_images
from mosaic.data.folders import FOLDER_LAYOUTS, FolderLayout, has_split_dirs, image_names, match_fraction, scan_folders
from mosaic.data.manifest import MANIFEST_NAME, manifest_path, read_manifest
from mosaic.data.mapping import AttributeMapping, load_mapping
from mosaic.core.errors import MosaicError
from mosaic.core.schema import AttributeSchema

SchemaLike = str | Path | AttributeSchema


class Loader(Protocol):
    def __call__(
        self, root: Path, *, attributes: Path | None, schema: SchemaLike | None, allow_missing_attributes: bool
    ) -> ReIDDataset: ...


@dataclass(frozen=True)
class DatasetFormat:
    """A dataset format: how to recognise a root folder and how to load it."""

    name: str
    description: str
    detect: Callable[[Path], float]  # confidence in [0, 1] that ``root`` is in this format
    load: Loader


FORMATS: dict[str, DatasetFormat] = {}


def register_format(fmt: DatasetFormat) -> DatasetFormat:
    """Add a format to the registry used by :func:`load_dataset` and ``mosaic data check --format``."""
    FORMATS[fmt.name] = fmt
    return fmt


def detect_format(root: str | Path) -> str:
    """Name of the registered format that ``root`` is in; a clear error when none or several fit."""
    root = Path(root).expanduser()
    if not root.exists():
        raise MosaicError(f"dataset path {root} does not exist: point ROOT at a dataset folder or a manifest.csv")
    scores = {name: fmt.detect(root) for name, fmt in FORMATS.items()}
    best = max(scores.values(), default=0.0)
    if best < 0.5:
        expected = "; ".join(fmt.description for fmt in FORMATS.values())
        raise MosaicError(f"cannot tell the dataset format of {root}: expected one of: {expected}. Pass --format")
    tied = [name for name, score in scores.items() if score == best]
    if len(tied) > 1:
        raise MosaicError(f"{root} fits several dataset formats ({', '.join(tied)}): pass --format to choose")
    return tied[0]


def load_dataset(
    root: str | Path,
    format: str | None = None,
    attributes: str | Path | None = None,
    schema: SchemaLike | None = None,
    allow_missing_attributes: bool = False,
) -> ReIDDataset:
    """Load a re-identification dataset with identity attributes into one image table.

    Parameters
    ----------
    root
        Dataset folder (``Market-1501-v15.09.15``, ``DukeMTMC-reID``, a synthetic world) or a
        manifest CSV / a folder holding ``manifest.csv``.
    format
        ``market1501``, ``dukemtmc`` or ``manifest`` (see ``FORMATS``); ``None`` recognises it
        from the file names or the presence of ``manifest.csv``.
    attributes
        The Lin et al. attribute file; ``None`` looks for ``market_attribute.mat`` /
        ``duke_attribute.mat`` in ``root``, then in its parent, then in the cache that
        ``mosaic data get-attributes`` fills. Unused by manifests.
    schema
        Attribute schema: shipped name, YAML file or :class:`AttributeSchema`. Folder formats
        default to their shipped schema (a custom YAML must carry ``source`` entries); manifests
        default to ``schema.yaml`` beside the manifest.
    allow_missing_attributes
        Identities found in the images but absent from the attribute file are an error by
        default; ``True`` loads them with every group missing and records an ``error`` finding,
        so that ``mosaic data check`` can report them.
    """
    root = Path(root).expanduser()
    name = format or detect_format(root)
    if name not in FORMATS:
        raise MosaicError(f"unknown dataset format {name!r}: use one of {', '.join(FORMATS)}")
    return FORMATS[name].load(
        root,
        attributes=Path(attributes).expanduser() if attributes is not None else None,
        schema=schema,
        allow_missing_attributes=allow_missing_attributes,
    )


# ------------------------------------------------------------------------- folder formats
def find_attribute_file(root: Path, mapping: AttributeMapping) -> Path:
    """``<filename>`` of the mapping in ``root``, its parent, then the download cache; a clear error otherwise."""
    from mosaic.data.download import ATTRIBUTE_SOURCES, attribute_cache_dir, cached_attribute_file

    for folder in (root, root.parent):
        candidate = folder / mapping.file.filename
        if candidate.is_file():
            return candidate
    cached = cached_attribute_file(mapping.file.filename)
    if cached is not None:
        return cached
    source = f" (the Lin et al. annotations, {mapping.file.url})" if mapping.file.url else ""
    published = any(s.attribute_file.name == mapping.file.filename for s in ATTRIBUTE_SOURCES.values())
    fetch = "run `mosaic data get-attributes` or " if published else ""
    raise MosaicError(
        f"no {mapping.file.filename} in {root}, its parent or {attribute_cache_dir()}: "
        f"{fetch}pass --attributes FILE{source}"
    )


def attach_attributes(
    images: pd.DataFrame, table: AttributeTable, *, allow_missing_attributes: bool
) -> tuple[pd.DataFrame, list[Finding]]:
    """Add one state column per group to an image table from identity-level annotations."""
    groups = list(table.schema.group_names)
    codes = np.full((len(images), len(groups)), -1, dtype=np.int16)
    found = np.zeros(len(images), dtype=bool)
    splits = images["split"].to_numpy()
    pids = images["pid"].to_numpy(dtype=np.int64)
    for split in SPLITS:
        rows = np.flatnonzero(splits == split)
        codes[rows], found[rows] = table.lookup(split, pids[rows])
    out = images.copy()
    for i, g in enumerate(groups):
        out[g] = codes[:, i]

    findings: list[Finding] = []
    absent = ~found & (pids != DISTRACTOR_PID)
    if absent.any():
        missing = pd.DataFrame({"pid": pids[absent], "split": splits[absent]}).drop_duplicates()
        per_split = ", ".join(f"{n} {s}" for s, n in missing["split"].value_counts(sort=False).items())
        examples = ", ".join(f"{p:04d} ({s})" for p, s in missing.head(5).itertuples(index=False))
        message = (
            f"{len(missing)} identities ({int(absent.sum())} images; {per_split}) have no entry in "
            f"{table.path.name} (e.g. {examples})"
        )
        if not allow_missing_attributes:
            raise MosaicError(
                f"{message}: pass the attribute file that matches these images, or run `mosaic data check` to list them"
            )
        findings.append(Finding("error", "ids-without-attributes", message + "; loaded with every group missing", len(missing)))

    for struct, states in table.states.items():
        used = set(pids[np.isin(splits, [s for s, st in table.mapping.file.splits.items() if st == struct])].tolist())
        unused = states.index.difference(pd.Index(sorted(used)))
        if len(unused):
            findings.append(
                Finding(
                    "info",
                    "attribute-ids-without-images",
                    f"{len(unused)} of {len(states)} {struct} identities in {table.path.name} have no images here",
                    len(unused),
                )
            )
    return out, findings


def load_folder_dataset(
    root: Path,
    layout: FolderLayout,
    *,
    attributes: Path | None = None,
    schema: SchemaLike | None = None,
    allow_missing_attributes: bool = False,
) -> ReIDDataset:
    """Load a Market-1501 / DukeMTMC-reID layout and join the Lin et al. identity attributes."""
    scan = scan_folders(root, layout)
    mapping = load_mapping(schema if schema is not None else layout.schema)
    root = Path(root).expanduser().resolve()
    path = attributes if attributes is not None else find_attribute_file(root, mapping)
    table = read_attribute_file(path, mapping)
    images, join_findings = attach_attributes(scan.images, table, allow_missing_attributes=allow_missing_attributes)
    return ReIDDataset(
        name=root.name,
        format=layout.name,
        root=root,
        schema=mapping.schema,
        images=finalize_images(images, mapping.schema),
        findings=[*scan.findings, *table.findings, *join_findings],
        attribute_file=table.path.resolve(),
    )


def _folder_detector(layout: FolderLayout) -> Callable[[Path], float]:
    def detect(root: Path) -> float:
        if not root.is_dir() or not has_split_dirs(root, layout):
            return 0.0
        names: list[str] = []
        for directory in layout.split_dirs.values():
            names += image_names(root / directory, limit=50)
        return match_fraction(layout, names)

    return detect


def _folder_loader(layout: FolderLayout) -> Loader:
    def load(root: Path, **options) -> ReIDDataset:
        return load_folder_dataset(root, layout, **options)

    return load


for _layout in FOLDER_LAYOUTS.values():
    register_format(
        DatasetFormat(
            name=_layout.name,
            description=_layout.describe(),
            detect=_folder_detector(_layout),
            load=_folder_loader(_layout),
        )
    )


def _detect_manifest(root: Path) -> float:
    if root.is_file():
        return 1.0 if root.suffix.lower() == ".csv" else 0.0
    return 1.0 if (root / MANIFEST_NAME).is_file() else 0.0


def _load_manifest(
    root: Path, *, attributes: Path | None, schema: SchemaLike | None, allow_missing_attributes: bool
) -> ReIDDataset:
    if attributes is not None:
        raise MosaicError(
            f"a manifest carries its attributes in its own columns: drop --attributes {attributes} "
            f"for {manifest_path(root)}"
        )
    return read_manifest(root, schema=schema)


register_format(
    DatasetFormat(
        name="manifest",
        description=f"a {MANIFEST_NAME} (columns path,pid,camid,split,<one per group>) with schema.yaml",
        detect=_detect_manifest,
        load=_load_manifest,
    )
)
