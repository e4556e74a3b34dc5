"""A validation split of training identities, so that no choice made during training sees the test split.

Evaluations during training (``eval.every``) and the choice of ``checkpoints/best.pt`` use only
identities held out of the training set (``eval.val_ids``). The test split (query and gallery) is
read once, after the last training step, for the run's final report; it never selects anything.

The rule that builds the validation split (the way Market-1501 built its query set):

1. ``eval.val_ids`` identities are drawn from the training identities with the run's seed
   (an integer >= 1 is a count, a fraction in (0, 1) a share of the training identities,
   rounded, at least 2); they leave the training set and the classifier.
2. For each held-out identity seen by at least two cameras, one image per camera, drawn with
   the same seed, is a validation **query**; all its other images are validation **gallery**.
3. An identity seen by one camera only has no cross-camera match: all its images go to the
   gallery, where they serve as distractors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mosaic.core.errors import MosaicError

__all__ = ["ValidationSplit", "held_out_count", "split_validation", "training_split"]


@dataclass
class ValidationSplit:
    """Training frame without the held-out identities, and their query / gallery frames."""

    train: pd.DataFrame
    query: pd.DataFrame
    gallery: pd.DataFrame

    @property
    def held_out_pids(self) -> np.ndarray:
        return np.unique(pd.concat([self.query["pid"], self.gallery["pid"]]).to_numpy(dtype=np.int64))


def held_out_count(val_ids: float, n_ids: int) -> int:
    """How many of ``n_ids`` training identities ``eval.val_ids`` holds out (0 = none)."""
    if val_ids < 0:
        raise MosaicError(f"eval.val_ids must be >= 0 (a count, or a fraction in (0, 1)), got {val_ids}")
    if val_ids == 0:
        return 0
    count = int(round(val_ids * n_ids)) if val_ids < 1 else int(val_ids)
    if val_ids >= 1 and val_ids != int(val_ids):
        raise MosaicError(f"eval.val_ids must be a whole count or a fraction in (0, 1), got {val_ids}")
    count = max(count, 2)
    if count > n_ids - 2:
        raise MosaicError(
            f"eval.val_ids={val_ids} holds out {count} of the {n_ids} training identities, leaving fewer than 2 to "
            "train on: lower eval.val_ids"
        )
    return count


def split_validation(train: pd.DataFrame, val_ids: float, seed: int) -> ValidationSplit:
    """Hold ``val_ids`` identities out of ``train`` (columns ``pid``, ``camid``) by the module's rule."""
    pids = np.unique(train["pid"].to_numpy(dtype=np.int64))
    count = held_out_count(val_ids, len(pids))
    if count == 0:
        empty = train.iloc[0:0]
        return ValidationSplit(train=train, query=empty, gallery=empty)
    rng = np.random.default_rng([int(seed), 0x7A11])  # its own stream: the split never shifts other draws
    held = np.sort(rng.choice(pids, size=count, replace=False))
    is_held = train["pid"].isin(held).to_numpy()
    rest, held_frame = train[~is_held], train[is_held]
    query_rows: list[int] = []
    for _, images in held_frame.groupby("pid", sort=True):
        if images["camid"].nunique() < 2:
            continue
        for _, in_camera in images.groupby("camid", sort=True):
            query_rows.append(int(in_camera.index[rng.integers(len(in_camera))]))
    is_query = held_frame.index.isin(query_rows)
    query = held_frame[is_query].assign(split="query")
    gallery = held_frame[~is_query].assign(split="gallery")
    if query.empty:
        raise MosaicError(
            f"eval.val_ids={val_ids} held out {count} identities, none seen by two cameras, so validation has no "
            "query with a cross-camera match: raise eval.val_ids"
        )
    return ValidationSplit(
        train=rest.reset_index(drop=True), query=query.reset_index(drop=True), gallery=gallery.reset_index(drop=True)
    )


def training_split(dataset, val_ids: float, seed: int) -> ValidationSplit:
    """The images a run learns from (the train split's identities; distractors are no identity to
    learn), with ``val_ids`` identities held out of them for validation."""
    train = dataset.split("train")
    train = train[train["pid"] > 0].reset_index(drop=True)
    if train.empty:
        raise MosaicError(f"the dataset at {dataset.root} has no training images: check data.root")
    return split_validation(train, val_ids, seed)
