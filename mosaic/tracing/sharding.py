"""Tracing conditions over several processes: ``torchrun --nproc_per_node N -m mosaic trace ...``.

Each condition's result depends only on the model, the data, the settings and the seed, so the
conditions can be computed anywhere. Every rank computes the trunk tokens itself (one pass, about
one condition's cost) and then only its share of the conditions; rank 0 gathers the results
(``torch.distributed.gather_object``, in the conditions' order) and alone writes the trace. The
result is the one-process trace exactly (a two-process Gloo test compares them bitwise): a
condition runs the same batches in the same arithmetic wherever it runs.

The share is balanced by cost: conditions that share a segment of routing (a ``counterfactual``
re-routes only the queries, so its gallery is the oracle's, :mod:`mosaic.tracing.features`) form
one bundle kept on one rank, where the segment is computed once; bundles are dealt largest first
to the least loaded rank, counting the head rows each bundle computes.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["gather_outcomes", "shard_conditions"]


def _bundles(keys: Sequence[Sequence[str]]) -> list[list[int]]:
    """Conditions joined when they share any segment key (union-find), each bundle in order."""
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[str, int] = {}
    for c, condition_keys in enumerate(keys):
        for key in condition_keys:
            if key in first_with:
                parent[root(c)] = root(first_with[key])
            else:
                first_with[key] = c
    groups: dict[int, list[int]] = {}
    for c in range(len(keys)):
        groups.setdefault(root(c), []).append(c)
    return list(groups.values())


def shard_conditions(keys: Sequence[Sequence[str]], world_size: int,
                     segment_rows: Sequence[int] | None = None) -> list[list[int]]:
    """Condition indices per rank. ``keys[c]`` are condition ``c``'s segment keys (empty for a
    condition that runs no model); ``segment_rows`` the images of each segment (default 1 each)."""
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    rows = list(segment_rows) if segment_rows is not None else None

    def cost(bundle: list[int]) -> int:
        seen: dict[str, int] = {}
        for c in bundle:
            for s, key in enumerate(keys[c]):
                seen[key] = rows[s] if rows is not None else 1
        return max(1, sum(seen.values()))

    shares: list[list[int]] = [[] for _ in range(world_size)]
    load = [0] * world_size
    for bundle in sorted(_bundles(keys), key=lambda b: (-cost(b), b[0])):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        shares[rank].extend(bundle)
        load[rank] += cost(bundle)
    return [sorted(share) for share in shares]


def gather_outcomes(outcomes: Mapping[int, Any], dist) -> dict[int, Any] | None:
    """Every rank's ``{condition index: outcome}`` merged on rank 0; ``None`` on the other ranks."""
    import torch.distributed

    gathered: list[Any] | None = [None] * dist.world_size if dist.is_main else None
    torch.distributed.gather_object(dict(outcomes), gathered, dst=0)
    if not dist.is_main:
        return None
    merged: dict[int, Any] = {}
    for part in gathered:
        merged.update(part)
    return merged
