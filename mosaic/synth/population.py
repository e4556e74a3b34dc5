"""Who is in a world of any layout: the layout's priors drawn into a :class:`People` table.

Market-1501's priors are the tables of :mod:`mosaic.synth.priors` (with the garment-dependent
lower length) and are drawn by :func:`mosaic.synth.people.sample_people`. A layout with a
priors YAML (DukeMTMC-reID) is drawn here: gender first, every raw coded field and every colour
group conditional on it, then the world's constant and uniform groups.
"""

from __future__ import annotations

import numpy as np

from mosaic.synth.config import WorldConfig
from mosaic.synth.layouts import WorldLayout, get_layout
from mosaic.synth.people import People, sample_detail, sample_people

COLOUR_ATTRS = {"upcolour": "up_field", "downcolour": "down_field"}  # People's raw colour index per group


def sample_population(n: int, config: WorldConfig, rng: np.random.Generator) -> People:
    """``n`` people of the world's layout, the world's constants and uniform groups applied."""
    layout = get_layout(config.layout)
    if layout.priors_file is None:
        return sample_people(n, config, rng)
    return sample_from_priors(n, config, rng, layout)


def _draw(rng: np.random.Generator, counts, n: int) -> np.ndarray:
    p = np.asarray(counts, dtype=float)
    return rng.choice(p.size, size=n, p=p / p.sum())


def _coded_state_of_raw(layout: WorldLayout, group: str) -> np.ndarray:
    """State index of raw code 1, 2, ... of a coded group."""
    group_states = layout.group_states[group]
    codes = layout.mapping.sources[group].codes
    return np.array([group_states.index(codes[c]) for c in sorted(codes)])


def colour_state_of_field(layout: WorldLayout, group: str) -> np.ndarray:
    """State index of each raw colour field of ``group`` (pooled ones folded), then of 'none marked'."""
    source = layout.mapping.sources[group]
    states = layout.group_states[group]
    named = {**source.fields_to_states, **source.pooled}
    return np.array([states.index(named[f]) for f in layout.colour_fields[group]] + [states.index(source.none_marked)])


def colour_field_of_state(layout: WorldLayout, group: str, state: str) -> int:
    """The raw field an identity in ``state`` is drawn and annotated with (none marked for ``other``)."""
    index = layout.group_states[group].index(state)
    matches = np.flatnonzero(colour_state_of_field(layout, group) == index)
    fields = layout.colour_fields[group]
    own = [m for m in matches if m < len(fields)]
    return int(own[0]) if own else len(fields)


def most_frequent(layout: WorldLayout, group: str) -> str:
    """The state of ``group`` most identities of the real dataset have (genders pooled)."""
    priors = layout.priors
    if group == "gender":
        return max(priors["gender"], key=priors["gender"].get)
    tables = priors["conditional"].values()
    if group in COLOUR_ATTRS:
        totals = np.add(*(np.asarray(t["one_hot"][group]) for t in tables))
        pooled = np.bincount(colour_state_of_field(layout, group), weights=totals, minlength=len(layout.group_states[group]))
        return layout.group_states[group][int(np.argmax(pooled))]
    totals = np.add(*(np.asarray(t["coded"][group]) for t in tables))
    return layout.group_states[group][int(_coded_state_of_raw(layout, group)[int(np.argmax(totals))])]


def sample_from_priors(n: int, config: WorldConfig, rng: np.random.Generator, layout: WorldLayout) -> People:
    priors = layout.priors
    group_states = layout.group_states
    genders = tuple(priors["gender"])
    gender_raw = _draw(rng, [priors["gender"][g] for g in genders], n)
    coded = [g for g in group_states if g != "gender" and g not in COLOUR_ATTRS]
    raw = {g: np.empty(n, dtype=np.int64) for g in coded}
    colour = {g: np.empty(n, dtype=np.int64) for g in COLOUR_ATTRS}
    for g_code, g_name in enumerate(genders):
        rows = np.flatnonzero(gender_raw == g_code)
        table = priors["conditional"][g_name]
        for group in coded:
            raw[group][rows] = _draw(rng, table["coded"][group], rows.size)
        for group in COLOUR_ATTRS:
            colour[group][rows] = _draw(rng, table["one_hot"][group], rows.size)
    states = {"gender": np.array([group_states["gender"].index(g) for g in genders])[gender_raw]}
    states.update({g: _coded_state_of_raw(layout, g)[raw[g]] for g in coded})

    for group, state in config.constant_states.items():
        state = state or most_frequent(layout, group)
        if group in COLOUR_ATTRS:
            colour[group][:] = colour_field_of_state(layout, group, state)
        else:
            states[group][:] = group_states[group].index(state)
    for group in config.uniform:
        drawn = rng.integers(len(group_states[group]), size=n)
        if group in COLOUR_ATTRS:
            fields = [colour_field_of_state(layout, group, s) for s in group_states[group]]
            colour[group][:] = np.asarray(fields)[drawn]
        else:
            states[group][:] = drawn
    for group in COLOUR_ATTRS:
        states[group] = colour_state_of_field(layout, group)[colour[group]]
    states = {g: states[g].astype(np.int16) for g in group_states}
    return People(states, colour["upcolour"], colour["downcolour"], sample_detail(n, config.identity_detail, rng))
