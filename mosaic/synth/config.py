"""The knobs of a synthetic world, as one validated dataclass (recorded whole in ``world.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Mapping

from mosaic.core.errors import MosaicError
from mosaic.core.settings import build, check_fields
from mosaic.synth.layouts import DEFAULT_LAYOUT, WORLD_LAYOUTS, get_layout

# Attribute groups of the market1501 schema and their states, in schema order, which the Market
# priors of priors.py and people.py are written against; ``tests/test_synth.py`` checks this
# table against the shipped schema so the two cannot drift apart. Other layouts take their
# groups from their schema (``WorldLayout.group_states``).
GROUP_STATES: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female"),
    "hair": ("short", "long"),
    "age": ("young", "teenager", "adult", "old"),
    "up": ("long-sleeve", "short-sleeve"),
    "down": ("long", "short"),
    "clothes": ("dress", "pants"),
    "hat": ("no", "yes"),
    "backpack": ("no", "yes"),
    "bag": ("no", "yes"),
    "handbag": ("no", "yes"),
    "upcolour": ("black", "white", "red", "purple", "yellow", "gray", "blue", "green", "other"),
    "downcolour": ("black", "white", "pink", "gray", "blue", "green", "brown", "other"),
}
GROUPS = tuple(GROUP_STATES)


@dataclass(frozen=True)
class WorldConfig:
    """Everything that decides a synthetic world; same config and seed give the same bytes.

    Identities are split half/half into train and test ids, as in Market-1501 (751/750) and
    DukeMTMC-reID (702/702, plus its gallery-only identities: ``n_distractor_ids``).

    Attributes:
        n_ids: identities in total (train + test halves).
        images_per_id: images of each identity (spread over 2 or more cameras).
        n_cameras: cameras (2..9); each differs in light, blur, scale, position and background.
        seed: the one source of randomness.
        height, width: image size in pixels (Market-1501's originals are 128 x 64).
        n_distractors: gallery images with pid 0000 (people and scenes that match no query);
            None: 15 % of the test identities' gallery images.
        n_junk: gallery images with pid -1 (bad boxes every loader drops); None: 5 %.
        identity_detail: strength (0..2) of what tells identities apart beyond their attributes:
            skin tone, hair colour, shoe colour, shirt pattern, colour shades, height, build,
            accessory colours. 0 makes identities with equal attributes look the same.
        camera_variation: strength (0..2) of the differences between cameras; 0 makes all
            cameras identical.
        nuisance: strength (0..2) of per-image variation: position, scale, pose, noise.
        occlusion: probability (0..1) that an image is partly occluded.
        invisible: groups whose state varies in the labels but is never drawn (always drawn in
            one neutral way), e.g. ``("hat",)``.
        constant: groups every identity shares one state of: ``"hat"`` (the most frequent state
            in Market-1501) or ``"hat=yes"``.
        uniform: groups whose state is drawn uniformly over its states for every identity instead
            of from Market-1501's frequencies: the most a group can vary, so the most identity
            information it can carry (the opposite of ``constant``).
        missing: fraction (0..1) of identity-level labels recorded as 0 (not annotated) in the
            attribute file; the pixels still show the drawn state.
        jpeg_quality: JPEG quality (1..95) of the written images.
        layout: dataset layout the world is written in (``mosaic.synth.layouts.WORLD_LAYOUTS``):
            ``market1501`` or ``dukemtmc``; it decides file names, cameras, attribute file,
            schema and priors, and the groups the knobs above may name.
        n_distractor_ids: annotated identities seen only in the gallery (DukeMTMC-reID has 408
            beside its 702 test identities with queries); None: the layout's share (Market: 0).
        unannotated: labels written as 0 for chosen identities, ``"GROUP:SPLIT=COUNT"`` with
            SPLIT ``train`` or ``test`` (DukeMTMC-reID: ``top:train=2``); None: the layout's traps.
        multi_marked: colour groups with several fields marked for chosen identities, same form
            (DukeMTMC-reID: ``downcolour:test=3``); None: the layout's traps.
        none_marked: colour groups with no field marked for chosen identities (they wear a colour
            no field names, the schema's ``other``), on top of those the priors draw; same form.
    """

    n_ids: int = 300
    images_per_id: int = 16
    n_cameras: int | None = None  # None: the layout's (Market-1501 6, DukeMTMC-reID 8)
    seed: int = 0
    height: int = 128
    width: int = 64
    n_distractors: int | None = None
    n_junk: int | None = None
    identity_detail: float = 1.0
    camera_variation: float = 1.0
    nuisance: float = 1.0
    occlusion: float = 0.15
    invisible: tuple[str, ...] = field(default_factory=tuple)
    constant: tuple[str, ...] = field(default_factory=tuple)
    uniform: tuple[str, ...] = field(default_factory=tuple)
    missing: float = 0.0
    jpeg_quality: int = 90
    layout: str = DEFAULT_LAYOUT
    n_distractor_ids: int | None = None
    unannotated: tuple[str, ...] | None = None
    multi_marked: tuple[str, ...] | None = None
    none_marked: tuple[str, ...] | None = None

    bounds: ClassVar[dict[str, tuple]] = {
        "seed": (0, None), "height": (32, 1024), "width": (16, 1024), "jpeg_quality": (1, 95),
        "n_distractors": (0, 100_000), "n_junk": (0, 100_000), "n_distractor_ids": (0, 100_000),
        "identity_detail": (0.0, 2.0), "camera_variation": (0.0, 2.0), "nuisance": (0.0, 2.0),
        "occlusion": (0.0, 1.0), "missing": (0.0, 1.0),
    }
    choices: ClassVar[dict[str, Any]] = {"layout": lambda: list(WORLD_LAYOUTS)}

    def __post_init__(self) -> None:
        # The layout fills what it decides (cameras, traps) before anything is checked.
        world_layout = get_layout(self.layout)
        if self.n_cameras is None:
            object.__setattr__(self, "n_cameras", world_layout.default_cameras)
        for knob in TRAP_KNOBS:
            value = getattr(self, knob)
            if value is None:
                value = world_layout.default_traps.get(knob, ())
            object.__setattr__(self, knob, (value,) if isinstance(value, str) else tuple(value))
        # Lists from YAML/JSON/CLI become tuples, so the config stays hashable and comparable.
        object.__setattr__(self, "invisible", tuple(self.invisible))
        object.__setattr__(self, "constant", tuple(self.constant))
        object.__setattr__(self, "uniform", tuple(self.uniform))
        self._validate()

    # ------------------------------------------------------------------------ validation
    def _validate(self) -> None:
        def integer(name: str, low: int, high: int | None = None, hint: str = "") -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
                bound = f"{low}..{high}" if high is not None else f">= {low}"
                raise MosaicError(f"{name} must be an integer {bound}, got {value!r}{hint}")

        check_fields(self)  # types, the static ranges of `bounds` and the layout registry
        integer("n_ids", 4, 9999, ": a world needs at least 2 train and 2 test identities, pids have 4 digits")
        integer("images_per_id", 4, hint=": each test identity needs 2 cameras with 2 images each")
        world_layout = get_layout(self.layout)
        integer("n_cameras", 2, world_layout.max_cameras, f": the {world_layout.folders.title} layout has at most that many cameras")
        _check_layout_extras(self, world_layout)
        for group in self.invisible:
            _check_group(group, "invisible", self.layout)
        if len(set(self.invisible)) != len(self.invisible):
            raise MosaicError(f"invisible lists a group twice: {list(self.invisible)}")
        seen = set()
        for entry in self.constant:
            group, _ = parse_constant(entry, self.layout)
            if group in seen:
                raise MosaicError(f"constant lists group {group!r} twice: keep one entry per group")
            seen.add(group)
        for group in self.uniform:
            _check_group(group, "uniform", self.layout)
            if group in seen:
                raise MosaicError(f"group {group!r} cannot be both constant and uniform: keep it in one of the two")
        if len(set(self.uniform)) != len(self.uniform):
            raise MosaicError(f"uniform lists a group twice: {list(self.uniform)}")

    # ------------------------------------------------------------------------- helpers
    @property
    def constant_states(self) -> dict[str, str | None]:
        """Group -> requested state name (None: the most frequent state in the layout's dataset)."""
        return dict(parse_constant(entry, self.layout) for entry in self.constant)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["invisible"] = list(self.invisible)
        data["constant"] = list(self.constant)
        data["uniform"] = list(self.uniform)
        data["unannotated"] = list(self.unannotated)
        data["multi_marked"] = list(self.multi_marked)
        data["none_marked"] = list(self.none_marked)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "WorldConfig":
        return build(cls, data, where="the world settings")


def _check_group(group: str, knob: str, layout: str = DEFAULT_LAYOUT) -> None:
    states = get_layout(layout).group_states
    if group not in states:
        raise MosaicError(f"unknown attribute group {group!r} in {knob} of a {layout} world: use one of {', '.join(states)}")


def parse_constant(entry: str, layout: str = DEFAULT_LAYOUT) -> tuple[str, str | None]:
    """``"hat"`` -> ``("hat", None)``; ``"hat=yes"`` -> ``("hat", "yes")``, both checked."""
    group, sep, state = str(entry).partition("=")
    group, state = group.strip(), state.strip()
    _check_group(group, "constant", layout)
    if not sep:
        return group, None
    states = get_layout(layout).group_states[group]
    if state not in states:
        raise MosaicError(f"{state!r} is not a state of group {group!r} in constant: use one of {', '.join(states)}")
    return group, state


TRAP_SPLITS = ("train", "test")  # the structs of a Lin et al. attribute file
COLOUR_TRAPS = ("multi_marked", "none_marked")  # traps of one-hot colour groups only
TRAP_KNOBS = ("unannotated", *COLOUR_TRAPS)


def parse_trap(entry: str, knob: str, layout: str = DEFAULT_LAYOUT) -> tuple[str, str, int]:
    """``"top:train=2"`` -> ``("top", "train", 2)``, checked against the layout's schema."""
    target, sep, count = str(entry).partition("=")
    group, colon, split = target.strip().partition(":")
    group, split = group.strip(), split.strip()
    if not sep or not colon or split not in TRAP_SPLITS or not count.strip().isdigit():
        raise MosaicError(f"{knob} entry {entry!r} must read GROUP:SPLIT=COUNT with SPLIT train or test, e.g. top:train=2")
    _check_group(group, knob, layout)
    if knob in COLOUR_TRAPS and group not in get_layout(layout).colour_fields:
        raise MosaicError(
            f"{knob} names {group!r}, which has one raw field: use a colour group ({', '.join(get_layout(layout).colour_fields)})"
        )
    return group, split, int(count)


def _check_layout_extras(config: "WorldConfig", layout) -> None:
    """Knobs a layout cannot express, and the trap entries."""
    for name, share in (("n_distractors", layout.distractor_image_share), ("n_junk", layout.junk_share)):
        if share == 0 and getattr(config, name):
            raise MosaicError(
                f"{name}={getattr(config, name)} but the {layout.folders.title} layout has no pid 0000 / -1 images: "
                "leave it unset (gallery-only identities are n_distractor_ids)"
            )
    for knob in TRAP_KNOBS:
        seen = set()
        for entry in getattr(config, knob):
            group, split, _ = parse_trap(entry, knob, config.layout)
            if (group, split) in seen:
                raise MosaicError(f"{knob} lists {group}:{split} twice: keep one entry per group and split")
            seen.add((group, split))
