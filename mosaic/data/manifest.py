"""Custom datasets: a manifest table plus an attribute schema.

``manifest.csv`` has one row per image and the columns ``path, pid, camid, split``, then one
column per attribute group of the schema holding the state *name* (empty = not annotated)::

    path,pid,camid,split,gender,upcolour
    images/0001_a.jpg,1,1,train,female,red
    images/0001_b.jpg,1,2,query,female,
    images/0000_x.jpg,0,3,gallery,,

Relative paths are relative to the manifest's folder. ``pid`` -1 marks junk (dropped and
counted), ``pid`` 0 a gallery distractor (kept, every group missing). The schema comes from
``schema.yaml`` beside the manifest unless one is passed explicitly.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mosaic.data.dataset import BASE_COLUMNS, DISTRACTOR_PID, JUNK_PID, SPLITS, Finding, ReIDDataset, finalize_images
from mosaic.core.errors import MosaicError
from mosaic.core.fileio import write_text_atomic
from mosaic.core.schema import MISSING, AttributeSchema, load_schema

MANIFEST_NAME = "manifest.csv"
SCHEMA_NAMES = ("schema.yaml", "schema.yml")


def manifest_path(root: str | Path) -> Path:
    """The manifest file of ``root``: ``root`` itself when it is a file, else ``root/manifest.csv``."""
    root = Path(root).expanduser()
    return root if root.is_file() else root / MANIFEST_NAME


def _resolve_schema(manifest: Path, schema: str | Path | AttributeSchema | None) -> AttributeSchema:
    if isinstance(schema, AttributeSchema):
        return schema
    if schema is not None:
        return load_schema(schema)
    for name in SCHEMA_NAMES:
        if (manifest.parent / name).is_file():
            return load_schema(manifest.parent / name)
    raise MosaicError(
        f"no attribute schema for {manifest}: put schema.yaml beside it or pass --schema (a YAML file or market1501)"
    )


def _line(row: int) -> int:
    return row + 2  # 1-based, after the header: the number a spreadsheet or editor shows


def _integers(table: pd.DataFrame, column: str, manifest: Path) -> np.ndarray:
    values = pd.to_numeric(table[column].str.strip(), errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MosaicError(
            f"{manifest.name} line {_line(row)}: {column} {table[column].iloc[row]!r} is not an integer "
            f"({int(bad.sum())} rows affected)"
        )
    return values.to_numpy(dtype=np.int64)


def read_manifest(
    root: str | Path,
    *,
    schema: str | Path | AttributeSchema | None = None,
    check_files: bool = True,
) -> ReIDDataset:
    """Load a manifest (a CSV file, or a folder holding ``manifest.csv``) into a :class:`ReIDDataset`."""
    manifest = manifest_path(root)
    if not manifest.is_file():
        raise MosaicError(f"no {MANIFEST_NAME} in {root}: write one with columns path,pid,camid,split,<groups>")
    schema = _resolve_schema(manifest, schema)
    try:
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MosaicError(f"{manifest} is not a readable CSV file ({reason})") from None
    table.columns = [str(c).strip() for c in table.columns]

    groups = list(schema.group_names)
    absent = [c for c in (*BASE_COLUMNS, *groups) if c not in table.columns]
    if absent:
        raise MosaicError(
            f"{manifest.name} lacks the column(s) {absent}: it needs path, pid, camid, split and one column per group "
            f"of schema {schema.name!r} (empty cells = not annotated)"
        )
    findings: list[Finding] = []
    extra = [c for c in table.columns if c not in (*BASE_COLUMNS, *groups)]
    if extra:
        findings.append(
            Finding("warning", "manifest-extra-columns", f"columns not in schema {schema.name!r} ignored: {extra}", len(extra))
        )

    pid = _integers(table, "pid", manifest)
    camid = _integers(table, "camid", manifest)
    split = table["split"].str.strip().str.lower().to_numpy(dtype=object)
    bad_split = ~np.isin(split, SPLITS)
    if bad_split.any():
        row = int(np.flatnonzero(bad_split)[0])
        raise MosaicError(
            f"{manifest.name} line {_line(row)}: split {table['split'].iloc[row]!r} is not one of {', '.join(SPLITS)}"
        )
    if (pid < JUNK_PID).any():
        row = int(np.flatnonzero(pid < JUNK_PID)[0])
        raise MosaicError(f"{manifest.name} line {_line(row)}: pid {pid[row]} is negative (only -1 = junk is allowed)")

    base = manifest.parent.resolve()
    raw_paths = table["path"].str.strip().to_numpy(dtype=object)
    if (raw_paths == "").any():
        raise MosaicError(f"{manifest.name} line {_line(int(np.flatnonzero(raw_paths == '')[0]))}: empty path")
    paths = np.array([os.path.normpath(os.path.join(base, p)) for p in raw_paths], dtype=object)

    states = {}
    for g in groups:
        group = schema.group(g)
        cells = table[g].str.strip().to_numpy(dtype=object)
        lookup = {s: i for i, s in enumerate(group.states)} | {"": MISSING}
        codes = np.array([lookup.get(c, -2) for c in cells], dtype=np.int16)
        if (codes == -2).any():
            row = int(np.flatnonzero(codes == -2)[0])
            raise MosaicError(
                f"{manifest.name} line {_line(row)}: {cells[row]!r} is not a state of group {g!r}: "
                f"use one of {list(group.states)} or leave the cell empty"
            )
        states[g] = codes

    frame = pd.DataFrame({"path": paths, "pid": pid, "camid": camid, "split": split, **states})
    junk = pid == JUNK_PID
    if junk.any():
        findings.append(Finding("info", "junk-dropped", f"{int(junk.sum())} junk rows (pid -1) dropped", int(junk.sum())))
        frame = frame[~junk].reset_index(drop=True)
    duplicated = frame["path"].duplicated()
    if duplicated.any():
        raise MosaicError(
            f"{manifest.name} lists {frame['path'][duplicated].iloc[0]} more than once "
            f"({int(duplicated.sum())} duplicates): each image needs one row"
        )
    distractor = frame["pid"].to_numpy() == DISTRACTOR_PID
    if distractor.any():
        annotated = int((frame.loc[distractor, groups].to_numpy() != MISSING).any(axis=1).sum())
        findings.append(
            Finding(
                "info",
                "distractors",
                f"{int(distractor.sum())} distractor images (pid 0) kept in the gallery as negatives, every attribute "
                "group missing" + (f" ({annotated} had states, cleared)" if annotated else ""),
                int(distractor.sum()),
            )
        )
    if check_files:
        exists = np.fromiter((os.path.isfile(p) for p in frame["path"]), dtype=bool, count=len(frame))
        if not exists.all():
            raise MosaicError(
                f"{int((~exists).sum())} of {len(frame)} images listed in {manifest.name} do not exist "
                f"(e.g. {frame['path'][~exists].iloc[0]}): fix the paths (relative ones start at {base})"
            )
    return ReIDDataset(
        name=base.name,
        format="manifest",
        root=base,
        schema=schema,
        images=finalize_images(frame, schema),
        findings=findings,
    )


def write_manifest(dataset: ReIDDataset, path: str | Path, *, write_schema: bool = True) -> Path:
    """Write ``dataset`` as a manifest CSV (and its schema as ``schema.yaml`` beside it).

    Image paths under the manifest's folder are written relative to it, others absolute, so a
    manifest written inside a dataset folder moves with it. Returns the manifest path.
    """
    path = Path(path).expanduser()
    if path.suffix == "" or path.is_dir():
        path = path / MANIFEST_NAME
    base = path.parent.resolve()
    images = dataset.images

    def portable(p: str) -> str:
        relative = os.path.relpath(p, base)
        return p if relative.startswith("..") else Path(relative).as_posix()

    out = pd.DataFrame(
        {
            "path": [portable(p) for p in images["path"]],
            "pid": images["pid"].to_numpy(),
            "camid": images["camid"].to_numpy(),
            "split": images["split"].to_numpy(),
        }
    )
    for group in dataset.schema.groups:
        names = np.array([*group.states, ""], dtype=object)  # code -1 indexes the trailing ""
        out[group.name] = names[images[group.name].to_numpy(dtype=np.int64)]
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, lineterminator="\n")
    write_text_atomic(path, buffer.getvalue(), create_parent=True)
    if write_schema:
        text = f"# attribute schema of {dataset.name} (written by mosaic with {path.name})\n"
        text += yaml.safe_dump(dataset.schema.to_dict(), sort_keys=False, allow_unicode=True)
        write_text_atomic(path.parent / SCHEMA_NAMES[0], text)
    return path
