"""Simulated studies: several labels × seeds of :func:`analysis.simulate` traces with known effects.

Each label has its planted per-group effects (logit scale, see :mod:`analysis.simulation.trace`); each run
(training seed) of a label adds its own deviation ``N(0, seed_sd)`` per group, the between-seed
variation a reseed brings. Every trace records its ``label``, its training ``seed`` and a distinct
``checkpoint_sha256`` in its provenance, as a traced run would, so :func:`analysis.study` reads it
like any other.

``shared_test_set=True`` evaluates the seeds of a label on one test set (the same identities,
queries and noise, only the model's effects differ), as seeds of one dataset are; ``False`` draws a
fresh test set per run, so the runs' identity errors are independent.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

from analysis.simulation.trace import simulate_data
from mosaic.core.errors import MosaicError

__all__ = ["simulate_study"]


def simulate_study(
    labels: Mapping[str, Mapping[str, float]],
    *,
    n_seeds: int = 3,
    seed_sd: float | Mapping[str, float] = 0.0,
    shared_test_set: bool = True,
    seed: int = 0,
    **params: Any,
) -> list:
    """Traces of ``n_seeds`` runs per label; ``labels`` maps each label to its planted ``effects``.

    ``seed_sd`` is the between-seed sd of each group's effect (one number, or ``{group: sd}``);
    ``params`` go to :func:`analysis.simulation.trace.simulate_data` (``n_ids``, ``groups``, ``effect_sd``,
    ``kinds``, ...). Returns :class:`analysis.Trace` objects in label order, then seed order.
    """
    from analysis.trace import Trace

    if n_seeds < 1:
        raise MosaicError(f"n_seeds must be at least 1, got {n_seeds}")
    for reserved in ("effects", "seed"):
        if reserved in params:
            raise MosaicError(f"simulate_study sets {reserved!r} itself: pass it through labels / seed")
    rng = np.random.default_rng([int(seed), 0x5EED])
    traces = []
    for li, (label, effects) in enumerate(labels.items()):
        base = dict(effects)
        for s in range(n_seeds):
            groups = _group_names(params.get("groups"))
            spread = {g: (seed_sd.get(g, 0.0) if isinstance(seed_sd, Mapping) else float(seed_sd)) for g in groups}
            run_effects = {g: base.get(g, 0.0) + spread[g] * rng.standard_normal() for g in groups}
            world_seed = 1000 * (int(seed) + 1) + 100 * li + (0 if shared_test_set else s + 1)
            data = simulate_data(effects=run_effects, seed=world_seed, **params)
            checkpoint = hashlib.sha256(f"simulated run {seed}/{label}/{s}".encode()).hexdigest()
            data.provenance = {**data.provenance, "label": str(label), "checkpoint_sha256": checkpoint,
                               "config": {"train": {"run": {"seed": s}}},
                               "study": {"planted_effects": run_effects, "label_effects": base}}
            traces.append(Trace(data))
    return traces


def _group_names(groups) -> list[str]:
    from analysis.simulation.design import resolve_schema

    return list(resolve_schema(groups).group_names)
