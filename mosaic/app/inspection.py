"""What ``mosaic inspect`` shows of a trace, as data: versions, sizes, provenance, one row per
condition and the decomposition per group (:func:`mosaic.api.inspect`).

Reads only the small arrays (conditions, coordinates) and the attributes, never the gates, and
never imports torch, so it answers at once even for large traces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CMC_COLUMNS", "decomposition_summary", "summarize_trace", "trace_precision"]

CMC_COLUMNS = (1, 5, 10)


def summarize_trace(path: Path) -> dict[str, Any]:
    """A JSON-safe summary: versions, sizes, provenance, schema and one row per condition."""
    import numpy as np

    from mosaic.core.fileio import sha256_file
    from mosaic.tracefile import open_trace_file, read_trace_attrs

    attrs = read_trace_attrs(path)
    with open_trace_file(path) as h5:
        names = h5["condition"].asstr()[()].tolist()
        groups = h5["group"].asstr()[()].tolist()
        kind = h5["conditions/kind"].asstr()[()].tolist()
        target = h5["conditions/target_group"].asstr()[()].tolist()
        router = h5["conditions/router"].asstr()[()].tolist()
        enabled = np.asarray(h5["conditions/enabled"][()], dtype=bool).reshape(len(names), len(groups))
        mAP = h5["conditions/mAP"][()]
        mINP = h5["conditions/mINP"][()]
        cmc = h5["conditions/cmc"][()]
        n_valid = int(np.asarray(h5["query_images/valid"][()], dtype=bool).sum())

    def number(value) -> float | None:
        value = float(value)
        return None if value != value else value  # NaN (no valid query) -> null in JSON

    def cmc_at(c: int, r: int) -> float | None:
        return number(cmc[c, r - 1]) if r <= cmc.shape[1] else None

    conditions = [
        {
            "condition": names[c],
            "kind": kind[c],
            "group": target[c],
            "router": router[c],
            "n_enabled": int(enabled[c].sum()),
            "mAP": number(mAP[c]),
            "mINP": number(mINP[c]),
            **{f"rank{r}": cmc_at(c, r) for r in CMC_COLUMNS},
        }
        for c in range(len(names))
    ]
    provenance = attrs.get("provenance", {})
    decomposition = decomposition_summary(conditions, groups, attrs.get("schema_version"))
    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "schema_version": attrs.get("schema_version"),
        "checksums": attrs.get("checksums"),  # None: written before checksums (schema < 1.3.0)
        "mosaic_version": attrs.get("mosaic_version"),
        "created": attrs.get("created"),
        "distance": attrs.get("distance"),
        "precision": trace_precision(provenance),
        "sizes": attrs["sizes"],
        "n_valid_queries": n_valid,
        "attribute_schema": attrs["attribute_schema"]["name"],
        "groups": groups,
        "dataset": attrs.get("dataset", {}),
        "provenance": provenance,
        "conditions": conditions,
        "decomposition": decomposition,
    }


def trace_precision(provenance: dict[str, Any]) -> str:
    """The arithmetic the trace's network ran in (``fp32``, ``tf32``, ``bf16``); traces written
    before the setting existed ran in fp32."""
    return str(provenance.get("precision") or provenance.get("trace_settings", {}).get("precision") or "fp32")


def decomposition_summary(conditions: list[dict[str, Any]], groups: list[str], schema_version: str | None) -> dict[str, Any]:
    """Information, capacity, misrouting and semantics per group and the code share, from the stored
    per-condition mAP and rank-1 (point estimates; ``mosaic report`` adds identity-cluster intervals)."""
    from analysis.methods.decomposition import point_decomposition, unavailable_quantities

    metrics = {row["condition"]: {"mAP": _nan(row["mAP"]), "rank1": _nan(row["rank1"])} for row in conditions}
    per_group, share = point_decomposition(metrics, groups, schema_version=schema_version)
    ok = per_group[per_group["status"] == "ok"]
    return {
        "sign": "condition - reference; negative = the model loses",
        "groups": [
            {"group": group, **{f"{r.quantity}_{r.metric}": _number(r.estimate) for r in rows.itertuples()}}
            for group, rows in ok.groupby("group", sort=False)
        ],
        "code_share": {r.metric: _number(r.estimate) for r in share.itertuples() if r.status == "ok"},
        "unavailable": {**unavailable_quantities(per_group), **{
            "code_share": r.reason for r in share.itertuples() if r.status != "ok"}},
    }


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _number(value: float) -> float | None:
    value = float(value)
    return None if value != value else value
