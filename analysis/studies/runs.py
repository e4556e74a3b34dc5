"""The runs of a study: which trace is which label and seed, the groups they share, per-run estimates.

Every trace of a study is one **run** (one trained model traced once). Runs are grouped by a
**label** (dataset, backbone, config): ``provenance["label"]`` when the trace names one, else
``--label NAME=GLOB`` patterns on the file path, else what the provenance says about the dataset,
the backbone and the config file, keeping only the parts that differ between the traces. Runs of
one label are replicate training seeds.

Per run, each quantity (a group's ΔmAP when dropped, its decomposition into information,
capacity, misrouting and semantics, and each attribute family's mean of those) is estimated over
the run's valid queries with an identity-cluster bootstrap (:mod:`analysis.stats.resampling`). Runs
traced on the same test set (the same query identities, states and files: one **test-set
fingerprint**) are resampled with the **same** identity weights, so the covariance of their errors
(:mod:`analysis.stats.metaanalysis`) is estimated rather than assumed away.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from analysis.methods.decomposition import ORACLE, QUANTITIES, Quantity
from analysis.stats.resampling import identity_sums, identity_weights
from mosaic.core.errors import MosaicError

__all__ = ["Quantity", "STUDY_QUANTITIES", "Run", "collect_runs", "shared_schema", "RunEstimates", "run_estimates"]

# The reliance measured by the paired tests (drop), then the per-group decomposition of the
# interventions, defined once in analysis.methods.decomposition.
STUDY_QUANTITIES: dict[str, Quantity] = {
    "drop": Quantity("drop", "drop", lambda g: f"drop:{g}", lambda g: ORACLE,
                     "drop − oracle: the group's information and expert capacity"),
    **QUANTITIES,
}


@dataclass
class Run:
    """One trace of the study."""

    trace: Any
    label: str
    seed: Any
    checkpoint: str
    fingerprint: str
    path: str

    @property
    def n_valid(self) -> int:
        return int(self.trace.data.valid.sum())


def _as_trace(item):
    from analysis.analyze import as_trace

    return as_trace(item)


def _train_config(provenance: Mapping[str, Any]) -> Mapping[str, Any]:
    config = provenance.get("config") or {}
    return (config.get("train") or config) if isinstance(config, Mapping) else {}


def run_seed(trace) -> Any:
    """The training seed (the trace's own seed for a simulated or unrecorded run)."""
    run = _train_config(trace.provenance).get("run") or {}
    if isinstance(run, Mapping) and run.get("seed") is not None:
        return run["seed"]
    return trace.provenance.get("seed")


def checkpoint_id(trace) -> str:
    """The hash that names the trained model: two traces with the same one are one run traced twice."""
    provenance = trace.provenance
    value = provenance.get("checkpoint_sha256") or (provenance.get("checkpoint") or {}).get("sha256")
    return str(value or trace.sha256 or "")


def test_set_fingerprint(trace) -> str:
    """A hash of the test set's queries (identities, cameras, files, states) and dataset root."""
    d = trace.data
    digest = hashlib.sha256()
    for array in (d.query_pid, d.query_camid, d.query_states, d.valid):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update("\n".join(map(str, d.query_path.tolist())).encode())
    digest.update(str(trace.dataset.get("root", trace.dataset.get("name", ""))).encode())
    return digest.hexdigest()[:16]


def _label_parts(trace) -> dict[str, str]:
    dataset = trace.dataset or {}
    model = _train_config(trace.provenance).get("model")
    return {
        "dataset": str(dataset.get("name") or ""),
        "root": str(dataset.get("root") or "").rstrip("/"),
        "schema": str(dataset.get("schema") or trace.schema.name),
        "backbone": str(model.get("backbone") or "") if isinstance(model, Mapping) else "",
    }


def _short_roots(parts: list[dict[str, str]]) -> None:
    """Dataset roots relative to the folder they share (``default/world`` rather than the full path)."""
    roots = [p["root"] for p in parts]
    if all(roots) and len(set(roots)) > 1:
        common = os.path.commonpath(roots)
        for p in parts:
            p["root"] = os.path.relpath(p["root"], common)


def parse_label_patterns(patterns: Sequence[str] | Mapping[str, str] | None) -> list[tuple[str, str]]:
    """``["NAME=GLOB", ...]`` (or ``{name: glob}``) as ``[(name, glob)]``; a malformed entry is an error."""
    if patterns is None:
        return []
    if isinstance(patterns, Mapping):
        return [(str(k), str(v)) for k, v in patterns.items()]
    out = []
    for entry in patterns:
        name, sep, glob = str(entry).partition("=")
        if not sep or not name.strip() or not glob.strip():
            raise MosaicError(f"--label {entry!r} is not NAME=GLOB: write e.g. --label market='runs/market*/trace.h5'")
        out.append((name.strip(), glob.strip()))
    return out


def _assign_labels(traces, paths: list[str], patterns: list[tuple[str, str]]) -> list[str]:
    labels: list[str | None] = [None] * len(traces)
    for i, (trace, path) in enumerate(zip(traces, paths)):
        matches = [name for name, glob in patterns if fnmatch.fnmatch(path, glob) or fnmatch.fnmatch(os.path.basename(path), glob)]
        if len(set(matches)) > 1:
            raise MosaicError(f"trace {path} matches the --label patterns of {sorted(set(matches))}: make the globs disjoint")
        if matches:
            labels[i] = matches[0]
        elif patterns:
            raise MosaicError(f"trace {path} matches no --label pattern: add one, e.g. --label NAME='{path}'")
        elif trace.provenance.get("label"):
            labels[i] = str(trace.provenance["label"])
    if all(label is not None for label in labels):
        return [str(label) for label in labels]
    parts = [_label_parts(t) for t in traces]
    _short_roots(parts)
    varying = [key for key in parts[0] if len({p[key] for p in parts}) > 1]
    return [
        labels[i] if labels[i] is not None else (" ".join(parts[i][k] for k in varying) or parts[i]["dataset"] or "run")
        for i in range(len(traces))
    ]


def collect_runs(traces: Sequence[Any], labels: Sequence[str] | Mapping[str, str] | None = None) -> list[Run]:
    """Read the traces, label them and check they make a study (one line naming the problem if not)."""
    traces = list(traces)
    if len(traces) < 2:
        raise MosaicError(
            f"a study needs at least two traces (seeds or labels to compare), got {len(traces)}: "
            "for one trace use `mosaic report`"
        )
    loaded = [_as_trace(t) for t in traces]
    paths = [str(t.path) if t.path is not None else f"(in memory #{i})" for i, t in enumerate(loaded)]
    names = _assign_labels(loaded, paths, parse_label_patterns(labels))
    runs, seen = [], {}
    for trace, label, path in zip(loaded, names, paths):
        checkpoint = checkpoint_id(trace)
        if checkpoint and checkpoint in seen:
            raise MosaicError(
                f"traces {seen[checkpoint]} and {path} come from one run (checkpoint {checkpoint[:12]}): "
                "a seed is one trained model, pass each run's trace once"
            )
        seen[checkpoint] = path
        runs.append(Run(trace, label, run_seed(trace), checkpoint, test_set_fingerprint(trace), path))
    shared_schema(runs)  # raises when the traces share no group
    return runs


@dataclass(frozen=True)
class SharedSchema:
    """The groups every run has (schema order of the first run), and what differs between labels."""

    groups: tuple[str, ...]
    families: dict[str, tuple[str, ...]]
    family_of: dict[str, str]
    notes: tuple[str, ...] = field(default_factory=tuple)


def shared_schema(runs: Sequence[Run]) -> SharedSchema:
    schemas = {}
    for run in runs:
        schemas.setdefault(run.label, run.trace.schema)
    first = runs[0].trace.schema
    common = [g for g in first.group_names if all(g in s.group_names for s in schemas.values())]
    notes = []
    for label, schema in schemas.items():
        only = [g for g in schema.group_names if g not in common]
        if only:
            notes.append(f"groups only in {label} ({schema.name}), not compared: {', '.join(only)}")
    family_of, kept = {}, []
    for g in common:
        families = {label: s.group(g).family for label, s in schemas.items()}
        if len(set(families.values())) > 1:
            notes.append(f"group {g} belongs to different families ({families}): not compared")
            continue
        states = {label: len(s.group(g).states) for label, s in schemas.items()}
        if len(set(states.values())) > 1:
            notes.append(f"group {g} has different states per label ({states} states): compared as a group")
        kept.append(g)
        family_of[g] = families[runs[0].label]
    if not kept:
        listing = "; ".join(f"{label}: {', '.join(s.group_names)}" for label, s in schemas.items())
        raise MosaicError(f"the traces share no attribute group to compare ({listing}): study traces of comparable schemas")
    families: dict[str, list[str]] = {}
    for g in kept:
        families.setdefault(family_of[g], []).append(g)
    return SharedSchema(tuple(kept), {f: tuple(v) for f, v in families.items()}, family_of, tuple(notes))


@dataclass(frozen=True)
class RunEstimates:
    """Per-run estimates of every (level, item, quantity) column and their bootstrap replicates.

    ``keys``: list of ``(level, item, quantity)`` with level ``"group"`` or ``"family"``;
    ``estimate`` (R, K); ``replicates`` list of (B, K) per run; ``available`` (R, K) bool;
    ``n_ids`` (R,); ``block`` (R,) index of each run's test-set fingerprint.
    """

    keys: list[tuple[str, str, str]]
    estimate: np.ndarray
    replicates: list[np.ndarray]
    available: np.ndarray
    n_ids: np.ndarray
    block: np.ndarray

    def covariance(self, k: int) -> np.ndarray:
        """(R, R) identity-sampling covariance of column ``k``; runs on other test sets: 0."""
        R = len(self.replicates)
        cov = np.zeros((R, R))
        for b in np.unique(self.block):
            runs = np.flatnonzero(self.block == b)
            stacked = np.stack([self.replicates[r][:, k] for r in runs], axis=1)
            ok = np.all(np.isfinite(stacked), axis=1)
            if ok.sum() > 1:
                cov[np.ix_(runs, runs)] = np.atleast_2d(np.cov(stacked[ok], rowvar=False))
            else:
                cov[np.ix_(runs, runs)] = np.nan
        return cov


def _query_deltas(trace, schema: SharedSchema, quantities: Mapping[str, Quantity]):
    """``(K, n_valid)`` per-query ΔAP of every column, the keys, and which columns the trace has."""
    d = trace.data
    names = [str(n) for n in d.condition_name.tolist()]
    index = {n: i for i, n in enumerate(names)}
    ap = d.ap[:, d.valid].astype(np.float64)
    keys, rows, available = [], [], []
    per_group = {}
    for q in quantities.values():
        for g in schema.groups:
            a, b = index.get(q.condition(g)), index.get(q.reference(g))
            has = a is not None and b is not None
            row = ap[a] - ap[b] if has else np.full(ap.shape[1], np.nan)
            per_group[(g, q.name)] = row
            keys.append(("group", g, q.name)), rows.append(row), available.append(has)
        for family, groups in schema.families.items():
            stacked = np.stack([per_group[(g, q.name)] for g in groups])
            keys.append(("family", family, q.name)), rows.append(stacked.mean(0))
            available.append(bool(np.all(np.isfinite(stacked))) if stacked.size else False)
    return keys, np.asarray(rows), np.asarray(available)


def run_estimates(runs: Sequence[Run], schema: SharedSchema, quantities: Mapping[str, Quantity] = STUDY_QUANTITIES,
                  *, n_bootstrap: int = 1000, seed: int = 0) -> RunEstimates:
    """Estimate every column on every run, with identity weights shared within a test set."""
    fingerprints = list(dict.fromkeys(r.fingerprint for r in runs))
    block = np.array([fingerprints.index(r.fingerprint) for r in runs])
    weights: dict[int, np.ndarray] = {}
    keys, estimates, replicates, available, n_ids = None, [], [], [], []
    for run, b in zip(runs, block):
        keys, deltas, has = _query_deltas(run.trace, schema, quantities)
        pids = run.trace.data.query_pid[run.trace.data.valid]
        sums = identity_sums(np.where(np.isfinite(deltas), deltas, 0.0), pids)
        if b not in weights:
            weights[b] = identity_weights(sums.n_identities, n_bootstrap, seed + 7919 * int(b))
        with np.errstate(invalid="ignore", divide="ignore"):
            rep = sums.resample(weights[b])
        est = np.where(has, sums.estimate, np.nan)
        replicates.append(np.where(has[None, :], rep, np.nan))
        estimates.append(est), available.append(has), n_ids.append(sums.n_identities)
    return RunEstimates(keys, np.asarray(estimates), replicates, np.asarray(available), np.asarray(n_ids), block)
