"""Who is in a synthetic world: attribute states drawn from Market-1501's frequencies, plus the
non-attribute detail that tells identities with equal attributes apart.

Everything here is a struct of numpy arrays, one entry per person, so the renderer can draw a
batch of people with array operations instead of a loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mosaic.synth.config import GROUP_STATES, GROUPS, WorldConfig
from mosaic.synth.priors import (
    CONDITIONAL_COUNTS,
    DOWN_COLOUR_FIELDS,
    GENDER_COUNTS,
    UP_COLOUR_FIELDS,
)

NO_UP_COLOUR = len(UP_COLOUR_FIELDS)  # raw choice index: no upper colour marked (state "other")
NO_DOWN_COLOUR = len(DOWN_COLOUR_FIELDS)

# The raw down colour fields that are states of their own; purple and yellow are pooled into
# "other" by the market1501 schema (too rare in the real file), as is "no colour marked".
_DOWN_STATE_OF_FIELD = np.array(
    [GROUP_STATES["downcolour"].index(f.removeprefix("down")) if f.removeprefix("down") in GROUP_STATES["downcolour"]
     else GROUP_STATES["downcolour"].index("other") for f in DOWN_COLOUR_FIELDS]
    + [GROUP_STATES["downcolour"].index("other")]
)  # fmt: skip
# Binary and ordinal groups whose state index is the raw code minus one.
CODED_GROUPS = ("gender", "hair", "age", "up", "down", "clothes", "hat", "backpack", "bag", "handbag")
DETAIL_PALETTE = np.array(
    [[30, 30, 32], [215, 215, 210], [110, 75, 45], [120, 120, 125], [45, 65, 140], [160, 40, 40], [60, 100, 60]],
    dtype=np.float32,
)  # shoes, hats, bags: black, white, brown, gray, blue, red, green


@dataclass(frozen=True)
class People:
    """Attribute states and identity detail of a set of people (struct of arrays)."""

    states: dict[str, np.ndarray]  # group -> state index in schema order (int16)
    up_field: np.ndarray  # raw upper-colour field index, NO_UP_COLOUR when none is marked
    down_field: np.ndarray  # raw lower-colour field index, NO_DOWN_COLOUR when none is marked
    detail: dict[str, np.ndarray]  # non-attribute appearance, see sample_detail

    def __len__(self) -> int:
        return int(self.up_field.shape[0])

    def take(self, index: np.ndarray) -> "People":
        return People(
            states={g: v[index] for g, v in self.states.items()},
            up_field=self.up_field[index],
            down_field=self.down_field[index],
            detail={k: v[index] for k, v in self.detail.items()},
        )

    def with_state(self, group: str, state: str) -> "People":
        """A copy where every person has ``state`` in ``group`` (raw colour fields follow)."""
        states = dict(self.states)
        code = GROUP_STATES[group].index(state)
        states[group] = np.full(len(self), code, dtype=np.int16)
        up_field, down_field = self.up_field, self.down_field
        if group == "upcolour":
            up_field = np.full(len(self), _up_field_of_state(state))
        if group == "downcolour":
            down_field = np.full(len(self), _down_field_of_state(state))
        return People(states, up_field, down_field, dict(self.detail))


def _up_field_of_state(state: str) -> int:
    return NO_UP_COLOUR if state == "other" else UP_COLOUR_FIELDS.index(f"up{state}")


def _down_field_of_state(state: str) -> int:
    return NO_DOWN_COLOUR if state == "other" else DOWN_COLOUR_FIELDS.index(f"down{state}")


def _draw(rng: np.random.Generator, counts, n: int) -> np.ndarray:
    p = np.asarray(counts, dtype=float)
    return rng.choice(p.size, size=n, p=p / p.sum())


def most_frequent_state(group: str) -> str:
    """The state of ``group`` most identities of Market-1501 have (both genders pooled)."""
    if group == "gender":
        return max(GENDER_COUNTS, key=GENDER_COUNTS.get)
    key = {"upcolour": "upcolour", "downcolour": "downcolour"}.get(group, group)
    if group == "down":
        totals = np.add(*(np.add(c["down|clothes=1"], c["down|clothes=2"]) for c in CONDITIONAL_COUNTS.values()))
    else:
        totals = np.add(*(np.asarray(c[key]) for c in CONDITIONAL_COUNTS.values()))
    if group == "downcolour":  # raw fields -> pooled schema states
        pooled = np.bincount(_DOWN_STATE_OF_FIELD, weights=totals, minlength=len(GROUP_STATES[group]))
        return GROUP_STATES[group][int(np.argmax(pooled))]
    return GROUP_STATES[group][int(np.argmax(totals))]


def sample_people(n: int, config: WorldConfig, rng: np.random.Generator) -> People:
    """``n`` people with Market-1501 attribute frequencies, the world's constants applied."""
    genders = tuple(GENDER_COUNTS)
    gender = _draw(rng, [GENDER_COUNTS[g] for g in genders], n)
    constants = config.constant_states
    if "gender" in constants:
        gender[:] = GROUP_STATES["gender"].index(constants["gender"] or most_frequent_state("gender"))
    codes = {"gender": gender}
    up_field = np.empty(n, dtype=np.int64)
    down_field = np.empty(n, dtype=np.int64)
    for g_code, g_name in enumerate(genders):
        rows = np.flatnonzero(gender == g_code)
        table = CONDITIONAL_COUNTS[g_name]
        for group in ("hair", "age", "up", "clothes", "hat", "backpack", "bag", "handbag"):
            codes.setdefault(group, np.empty(n, dtype=np.int64))[rows] = _draw(rng, table[group], rows.size)
        up_field[rows] = _draw(rng, table["upcolour"], rows.size)
        down_field[rows] = _draw(rng, table["downcolour"], rows.size)
    for group in ("hair", "age", "up", "clothes", "hat", "backpack", "bag", "handbag"):
        if group in constants:
            codes[group][:] = GROUP_STATES[group].index(constants[group] or most_frequent_state(group))
    # Lower-body length depends on the garment (long dresses are rarer than long trousers).
    codes["down"] = np.empty(n, dtype=np.int64)
    for g_code, g_name in enumerate(genders):
        for garment in (0, 1):
            rows = np.flatnonzero((gender == g_code) & (codes["clothes"] == garment))
            counts = CONDITIONAL_COUNTS[g_name][f"down|clothes={garment + 1}"]
            if sum(counts) == 0:  # e.g. a dress imposed on men by a constant: use the other gender
                counts = CONDITIONAL_COUNTS[genders[1 - g_code]][f"down|clothes={garment + 1}"]
            codes["down"][rows] = _draw(rng, counts, rows.size)
    if "down" in constants:
        codes["down"][:] = GROUP_STATES["down"].index(constants["down"] or most_frequent_state("down"))
    if "upcolour" in constants:
        up_field[:] = _up_field_of_state(constants["upcolour"] or most_frequent_state("upcolour"))
    if "downcolour" in constants:
        down_field[:] = _down_field_of_state(constants["downcolour"] or most_frequent_state("downcolour"))

    # Drawn last, so a world without uniform groups keeps the random stream (and bytes) it had.
    for group in config.uniform:
        drawn = rng.integers(len(GROUP_STATES[group]), size=n)
        if group == "upcolour":
            up_field[:] = [_up_field_of_state(GROUP_STATES[group][i]) for i in drawn]
        elif group == "downcolour":
            down_field[:] = [_down_field_of_state(GROUP_STATES[group][i]) for i in drawn]
        else:
            codes[group][:] = drawn

    states = {g: codes[g].astype(np.int16) for g in CODED_GROUPS}
    states["upcolour"] = np.where(up_field == NO_UP_COLOUR, GROUP_STATES["upcolour"].index("other"), up_field).astype(np.int16)
    states["downcolour"] = _DOWN_STATE_OF_FIELD[down_field].astype(np.int16)
    states = {g: states[g] for g in GROUPS}
    return People(states, up_field, down_field, sample_detail(n, config.identity_detail, rng))


def sample_detail(n: int, strength: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Non-attribute appearance. At strength 0 every person gets the same neutral detail.

    The same random numbers are drawn whatever the strength, so a world's attributes do not
    change when only ``identity_detail`` does.
    """
    s = float(strength)
    u = rng.random((n, 16)).astype(np.float32)
    z = rng.standard_normal((n, 8)).astype(np.float32)
    mix = min(1.0, s)  # probability-like knobs saturate at 1
    return {
        "skin": np.clip(0.45 + s * 0.45 * (u[:, 0] - 0.5) * 2 * 0.6, 0, 1),  # 0 light .. 1 dark
        "hair_tone": np.clip(0.3 + s * 0.35 * (u[:, 1] - 0.5) * 2, 0, 1),  # 0 black .. 1 brown
        "shoe": np.where(u[:, 2] < mix, (u[:, 3] * len(DETAIL_PALETTE)).astype(np.int64), 0),
        "pattern": np.where(u[:, 4] < 0.5 * mix, 1 + (u[:, 5] < 0.5), 0).astype(np.int64),  # 0 plain 1 stripes 2 logo
        "stripe_period": 3.0 + 4.0 * u[:, 6],
        "logo": (u[:, 7] * len(DETAIL_PALETTE)).astype(np.int64),
        "up_shade": np.clip(1 + 0.16 * s * z[:, 0], 0.6, 1.4),
        "down_shade": np.clip(1 + 0.16 * s * z[:, 1], 0.6, 1.4),
        "tint": np.clip(1 + 0.05 * s * z[:, 2:5], 0.85, 1.15),  # per-channel colour shade
        "height": np.clip(1 + 0.045 * s * z[:, 5], 0.88, 1.12),
        "build": np.clip(1 + 0.07 * s * z[:, 6], 0.8, 1.2),
        "accessory": np.where(u[:, 8] < mix, (u[:, 9] * len(DETAIL_PALETTE)).astype(np.int64), 2),
        "hat_colour": np.where(u[:, 10] < mix, (u[:, 11] * len(DETAIL_PALETTE)).astype(np.int64), 0),
        "side": np.where(u[:, 12] < 0.5 * mix, -1.0, 1.0).astype(np.float32),  # which hand carries bags
        "other_colour": (u[:, 13] * 4).astype(np.int64),  # which colour an "other" garment gets
    }
