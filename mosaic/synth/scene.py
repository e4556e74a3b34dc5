"""What a synthetic image shows, before any pixel is drawn: each identity's figure (attribute states
mapped to geometry and colour, where an *invisible* group is drawn in one neutral way), each
camera's look (light, blur, scale, background) and each shot's variation (position, pose, occlusion).

:mod:`mosaic.synth.render` draws these parameters, a batch of images at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mosaic.synth.config import WorldConfig
from mosaic.synth.layouts import get_layout
from mosaic.synth.palette import BOOT_RGB, DOWN_COLOUR_RGB, SHOE_DARK, SHOE_LIGHT, UP_COLOUR_RGB, colour_table
from mosaic.synth.people import DETAIL_PALETTE, People

__all__ = ["Cameras", "NEUTRAL_STATE", "Shots", "figure_parameters"]

F = np.float32
OTHER_RGB = np.array([[230, 120, 35], [196, 176, 130], [40, 140, 140], [120, 30, 45]], dtype=F)  # orange beige teal maroon
NEUTRAL_RGB = np.array([118, 112, 106], dtype=F)  # how an invisible colour group is drawn
SKIN_LIGHT, SKIN_DARK = np.array([236, 200, 172], F), np.array([118, 80, 56], F)
HAIR_BLACK, HAIR_BROWN, HAIR_GREY = np.array([24, 20, 18], F), np.array([105, 68, 40], F), np.array([172, 170, 166], F)

# What an invisible group is drawn as, whatever its label (state index in schema order; gender
# is drawn half-way between the two builds).
NEUTRAL_STATE = {
    "hair": 0, "age": 2, "up": 1, "down": 0, "clothes": 1, "hat": 0, "backpack": 0, "bag": 0, "handbag": 0,
    "top": 0, "boots": 0, "shoes": 0,
}  # fmt: skip


def figure_parameters(people: People, config: WorldConfig) -> dict[str, np.ndarray]:
    """Drawing parameters of each person: the only place where attribute states meet pixels.

    A drawable group that the layout's schema lacks (DukeMTMC-reID has no hair or age; Market-1501
    no boots) is drawn in the layout's ``drawn_defaults`` state.
    """
    invisible = set(config.invisible)
    layout = get_layout(config.layout)
    colour_fields = layout.colour_fields
    up_table = colour_table(colour_fields["upcolour"], "up", UP_COLOUR_RGB)
    down_table = colour_table(colour_fields["downcolour"], "down", DOWN_COLOUR_RGB)
    NO_UP_COLOUR, NO_DOWN_COLOUR = len(up_table), len(down_table)

    def state(group: str) -> np.ndarray:
        if group in invisible:
            return np.full(len(people), NEUTRAL_STATE[group], dtype=np.int16)
        if group not in people.states:
            return np.full(len(people), layout.drawn_defaults[group], dtype=np.int16)
        return people.states[group]

    d = people.detail
    n = len(people)
    female = np.full(n, 0.5, F) if "gender" in invisible else (people.states["gender"] == 1).astype(F)
    age = state("age")
    tint = d["tint"]
    other = OTHER_RGB[d["other_colour"]]

    if "upcolour" in invisible:
        up_rgb = np.broadcast_to(NEUTRAL_RGB, (n, 3))
    else:
        up_rgb = np.where((people.up_field == NO_UP_COLOUR)[:, None], other, up_table[np.minimum(people.up_field, NO_UP_COLOUR - 1)])
    if "downcolour" in invisible:
        down_rgb = np.broadcast_to(NEUTRAL_RGB, (n, 3))
    else:
        # an "other" lower garment takes a different colour than an "other" upper one would
        other_down = OTHER_RGB[(d["other_colour"] + 2) % len(OTHER_RGB)]
        down_rgb = np.where(
            (people.down_field == NO_DOWN_COLOUR)[:, None], other_down, down_table[np.minimum(people.down_field, NO_DOWN_COLOUR - 1)]
        )
    hair_rgb = HAIR_BLACK + d["hair_tone"][:, None] * (HAIR_BROWN - HAIR_BLACK)
    hair_rgb = np.where((age == 3)[:, None], HAIR_GREY, hair_rgb)  # the old have grey hair
    age_height = np.array([0.74, 0.95, 1.0, 0.97], F)[age]
    age_head = np.array([1.25, 1.05, 1.0, 1.0], F)[age]
    if "shoes" in people.states and "shoes" not in invisible:  # shoe colour is an attribute: dark or light
        pick = d["shoe"] % len(SHOE_DARK)
        shoe_rgb = np.where((people.states["shoes"] == 1)[:, None], SHOE_LIGHT[pick], SHOE_DARK[pick])
    else:  # identity detail only
        shoe_rgb = DETAIL_PALETTE[d["shoe"]]
    return {
        "female": female,
        "height": (d["height"] * age_height * (1 - 0.05 * female)).astype(F),
        "head": age_head,
        "stoop": (age == 3).astype(F),
        "build": d["build"].astype(F),
        "skin": SKIN_LIGHT + d["skin"][:, None] * (SKIN_DARK - SKIN_LIGHT),
        "hair_rgb": hair_rgb.astype(F),
        "long_hair": (state("hair") == 1).astype(F),
        "up_rgb": np.clip(up_rgb * d["up_shade"][:, None] * tint, 0, 255).astype(F),
        "down_rgb": np.clip(down_rgb * d["down_shade"][:, None] * tint, 0, 255).astype(F),
        "short_sleeve": (state("up") == 1).astype(F),
        "short_lower": (state("down") == 1).astype(F),
        "dress": (state("clothes") == 0).astype(F),
        "hat": (state("hat") == 1).astype(F),
        "backpack": (state("backpack") == 1).astype(F),
        "bag": (state("bag") == 1).astype(F),
        "handbag": (state("handbag") == 1).astype(F),
        "shoe_rgb": shoe_rgb,
        "long_top": (state("top") == 1).astype(F),
        "boots": (state("boots") == 1).astype(F),
        "boot_rgb": BOOT_RGB[d["hat_colour"] % len(BOOT_RGB)],
        "accessory_rgb": DETAIL_PALETTE[d["accessory"]],
        "hat_rgb": DETAIL_PALETTE[d["hat_colour"]],
        "logo_rgb": DETAIL_PALETTE[d["logo"]],
        "pattern": d["pattern"],
        "stripe_period": d["stripe_period"].astype(F),
        "side": d["side"].astype(F),
    }


@dataclass(frozen=True)
class Cameras:
    """Per-camera viewing conditions (arrays indexed by camera - 1)."""

    gain: np.ndarray
    cast: np.ndarray  # (n, 3) colour cast
    blur: np.ndarray  # Gaussian sigma in pixels
    scale: np.ndarray
    shift: np.ndarray  # (n, 2) x, y offset in pixels
    wall: np.ndarray  # (n, 3)
    ground: np.ndarray  # (n, 3)
    horizon: np.ndarray  # fraction of the height
    texture: np.ndarray  # (n, 3): amplitude, period, angle

    @classmethod
    def sample(cls, config: WorldConfig, rng: np.random.Generator) -> "Cameras":
        n, c = config.n_cameras, float(config.camera_variation)
        u = rng.random((n, 16)).astype(F)
        base_wall = np.array([150, 150, 145], F)
        base_ground = np.array([105, 100, 95], F)
        return cls(
            gain=1 + c * 0.22 * (u[:, 0] - 0.5) * 2,
            cast=1 + c * 0.07 * (u[:, 1:4] - 0.5) * 2,
            blur=c * 0.9 * u[:, 4],
            scale=1 + c * 0.07 * (u[:, 5] - 0.6) * 2,
            shift=c * np.stack([3.0 * (u[:, 6] - 0.5) * 2, 2.0 * (u[:, 7] - 0.5) * 2], axis=1),
            wall=np.clip(base_wall * (1 + c * 0.3 * (u[:, 8:9] - 0.5) * 2) + c * 30 * (u[:, 9:12] - 0.5) * 2, 0, 255),
            ground=np.clip(base_ground * (1 + c * 0.3 * (u[:, 12:13] - 0.5) * 2) + c * 25 * (u[:, 13:16] - 0.5) * 2, 0, 255),
            horizon=0.55 + c * 0.15 * (u[:, 14] - 0.5) * 2,
            texture=np.stack([6 + c * 10 * u[:, 15], 6 + 10 * u[:, 0], np.pi * u[:, 1]], axis=1),
        )


@dataclass(frozen=True)
class Shots:
    """Per-image conditions: camera, placement, pose, view, occlusion (struct of arrays)."""

    camera: np.ndarray  # 1-based camera of each image
    dx: np.ndarray  # pixel offsets and scale factor of the person
    dy: np.ndarray
    scale: np.ndarray
    back_view: np.ndarray  # seen from behind (backpacks show, faces do not)
    swing: np.ndarray  # arm swing and leg stride, fraction of the height
    stride: np.ndarray
    brightness: np.ndarray
    occluder: np.ndarray  # 0 none, 1 bottom, 2 left, 3 right
    occluder_size: np.ndarray
    occluder_rgb: np.ndarray
    noise_key: np.ndarray  # per-image key of the sensor noise (with the world seed)

    @classmethod
    def sample(cls, camera: np.ndarray, config: WorldConfig, rng: np.random.Generator) -> "Shots":
        n, s = camera.shape[0], float(config.nuisance)
        u = rng.random((n, 12)).astype(F)
        occluded = u[:, 8] < config.occlusion
        return cls(
            camera=camera,
            dx=s * 3.0 * (u[:, 0] - 0.5) * 2,
            dy=s * 2.0 * (u[:, 1] - 0.5) * 2,
            scale=1 + s * 0.05 * (u[:, 2] - 0.5) * 2,
            back_view=u[:, 3] < 0.5,
            swing=s * 0.05 * (u[:, 4] - 0.5) * 2,
            stride=s * 0.06 * u[:, 5],
            brightness=1 + s * 0.06 * (u[:, 6] - 0.5) * 2,
            occluder=np.where(occluded, 1 + (u[:, 9] * 3).astype(np.int64), 0),
            occluder_size=0.12 + 0.16 * u[:, 10],
            occluder_rgb=(40 + 120 * rng.random((n, 3))).astype(F),
            noise_key=np.arange(n, dtype=np.int64),
        )

    def take(self, index) -> "Shots":
        return Shots(**{k: v[index] for k, v in self.__dict__.items()})
