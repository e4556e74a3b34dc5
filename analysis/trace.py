"""Open a mosaic trace as pandas tables.

Torch-free: needs only h5py, numpy and pandas, and opens any valid trace file.

    >>> from analysis import read_trace
    >>> trace = read_trace("trace.h5")
    >>> trace.conditions[["condition", "kind", "mAP", "rank1"]]
    >>> trace.queries.query("condition == 'oracle' and valid")
    >>> trace.paired("drop:upcolour")["d_ap"].mean()       # against oracle, the baseline
    >>> trace                                                # in a notebook: a short summary

Every view is computed once and cached; they are plain DataFrames, so the usual pandas idioms
apply. The underlying arrays stay available as :attr:`Trace.data` (a
:class:`mosaic.tracefile.TraceData`).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from analysis.display import Display, Displayable
from mosaic.core.errors import MosaicError
from mosaic.core.schema import AttributeSchema
from mosaic.tracefile import SCHEMA_VERSION, TraceData, read_trace_file

CMC_RANKS = (1, 5, 10, 20)


def read_trace(path: str | os.PathLike) -> "Trace":
    """Read the HDF5 trace at ``path`` (written by ``mosaic trace`` or :func:`mosaic.tracefile.write_trace`).

    Every dataset is verified against its checksum (schema 1.3.0 on; :mod:`mosaic.tracefile.checksums`):
    a corrupted file raises one :class:`MosaicError` line naming the file and the dataset. Files of
    older schema versions have no checksums and read as before (:attr:`Trace.checksums` is ``None``).
    """
    path = Path(path)
    data, attrs = read_trace_file(path)
    trace = Trace(data, path=path, schema_version=str(attrs.get("schema_version", SCHEMA_VERSION)))
    trace.checksums = attrs.get("checksums")
    return trace


class Trace(Displayable):
    """A trace in memory, with tidy pandas views.

    Parameters
    ----------
    data:
        The arrays, as written to or read from the HDF5 file.
    path:
        The file the trace came from, or ``None`` for a trace built in memory (e.g. by
        :func:`analysis.simulate`).
    schema_version:
        The on-disk schema version; defaults to the version this mosaic writes.

    :attr:`checksums` names the checksum every dataset of the file was verified against on reading
    (``"crc32"``), ``None`` for a file written without checksums or a trace built in memory.
    """

    checksums: str | None = None

    def __init__(self, data: TraceData, path: str | os.PathLike | None = None, *, schema_version: str | None = None):
        if not isinstance(data, TraceData):
            raise TypeError(f"Trace expects a mosaic.tracefile.TraceData, got {type(data).__name__}")
        self.data = data.validate()
        self.path = Path(path) if path is not None else None
        self.schema_version = schema_version or SCHEMA_VERSION

    def _display(self) -> Display:
        """What a notebook shows: where the trace comes from, its sizes, its conditions, what to watch for."""
        return trace_display(self)

    # ------------------------------------------------------------------ description
    @property
    def schema(self) -> AttributeSchema:
        return self.data.schema

    @property
    def provenance(self) -> dict[str, Any]:
        return self.data.provenance

    @property
    def dataset(self) -> dict[str, Any]:
        return self.data.dataset

    @property
    def sizes(self) -> dict[str, int]:
        return self.data.sizes

    @property
    def group_names(self) -> tuple[str, ...]:
        return self.schema.group_names

    @cached_property
    def sha256(self) -> str | None:
        """SHA-256 of the trace file's bytes; ``None`` for a trace built in memory."""
        if self.path is None:
            return None
        from mosaic.core.fileio import sha256_file

        return sha256_file(self.path)

    def condition_names(self, kind: str | Sequence[str] | None = None) -> list[str]:
        """Condition names in trace order, optionally only those of one kind (or several)."""
        names = self.data.condition_name.tolist()
        if kind is None:
            return names
        kinds = {kind} if isinstance(kind, str) else set(kind)
        return [n for n, k in zip(names, self.data.condition_kind.tolist()) if k in kinds]

    def condition_index(self, name: str) -> int:
        names = self.data.condition_name.tolist()
        try:
            return names.index(name)
        except ValueError:
            raise MosaicError(
                f"the trace has no condition {name!r}: available are {', '.join(names)}"
            ) from None

    # ------------------------------------------------------------------ image tables
    def _state_columns(self, states: np.ndarray) -> dict[str, pd.Categorical]:
        """One Categorical column of state labels per group; -1 (missing) becomes NA."""
        columns = {}
        for i, group in enumerate(self.schema.groups):
            codes = np.asarray(states[:, i], dtype=np.int64)
            codes = np.where((codes >= 0) & (codes < len(group.states)), codes, -1)
            columns[group.name] = pd.Categorical.from_codes(codes, categories=list(group.states))
        return columns

    @cached_property
    def query_table(self) -> pd.DataFrame:
        """One row per query image: index, pid, camid, path, valid, then one state-label column per group."""
        d = self.data
        frame = pd.DataFrame(
            {
                "index": np.arange(d.n_queries, dtype=np.int64),
                "pid": d.query_pid.astype(np.int64),
                "camid": d.query_camid.astype(np.int64),
                "path": pd.array(d.query_path.tolist(), dtype="str"),
                "valid": d.valid.astype(bool),
                **self._state_columns(d.query_states),
            }
        )
        return frame

    @cached_property
    def gallery_table(self) -> pd.DataFrame:
        """One row per gallery image: index, pid, camid, path, then one state-label column per group."""
        d = self.data
        return pd.DataFrame(
            {
                "index": np.arange(d.n_gallery, dtype=np.int64),
                "pid": d.gallery_pid.astype(np.int64),
                "camid": d.gallery_camid.astype(np.int64),
                "path": pd.array(d.gallery_path.tolist(), dtype="str"),
                **self._state_columns(d.gallery_states),
            }
        )

    # ------------------------------------------------------------------ per-condition
    @cached_property
    def conditions(self) -> pd.DataFrame:
        """One row per condition: name, kind, target group, router, counts and headline metrics.

        Columns: ``condition, kind, group, router, n_enabled, mAP, mINP, rank1, rank5, rank10,
        rank20, n_valid`` and one bool ``enabled:<group>`` per attribute group. CMC ranks beyond
        the trace's ``max_rank`` are NaN.
        """
        d = self.data
        frame = pd.DataFrame(
            {
                "condition": pd.array(d.condition_name.tolist(), dtype="str"),
                "kind": pd.array(d.condition_kind.tolist(), dtype="str"),
                "group": pd.array(d.condition_group.tolist(), dtype="str"),
                "router": pd.array(np.asarray(d.condition_router).tolist(), dtype="str"),
                "n_enabled": d.enabled_groups.sum(axis=1).astype(np.int64),
                "mAP": d.mAP.astype(np.float64),
                "mINP": d.mINP.astype(np.float64),
            }
        )
        for r in CMC_RANKS:
            frame[f"rank{r}"] = d.cmc[:, r - 1].astype(np.float64) if r <= d.max_rank else np.nan
        frame["n_valid"] = np.int64(d.valid.sum())
        for i, g in enumerate(self.group_names):
            frame[f"enabled:{g}"] = d.enabled_groups[:, i].astype(bool)
        return frame

    @cached_property
    def attributes(self) -> pd.DataFrame:
        """One row per expert: expert (index), label ``group=state``, group, state, code, family, coarse_family."""
        schema = self.schema
        rows = []
        for e, (g, s) in enumerate(schema.experts):
            group = schema.group(g)
            rows.append(
                {
                    "expert": e,
                    "label": f"{g}={s}",
                    "group": g,
                    "state": s,
                    "code": group.code(s),
                    "family": group.family,
                    "coarse_family": group.coarse_family,
                }
            )
        columns = ["expert", "label", "group", "state", "code", "family", "coarse_family"]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.astype({"expert": np.int64, "code": np.int64})

    # ------------------------------------------------------------------ per query
    @cached_property
    def queries(self) -> pd.DataFrame:
        """The tidy long table: one row per (condition, query).

        Columns: ``condition, kind, condition_group, query, pid, camid, valid, ap, inp, rank1,
        first_match_rank`` and one Categorical column of the query's state label per attribute
        group (NA where not annotated). Rows are ordered by condition, then query.
        """
        d = self.data
        C, Q = d.n_conditions, d.n_queries

        def per_condition(values) -> np.ndarray:
            return np.repeat(np.asarray(values), Q)

        def per_query(values) -> np.ndarray:
            return np.tile(np.asarray(values), C)

        frame = pd.DataFrame(
            {
                "condition": pd.array(per_condition(d.condition_name).tolist(), dtype="str"),
                "kind": pd.array(per_condition(d.condition_kind).tolist(), dtype="str"),
                "condition_group": pd.array(per_condition(d.condition_group).tolist(), dtype="str"),
                "query": per_query(np.arange(Q, dtype=np.int64)),
                "pid": per_query(d.query_pid.astype(np.int64)),
                "camid": per_query(d.query_camid.astype(np.int64)),
                "valid": per_query(d.valid.astype(bool)),
                "ap": d.ap.reshape(-1).astype(np.float64),
                "inp": d.inp.reshape(-1).astype(np.float64),
                "rank1": d.rank1.reshape(-1).astype(bool),
                "first_match_rank": d.first_match_rank.reshape(-1).astype(np.int64),
            }
        )
        for name, column in self._state_columns(d.query_states).items():
            frame[name] = pd.Categorical.from_codes(np.tile(column.codes, C), dtype=column.dtype)
        return frame

    def paired(self, condition: str, *, baseline: str = "oracle") -> pd.DataFrame:
        """Per-query values of ``condition`` beside its ``baseline`` (same query order by construction).

        Columns: ``query, pid, camid, valid``, then ``ap_a, ap_b, inp_a, inp_b, rank1_a,
        rank1_b, first_match_rank_a, first_match_rank_b`` (``_a`` = the baseline, ``_b`` =
        ``condition``), the changes ``d_ap = ap_b - ap_a`` and ``d_inp`` (condition minus
        baseline, as fractions: a loss is negative), and the query's state labels. The frame's
        ``attrs`` record which condition is which (``condition_a``, ``condition_b``).
        """
        a, b = self.condition_index(baseline), self.condition_index(condition)
        d = self.data
        frame = self.query_table[["index", "pid", "camid", "valid"]].rename(columns={"index": "query"}).copy()
        for metric, values in (("ap", d.ap), ("inp", d.inp), ("rank1", d.rank1), ("first_match_rank", d.first_match_rank)):
            frame[f"{metric}_a"] = values[a]
            frame[f"{metric}_b"] = values[b]
        frame = frame.astype({"ap_a": np.float64, "ap_b": np.float64, "inp_a": np.float64, "inp_b": np.float64})
        frame["d_ap"] = frame["ap_b"] - frame["ap_a"]
        frame["d_inp"] = frame["inp_b"] - frame["inp_a"]
        for g in self.group_names:
            frame[g] = self.query_table[g]
        frame.attrs.update(condition_a=baseline, condition_b=condition)
        return frame

    # ------------------------------------------------------------------ long helpers
    def gates_mean(self, *, valid_only: bool = False) -> pd.DataFrame:
        """Mean gate weight over queries, long: ``condition, layer, expert, label, group, mean_gate``.

        ``valid_only`` averages over valid queries only.
        """
        d = self.data
        gates = d.gates[:, d.valid] if valid_only else d.gates
        with np.errstate(invalid="ignore"):
            mean = gates.mean(axis=1) if gates.shape[1] else np.full((d.n_conditions, d.n_layers, self.schema.n_experts), np.nan)
        C, L, E = mean.shape
        attrs = self.attributes
        return pd.DataFrame(
            {
                "condition": pd.array(np.repeat(d.condition_name, L * E).tolist(), dtype="str"),
                "layer": np.tile(np.repeat(d.layers.astype(np.int64), E), C),
                "expert": np.tile(np.arange(E, dtype=np.int64), C * L),
                "label": pd.array(np.tile(attrs["label"].to_numpy(), C * L).tolist(), dtype="str"),
                "group": pd.array(np.tile(attrs["group"].to_numpy(), C * L).tolist(), dtype="str"),
                "mean_gate": mean.reshape(-1).astype(np.float64),
            }
        )

    def cmc_table(self) -> pd.DataFrame:
        """CMC curves, long: ``condition, rank, cmc``."""
        d = self.data
        C, R = d.cmc.shape
        return pd.DataFrame(
            {
                "condition": pd.array(np.repeat(d.condition_name, R).tolist(), dtype="str"),
                "rank": np.tile(np.arange(1, R + 1, dtype=np.int64), C),
                "cmc": d.cmc.reshape(-1).astype(np.float64),
            }
        )

    def topk_table(self, condition: str) -> pd.DataFrame:
        """The top-k neighbours of every query under one condition, long: ``query, position, gallery, distance, match``."""
        c = self.condition_index(condition)
        d = self.data
        Q, K = d.n_queries, d.top_k
        index = d.topk_index[c].astype(np.int64)
        gallery_pid = np.append(d.gallery_pid, -1)  # -1 pads point at a sentinel that matches nothing
        match = gallery_pid[np.where(index >= 0, index, d.n_gallery)] == d.query_pid[:, None]
        return pd.DataFrame(
            {
                "query": np.repeat(np.arange(Q, dtype=np.int64), K),
                "position": np.tile(np.arange(1, K + 1, dtype=np.int64), Q),
                "gallery": index.reshape(-1),
                "distance": d.topk_distance[c].reshape(-1).astype(np.float64),
                "match": match.reshape(-1),
            }
        )


def trace_display(trace: Trace) -> Display:
    """The short display of a trace: provenance highlights, sizes, the headline conditions, warnings.

    Reads the per-condition arrays only, never builds the per-query long table.
    """
    d, prov = trace.data, trace.provenance
    versions = prov.get("versions") if isinstance(prov.get("versions"), dict) else {}
    checkpoint = prov.get("checkpoint_sha256")
    display = Display("Trace", str(trace.path) if trace.path else "in memory")
    display.fields({
        "dataset": " · ".join(str(v) for v in (trace.dataset.get("name"), trace.dataset.get("format")) if v) or None,
        "attribute schema": f"{trace.schema.name}: {len(trace.group_names)} groups, {trace.schema.n_experts} experts",
        "sizes": f"{d.n_conditions} conditions × {d.n_queries} queries ({int(d.valid.sum())} valid) × "
                 f"{d.n_gallery} gallery images; {d.n_layers} expert layers",
        "distance": d.distance,
        "command": prov.get("command"),
        "seed": prov.get("seed"),
        "checkpoint": checkpoint[:12] if isinstance(checkpoint, str) else None,
        "source commit": prov.get("git_commit"),
        "mosaic": versions.get("mosaic"),
        "format version": trace.schema_version,
    }, "settings and provenance")
    kinds = pd.Series(d.condition_kind.tolist()).value_counts(sort=False)
    display.text("conditions by kind: " + ", ".join(f"{kind} {n}" for kind, n in kinds.items()))
    conditions = trace.conditions
    headline = conditions[conditions["kind"].isin(("oracle", "none", "code", "learned"))]
    shown = (headline if len(headline) else conditions)[["condition", "kind", "mAP", "rank1"]].copy()
    shown[["mAP", "rank1"]] = (100 * shown[["mAP", "rank1"]]).round(1)
    display.table(shown.rename(columns={"mAP": "mAP (%)", "rank1": "rank-1 (%)"}), "headline conditions",
                  note=f"every condition: trace.conditions ({len(conditions)} rows); per query: trace.queries")
    display.lines("warnings", _trace_warnings(trace), empty="none")
    return display


def _trace_warnings(trace: Trace) -> list[str]:
    """What a reader of this trace should know before trusting its numbers."""
    d, warnings = trace.data, []
    invalid = int((~d.valid.astype(bool)).sum())
    if invalid:
        warnings.append(f"{invalid} of {d.n_queries} queries have no true match in the gallery and are skipped")
    if "oracle" not in trace.condition_names():
        warnings.append("no oracle condition: paired comparisons need a baseline= that the trace holds")
    if d.filled_routes is not None and int(np.sum(d.filled_routes)):
        methods = sorted(set(map(str, d.fill_method)) - {"none"}) if d.fill_method is not None else []
        warnings.append(f"{int(np.sum(d.filled_routes))} routes of images with a missing state were filled"
                        + (f" ({', '.join(methods)})" if methods else ""))
    commit = str(trace.provenance.get("git_commit") or "")
    if commit.endswith("+dirty"):
        warnings.append(f"traced from a source tree with uncommitted changes ({commit})")
    return warnings


__all__ = ["Trace", "read_trace", "trace_display"]
