"""Readers of the Market-1501 and DukeMTMC-reID folder layouts.

Both datasets ship three folders of images whose file names carry the identity and camera::

    bounding_box_train/   -> split "train"
    query/                -> split "query"
    bounding_box_test/    -> split "gallery"

Market-1501 names images ``0002_c1s1_000451_03.jpg`` (pid 0002, camera 1, sequence 1, frame,
box), DukeMTMC-reID ``0001_c2_f0046182.jpg`` (pid 0001, camera 2, frame). Market's gallery also
holds junk boxes (pid ``-1``, dropped here and counted, as every public toolkit does) and
distractors (pid ``0000``, kept as negatives with every attribute missing).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from mosaic.data.dataset import DISTRACTOR_PID, JUNK_PID, SPLITS, Finding
from mosaic.core.errors import MosaicError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")  # a tuple, for str.endswith
DEFAULT_SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


@dataclass(frozen=True)
class FolderLayout:
    """One dataset's folder layout: where each split lives and how file names encode pid and camera."""

    name: str  # format name, e.g. market1501
    title: str  # how people write it, e.g. Market-1501
    pattern: re.Pattern  # full-match on the file name, with named groups pid and camid
    example: str  # a real file name, shown in error messages
    schema: str  # shipped schema of its attribute annotations
    split_dirs: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SPLIT_DIRS))

    def parse(self, names: list[str], where: str = "") -> tuple[np.ndarray, np.ndarray]:
        """``(pid, camid)`` int64 arrays of these file names; a clear error naming a foreign one."""
        matches = [self.pattern.fullmatch(n) for n in names]
        foreign = [n for n, m in zip(names, matches) if m is None]
        if foreign:
            raise MosaicError(
                f"{where}/{foreign[0]} is not a {self.title} file name (expected e.g. {self.example}; "
                f"{len(foreign)} of {len(names)} files differ): pass --format for another layout, "
                "or describe the images with a manifest"
            )
        pids = np.fromiter((int(m.group("pid")) for m in matches), dtype=np.int64, count=len(names))
        camids = np.fromiter((int(m.group("camid")) for m in matches), dtype=np.int64, count=len(names))
        return pids, camids

    def describe(self) -> str:
        dirs = ", ".join(f"{d}/" for d in self.split_dirs.values())
        return f"{self.title} layout ({dirs} with files like {self.example})"


MARKET1501 = FolderLayout(
    name="market1501",
    title="Market-1501",
    pattern=re.compile(r"(?P<pid>-1|\d{4})_c(?P<camid>\d)s\d+_\d+_\d+\.\w+"),
    example="0002_c1s1_000451_03.jpg",
    schema="market1501",
)
DUKEMTMC = FolderLayout(
    name="dukemtmc",
    title="DukeMTMC-reID",
    pattern=re.compile(r"(?P<pid>-1|\d{4})_c(?P<camid>\d+)_f\d+\.\w+"),
    example="0001_c2_f0046182.jpg",
    schema="dukemtmc",
)

FOLDER_LAYOUTS: dict[str, FolderLayout] = {layout.name: layout for layout in (MARKET1501, DUKEMTMC)}


@dataclass
class FolderScan:
    """Images found in a folder layout, junk already dropped."""

    images: pd.DataFrame  # path (absolute str), pid, camid, split
    findings: list[Finding]


def image_names(directory: Path, limit: int | None = None) -> list[str]:
    """Image file names in ``directory`` (sorted), skipping Thumbs.db, hidden files and the like.

    With ``limit``, stop after that many (unsorted, in directory order): enough to recognise a
    layout without listing a 20,000-file folder.
    """
    names: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name[:1] != "." and name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                names.append(name)
                if limit is not None and len(names) >= limit:
                    return names
    return sorted(names)


def match_fraction(layout: FolderLayout, names: list[str]) -> float:
    """Share of ``names`` that follow the layout's file-name pattern."""
    if not names:
        return 0.0
    return sum(1 for n in names if layout.pattern.fullmatch(n)) / len(names)


def has_split_dirs(root: Path, layout: FolderLayout) -> bool:
    return all((root / d).is_dir() for d in layout.split_dirs.values())


def _missing_layout_error(root: Path, layout: FolderLayout) -> MosaicError:
    absent = [f"{d}/" for d in layout.split_dirs.values() if not (root / d).is_dir()]
    hint = ""
    if root.is_dir():
        nested = sorted(p.name for p in root.iterdir() if p.is_dir() and has_split_dirs(p, layout))
        if nested:
            hint = f" (did you mean {root / nested[0]}?)"
    return MosaicError(
        f"no {', '.join(absent)} in {root}{hint}: point ROOT at the folder of the {layout.describe()}"
    )


def scan_folders(root: str | Path, layout: FolderLayout) -> FolderScan:
    """List and parse the images of every split; drop junk; report what was dropped and kept."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise MosaicError(f"dataset folder {root} does not exist: point ROOT at the folder of the {layout.describe()}")
    if not has_split_dirs(root, layout):
        raise _missing_layout_error(root, layout)

    frames = []
    for split in SPLITS:
        directory = root / layout.split_dirs[split]
        names = image_names(directory)
        if not names:
            raise MosaicError(f"{directory} holds no images: the {layout.describe()} needs images in every split folder")
        pids, camids = layout.parse(names, where=layout.split_dirs[split])
        prefix = os.path.join(str(directory), "")
        frames.append(
            pd.DataFrame(
                {
                    "path": [prefix + n for n in names],
                    "pid": pids,
                    "camid": camids,
                    "split": split,
                }
            )
        )
    images = pd.concat(frames, ignore_index=True)

    findings: list[Finding] = []
    junk = images["pid"].to_numpy() == JUNK_PID
    if junk.any():
        where = ", ".join(f"{n} in {s}" for s, n in images.loc[junk, "split"].value_counts(sort=False).items())
        findings.append(Finding("info", "junk-dropped", f"{int(junk.sum())} junk images (pid -1) dropped ({where})", int(junk.sum())))
        images = images[~junk].reset_index(drop=True)
    distractors = images["pid"].to_numpy() == DISTRACTOR_PID
    if distractors.any():
        findings.append(
            Finding(
                "info",
                "distractors",
                f"{int(distractors.sum())} distractor images (pid 0000) kept in the gallery as negatives, "
                "every attribute group missing",
                int(distractors.sum()),
            )
        )
    return FolderScan(images=images, findings=findings)
