"""The annotation traps of a real attribute file, planted on chosen identities of a synthetic world.

DukeMTMC-reID's ``duke_attribute.mat`` leaves ``top`` at 0 (not annotated) for train ids 0370
and 0679, marks two or three lower-body colours for 23 test ids and no colour at all for a few;
a world reproduces such traps through the ``unannotated``, ``multi_marked`` and ``none_marked``
knobs (``GROUP:SPLIT=COUNT``). The first two live in the labels only (the pixels show one
state, as in the real file); a person with no colour marked wears a colour no field names (the
schema's ``other``), which the priors also draw on their own. ``world.json`` lists the
identities each trap touched, so a reader's findings can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mosaic.core.errors import MosaicError
from mosaic.synth.config import WorldConfig, parse_trap
from mosaic.synth.layouts import get_layout
from mosaic.synth.people import People
from mosaic.synth.population import COLOUR_ATTRS, colour_state_of_field


@dataclass
class Traps:
    """Identities (pids) each trap touches."""

    unannotated: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (group, split) -> pids
    # (group, split) -> pid -> the second raw colour field marked (index into the layout's fields)
    multi_marked: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    none_marked: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # planted; the priors add more
    colour_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def extra_fields(self, n_people: int) -> dict[str, np.ndarray]:
        """Colour group -> (n_people,) second marked field per person row (-1: none)."""
        out: dict[str, np.ndarray] = {}
        for (group, _split), marks in self.multi_marked.items():
            column = out.setdefault(group, np.full(n_people, -1, dtype=np.int64))
            for pid, extra in marks.items():
                column[pid - 1] = extra
        return out

    def to_dict(self) -> dict:
        return {
            "unannotated": [
                {"group": g, "split": s, "ids": [f"{p:04d}" for p in pids]} for (g, s), pids in self.unannotated.items()
            ],
            "multi_marked": [
                {
                    "group": g,
                    "split": s,
                    "ids": [f"{p:04d}" for p in marks],
                    "second_field": [self.colour_fields[g][f] for f in marks.values()],
                }
                for (g, s), marks in self.multi_marked.items()
            ],
            "none_marked": [
                {"group": g, "split": s, "ids": [f"{p:04d}" for p in pids]} for (g, s), pids in self.none_marked.items()
            ],
        }


def plant_traps(config: WorldConfig, people: People, train_pids, test_pids, rng: np.random.Generator) -> Traps:
    """Choose the identities of every trap the config asks for; a clear error when a split is too small."""
    layout = get_layout(config.layout)
    pools = {"train": np.asarray(train_pids), "test": np.asarray(test_pids)}
    traps = Traps(colour_fields=layout.colour_fields)
    for entry in config.unannotated:
        group, split, count = parse_trap(entry, "unannotated", config.layout)
        traps.unannotated[(group, split)] = _choose(pools[split], count, rng, f"unannotated {entry!r}")
    for entry in config.none_marked:
        group, split, count = parse_trap(entry, "none_marked", config.layout)
        fields, drawn = layout.colour_fields[group], _colour_field(people, group)
        pool = np.array([p for p in pools[split] if drawn[p - 1] < len(fields)], dtype=np.int64)
        chosen = _choose(pool, count, rng, f"none_marked {entry!r}")
        none_state = colour_state_of_field(layout, group)[len(fields)]
        for pid in chosen:  # the person changes, not only the label: drawn before any pixel
            drawn[pid - 1] = len(fields)
            people.states[group][pid - 1] = none_state
        traps.none_marked[(group, split)] = chosen
    for entry in config.multi_marked:
        group, split, count = parse_trap(entry, "multi_marked", config.layout)
        fields = layout.colour_fields[group]
        drawn = _colour_field(people, group)
        skipped = set(traps.unannotated.get((group, split), ()))
        # only an identity with a colour marked can have a second one
        pool = np.array([p for p in pools[split] if drawn[p - 1] < len(fields) and p not in skipped], dtype=np.int64)
        chosen = _choose(pool, count, rng, f"multi_marked {entry!r}")
        marks = {}
        for pid in chosen:
            others = [i for i in range(len(fields)) if i != drawn[pid - 1]]
            marks[pid] = int(others[int(rng.integers(len(others)))])
        traps.multi_marked[(group, split)] = marks
    return traps


def _colour_field(people: People, group: str) -> np.ndarray:
    return getattr(people, COLOUR_ATTRS[group])


def _choose(pool: np.ndarray, count: int, rng: np.random.Generator, what: str) -> list[int]:
    if count > pool.size:
        raise MosaicError(f"{what} asks for {count} identities but the split has {pool.size} that qualify: lower the count or add --ids")
    return sorted(int(p) for p in rng.choice(pool, size=count, replace=False)) if count else []
