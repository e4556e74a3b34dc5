"""The loaded dataset: one image table plus the findings gathered while reading it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mosaic.core.errors import MosaicError
from mosaic.core.schema import MISSING, AttributeSchema

SPLITS = ("train", "query", "gallery")
BASE_COLUMNS = ("path", "pid", "camid", "split")
JUNK_PID = -1  # Market-1501 junk images: dropped at load time by every public toolkit
DISTRACTOR_PID = 0  # kept in the gallery as negatives, with every attribute group missing

Severity = Literal["error", "warning", "info"]
SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One fact about a dataset worth telling its user: a trap handled, a count, a problem.

    ``severity`` is ``error`` (the data cannot be used as is), ``warning`` (it can, but a rule
    of the loader changed something or the result will be weaker) or ``info``. ``code`` is a
    stable kebab-case key for tests and scripts; ``count`` is the number of identities or
    images concerned (the message says which).
    """

    severity: Severity
    code: str
    message: str
    count: int = 0

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")


@dataclass
class ReIDDataset:
    """A re-identification dataset with identity attributes, as one image table.

    ``images`` has one row per image and exactly the columns ``path`` (absolute, str),
    ``pid`` (int64; 0 = distractor), ``camid`` (int64, 1-based), ``split`` (``train`` |
    ``query`` | ``gallery``), then one int16 column per schema group in schema order holding
    the state code (index into ``schema.group(name).states``) or ``-1`` (missing). Rows are
    sorted by split in that order, then by path.
    """

    name: str
    format: str
    root: Path
    schema: AttributeSchema
    images: pd.DataFrame
    findings: list[Finding] = field(default_factory=list)
    attribute_file: Path | None = None

    def __post_init__(self) -> None:
        expected = [*BASE_COLUMNS, *self.schema.group_names]
        if list(self.images.columns) != expected:
            raise ValueError(f"image table columns {list(self.images.columns)} differ from {expected}")

    def split(self, name: str) -> pd.DataFrame:
        """Rows of one split, index reset (row ``i`` is the ``i``-th image of that split)."""
        _check_split(name)
        return self.images[self.images["split"] == name].reset_index(drop=True)

    def num_ids(self, split: str) -> int:
        """Distinct identities in a split, distractors (pid 0) not counted."""
        pids = self.split(split)["pid"]
        return int(pids[pids != DISTRACTOR_PID].nunique())

    def states(self, split: str) -> np.ndarray:
        """``(n_images, n_groups)`` int16 state codes of one split, ``-1`` where missing."""
        return self.split(split)[list(self.schema.group_names)].to_numpy(dtype=np.int16)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={int((self.images['split'] == s).sum())}" for s in SPLITS)
        return (
            f"ReIDDataset(name={self.name!r}, format={self.format!r}, schema={self.schema.name!r}, "
            f"images: {counts}, findings={len(self.findings)})"
        )


def _check_split(name: str) -> None:
    if name not in SPLITS:
        raise MosaicError(f"unknown split {name!r}: use one of {', '.join(SPLITS)}")


def finalize_images(frame: pd.DataFrame, schema: AttributeSchema) -> pd.DataFrame:
    """Put an image table into the contract form: column order, dtypes, row order, fresh index.

    ``frame`` needs ``path``, ``pid``, ``camid``, ``split`` and one column per schema group.
    """
    groups = list(schema.group_names)
    out = pd.DataFrame(
        {
            "path": frame["path"].astype(str).to_numpy(),
            "pid": frame["pid"].to_numpy(dtype=np.int64),
            "camid": frame["camid"].to_numpy(dtype=np.int64),
            "split": frame["split"].astype(str).to_numpy(),
            **{g: frame[g].to_numpy(dtype=np.int16) for g in groups},
        }
    )
    split_rank = out["split"].map({s: i for i, s in enumerate(SPLITS)}).to_numpy()
    order = np.lexsort((out["path"].to_numpy(dtype=object), split_rank))
    out = out.iloc[order].reset_index(drop=True)
    distractor = out["pid"].to_numpy() == DISTRACTOR_PID
    misplaced = distractor & (out["split"].to_numpy() != "gallery")
    if misplaced.any():
        example = out["path"].iloc[int(np.flatnonzero(misplaced)[0])]
        raise MosaicError(
            f"{int(misplaced.sum())} train/query images have pid 0, which marks a gallery distractor "
            f"(e.g. {example}): give them a real identity or move them to the gallery"
        )
    if distractor.any():
        out.loc[distractor, groups] = MISSING
    return out
