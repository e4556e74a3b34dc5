"""What ``mosaic data check`` reports: per-split counts, attribute coverage, and the traps found.

Coverage is measured over identity images (distractors, pid 0, have no attributes by design
and are counted separately): the share of images, and of identities, whose group is annotated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mosaic.data.dataset import DISTRACTOR_PID, SPLITS, Finding, ReIDDataset
from mosaic.core.schema import MISSING


def split_summary(ds: ReIDDataset) -> pd.DataFrame:
    """One row per split: images, identities (distractors excluded), cameras, distractor images."""
    rows = []
    for split in SPLITS:
        frame = ds.split(split)
        distractor = frame["pid"] == DISTRACTOR_PID
        rows.append(
            {
                "split": split,
                "images": len(frame),
                "identities": int(frame.loc[~distractor, "pid"].nunique()),
                "cameras": int(frame["camid"].nunique()),
                "distractor_images": int(distractor.sum()),
            }
        )
    return pd.DataFrame(rows).set_index("split")


def coverage(ds: ReIDDataset) -> pd.DataFrame:
    """Share of identity images and of identities with each group annotated, per split.

    Index: group name; columns ``family``, ``states``, then ``<split>_images`` and
    ``<split>_ids`` (fractions in [0, 1], NaN for a split without identity images).
    """
    out = pd.DataFrame(
        {
            "family": [g.family for g in ds.schema.groups],
            "states": [len(g.states) for g in ds.schema.groups],
        },
        index=pd.Index(ds.schema.group_names, name="group"),
    )
    for split in SPLITS:
        frame = ds.split(split)
        frame = frame[frame["pid"] != DISTRACTOR_PID]
        annotated = frame[list(ds.schema.group_names)] != MISSING
        if len(frame):
            out[f"{split}_images"] = annotated.mean().to_numpy()
            out[f"{split}_ids"] = annotated.groupby(frame["pid"].to_numpy()).any().mean().to_numpy()
        else:
            out[f"{split}_images"] = np.nan
            out[f"{split}_ids"] = np.nan
    return out


def state_counts(ds: ReIDDataset) -> pd.DataFrame:
    """Tidy counts: one row per (group, state, split) with ``images`` and ``ids`` carrying that state."""
    rows = []
    for split in SPLITS:
        frame = ds.split(split)
        for group in ds.schema.groups:
            codes = frame[group.name].to_numpy()
            for code, state in enumerate(group.states):
                hit = codes == code
                rows.append(
                    {
                        "group": group.name,
                        "state": state,
                        "split": split,
                        "images": int(hit.sum()),
                        "ids": int(frame.loc[hit, "pid"].nunique()),
                    }
                )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- checks
def _check_empty_splits(ds: ReIDDataset) -> list[Finding]:
    return [
        Finding("error", "split-empty", f"split {s!r} has no images: training and retrieval need all three", 0)
        for s in SPLITS
        if not (ds.images["split"] == s).any()
    ]


def _check_query_matches(ds: ReIDDataset) -> list[Finding]:
    query, gallery = ds.split("query"), ds.split("gallery")
    if query.empty:
        return []
    # the evaluation removes same-identity same-camera gallery images, so a query needs a true
    # match from another camera or it is skipped
    cams = gallery.groupby("pid")["camid"].agg(lambda c: frozenset(c.tolist()))
    valid = np.fromiter(
        (bool(cams.get(p, frozenset()) - {c}) for p, c in zip(query["pid"], query["camid"])), dtype=bool, count=len(query)
    )
    if valid.all():
        return []
    lost = query.loc[~valid, "pid"]
    return [
        Finding(
            "warning",
            "query-without-match",
            f"{int((~valid).sum())} query images ({lost.nunique()} ids, e.g. {int(lost.iloc[0]):04d}) have no gallery image "
            "of their identity from another camera: the evaluation skips them",
            int((~valid).sum()),
        )
    ]


def _check_identity_overlap(ds: ReIDDataset) -> list[Finding]:
    train = set(ds.split("train")["pid"].tolist())
    test = set(ds.split("query")["pid"].tolist()) | set(ds.split("gallery")["pid"].tolist())
    shared = sorted((train & test) - {DISTRACTOR_PID})
    if not shared:
        return []
    return [
        Finding(
            "warning",
            "ids-in-train-and-test",
            f"{len(shared)} identities appear in train and in query/gallery (e.g. {shared[0]:04d}): "
            "re-identification benchmarks keep them disjoint",
            len(shared),
        )
    ]


def _check_states(ds: ReIDDataset) -> list[Finding]:
    findings = []
    train, query = ds.split("train"), ds.split("query")
    for group in ds.schema.groups:
        codes = train[group.name].to_numpy()
        if len(train) and (codes == MISSING).all():
            findings.append(
                Finding(
                    "warning",
                    "group-unannotated",
                    f"{group.name}: no training image is annotated; its experts learn nothing",
                    len(train),
                )
            )
            continue
        unseen = [s for i, s in enumerate(group.states) if not (codes == i).any()]
        if unseen and len(train):
            findings.append(
                Finding(
                    "warning",
                    "state-without-train-images",
                    f"{group.name}: state(s) {unseen} have no training image; their experts learn nothing",
                    len(unseen),
                )
            )
        query_codes = query[group.name].to_numpy()
        absent = [s for i, s in enumerate(group.states) if not (query_codes == i).any()]
        if absent and len(query):
            findings.append(
                Finding(
                    "info",
                    "state-without-query-images",
                    f"{group.name}: state(s) {absent} have no query image; their effect on retrieval is not measured",
                    len(absent),
                )
            )
    return findings


# each check: dataset -> findings; run in this order
CHECKS = (_check_empty_splits, _check_query_matches, _check_identity_overlap, _check_states)


def check_dataset(ds: ReIDDataset) -> list[Finding]:
    """Dataset-level checks beyond what loading already recorded in ``ds.findings``."""
    return [finding for check in CHECKS for finding in check(ds)]


@dataclass
class DataReport:
    """Everything ``mosaic data check`` prints, as data."""

    dataset: ReIDDataset
    summary: pd.DataFrame
    coverage: pd.DataFrame
    findings: list[Finding] = field(default_factory=list)

    @classmethod
    def from_dataset(cls, ds: ReIDDataset) -> "DataReport":
        return cls(
            dataset=ds,
            summary=split_summary(ds),
            coverage=coverage(ds),
            findings=[*ds.findings, *check_dataset(ds)],
        )

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        ds = self.dataset
        cov = self.coverage.astype(object).where(self.coverage.notna(), None)
        return {
            "name": ds.name,
            "format": ds.format,
            "root": str(ds.root),
            "attribute_file": str(ds.attribute_file) if isinstance(ds.attribute_file, Path) else None,
            "schema": {"name": ds.schema.name, "fingerprint": ds.schema.fingerprint(), "groups": len(ds.schema.groups)},
            "splits": {s: {k: int(v) for k, v in row.items()} for s, row in self.summary.iterrows()},
            "coverage": {g: dict(row.items()) for g, row in cov.iterrows()},
            "findings": [
                {"severity": f.severity, "code": f.code, "count": f.count, "message": f.message} for f in self.findings
            ],
        }
