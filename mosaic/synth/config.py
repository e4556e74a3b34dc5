"""The knobs of a synthetic world, as one validated dataclass (recorded whole in ``world.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from mosaic.errors import MosaicError

# Attribute groups of the market1501 schema and their states, in schema order. The synthetic
# world writes raw Lin et al. fields; ``tests/test_synth.py`` checks this table against the
# shipped schema so the two cannot drift apart.
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

# Market-1501 names cameras with one digit (c1..c6), so a world has at most nine.
MAX_CAMERAS = 9


@dataclass(frozen=True)
class WorldConfig:
    """Everything that decides a synthetic world; same config and seed give the same bytes.

    Identities are split half/half into train and test ids, as in Market-1501 (751/750).

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
    """

    n_ids: int = 300
    images_per_id: int = 16
    n_cameras: int = 6
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

    def __post_init__(self) -> None:
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

        def number(name: str, low: float, high: float) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise MosaicError(f"{name} must be a number in [{low}, {high}], got {value!r}")

        integer("n_ids", 4, 9999, ": a world needs at least 2 train and 2 test identities, pids have 4 digits")
        integer("images_per_id", 4, hint=": each test identity needs 2 cameras with 2 images each")
        integer("n_cameras", 2, MAX_CAMERAS, ": Market-1501 file names hold one camera digit")
        integer("seed", 0)
        integer("height", 32, 1024)
        integer("width", 16, 1024)
        integer("jpeg_quality", 1, 95)
        for name in ("n_distractors", "n_junk"):
            if getattr(self, name) is not None:
                integer(name, 0, 100_000)
        number("identity_detail", 0.0, 2.0)
        number("camera_variation", 0.0, 2.0)
        number("nuisance", 0.0, 2.0)
        number("occlusion", 0.0, 1.0)
        number("missing", 0.0, 1.0)
        for group in self.invisible:
            _check_group(group, "invisible")
        if len(set(self.invisible)) != len(self.invisible):
            raise MosaicError(f"invisible lists a group twice: {list(self.invisible)}")
        seen = set()
        for entry in self.constant:
            group, _ = parse_constant(entry)
            if group in seen:
                raise MosaicError(f"constant lists group {group!r} twice: keep one entry per group")
            seen.add(group)
        for group in self.uniform:
            _check_group(group, "uniform")
            if group in seen:
                raise MosaicError(f"group {group!r} cannot be both constant and uniform: keep it in one of the two")
        if len(set(self.uniform)) != len(self.uniform):
            raise MosaicError(f"uniform lists a group twice: {list(self.uniform)}")

    # ------------------------------------------------------------------------- helpers
    @property
    def constant_states(self) -> dict[str, str | None]:
        """Group -> requested state name (None: the most frequent state in Market-1501)."""
        return dict(parse_constant(entry) for entry in self.constant)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["invisible"] = list(self.invisible)
        data["constant"] = list(self.constant)
        data["uniform"] = list(self.uniform)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "WorldConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MosaicError(f"unknown world setting(s) {unknown}: expected some of {sorted(known)}")
        return cls(**dict(data))


def _check_group(group: str, knob: str) -> None:
    if group not in GROUP_STATES:
        raise MosaicError(f"unknown attribute group {group!r} in {knob}: use one of {', '.join(GROUPS)}")


def parse_constant(entry: str) -> tuple[str, str | None]:
    """``"hat"`` -> ``("hat", None)``; ``"hat=yes"`` -> ``("hat", "yes")``, both checked."""
    group, sep, state = str(entry).partition("=")
    group, state = group.strip(), state.strip()
    _check_group(group, "constant")
    if not sep:
        return group, None
    if state not in GROUP_STATES[group]:
        raise MosaicError(
            f"{state!r} is not a state of group {group!r} in constant: use one of {', '.join(GROUP_STATES[group])}"
        )
    return group, state
