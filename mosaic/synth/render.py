"""Drawing pedestrians, in batches, with numpy.

A person is a stack of soft-edged primitives (ellipses, boxes, trapezoids, capsules) composited
over a camera's background; every primitive is evaluated for a whole batch of images at once,
with per-image parameters broadcast over the pixel grid. Attributes map to geometry and colour
(sleeve length = where the arm turns from cloth to skin, a dress = a trapezoid instead of two
trouser legs, ...); the mapping from attribute states to drawing parameters, and the cameras'
and shots' parameters, are in :mod:`mosaic.synth.scene`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mosaic.synth.config import WorldConfig
from mosaic.synth.scene import Cameras, Shots

__all__ = ["render"]

F = np.float32
_NOISE_STREAM = 0x6E6F  # separates the noise generators from every other stream of the seed


# ------------------------------------------------------------------------- primitives
@dataclass
class _Layer:
    """Coverage of one primitive over a band of rows shared by the batch (the rows it can touch)."""

    alpha: np.ndarray  # (n, rows, W)
    rows: slice
    y: np.ndarray  # (1, rows, 1) pixel-centre ordinates of the band

    def __mul__(self, mask) -> "_Layer":
        return _Layer(self.alpha * mask, self.rows, self.y)


class _Canvas:
    """A batch of float32 RGB images and soft-edged primitives drawn on it.

    Primitives are evaluated only on the rows their batch can reach (a head never needs the
    feet's rows), which is most of the drawing time saved.
    """

    def __init__(self, n: int, height: int, width: int):
        self.n = n
        self.rgb = np.empty((n, height, width, 3), F)
        self.y = (np.arange(height, dtype=F) + 0.5)[None, :, None]
        self.x = (np.arange(width, dtype=F) + 0.5)[None, None, :]

    def paint(self, layer: _Layer, colour: np.ndarray, where: np.ndarray | None = None) -> None:
        """Composite ``colour`` ((n,3)) with the layer's coverage.

        ``where`` (n,) bool limits the layer to some images; only those are touched, which is
        what makes optional layers (hats, bags, ...) cheap.
        """
        colour = colour[:, None, None, :]
        rows = np.arange(self.n) if where is None else np.flatnonzero(where)
        if rows.size == 0 or layer.rows.start >= layer.rows.stop:
            return
        if rows.size == self.n:
            target = self.rgb[:, layer.rows]
            delta = np.subtract(colour, target, dtype=F)
            delta *= layer.alpha[..., None]
            target += delta
            return
        sub = self.rgb[rows, layer.rows]
        delta = np.subtract(colour[rows], sub, dtype=F)
        delta *= layer.alpha[rows][..., None]
        sub += delta
        self.rgb[rows, layer.rows] = sub

    def _band(self, low, high) -> tuple[slice, np.ndarray]:
        height = self.y.shape[1]
        start = int(np.clip(np.floor(np.min(low)) - 1, 0, height))
        stop = int(np.clip(np.ceil(np.max(high)) + 1, start, height))
        rows = slice(start, stop)
        return rows, self.y[:, rows]

    def _per_image(self, *values) -> tuple[np.ndarray, ...]:
        # scalars or (n,) arrays -> (n, 1, 1), ready to broadcast over the pixel grid
        return tuple(np.broadcast_to(np.asarray(v, F), (self.n,))[:, None, None] for v in values)

    @staticmethod
    def _edge(signed: np.ndarray) -> np.ndarray:
        # signed distance (pixels, positive inside) -> coverage with a one-pixel soft edge
        signed += 0.5
        np.maximum(signed, 0.0, out=signed)
        return np.minimum(signed, 1.0, out=signed)

    def box(self, x0, x1, y0, y1) -> np.ndarray:
        x0, x1, y0, y1 = self._per_image(x0, x1, y0, y1)
        rows, y = self._band(y0, y1)
        inside_x = np.minimum(self.x - x0, x1 - self.x)
        inside_y = np.minimum(y - y0, y1 - y)
        return _Layer(self._edge(np.minimum(inside_x, inside_y)), rows, y)

    def ellipse(self, cx, cy, rx, ry) -> np.ndarray:
        cx, cy, rx, ry = self._per_image(cx, cy, rx, ry)
        rows, y = self._band(cy - ry, cy + ry)
        d = np.sqrt(((self.x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
        return _Layer(self._edge((1 - d) * np.minimum(rx, ry)), rows, y)

    def trapezoid(self, cx, y0, y1, half_top, half_bottom) -> np.ndarray:
        cx, y0, y1, ht, hb = self._per_image(cx, y0, y1, half_top, half_bottom)
        rows, y = self._band(y0, y1)
        frac = np.clip((y - y0) / np.maximum(y1 - y0, 1e-3), 0, 1)
        half = ht + frac * (hb - ht)
        return _Layer(self._edge(np.minimum(half - np.abs(self.x - cx), np.minimum(y - y0, y1 - y))), rows, y)

    def capsule(self, x0, y0, x1, y1, r) -> tuple[_Layer, np.ndarray]:
        """Coverage of a rounded segment and, per pixel, how far along it (0 start .. 1 end)."""
        x0, y0, x1, y1, r = self._per_image(x0, y0, x1, y1, r)
        rows, y = self._band(np.minimum(y0, y1) - r, np.maximum(y0, y1) + r)
        vx, vy = x1 - x0, y1 - y0
        t = np.clip(((self.x - x0) * vx + (y - y0) * vy) / np.maximum(vx * vx + vy * vy, 1e-6), 0, 1)
        dist = np.sqrt((self.x - x0 - t * vx) ** 2 + (y - y0 - t * vy) ** 2)
        return _Layer(self._edge(r - dist), rows, y), t


# ---------------------------------------------------------------------------- drawing
def render(
    fig: dict[str, np.ndarray],
    shots: Shots,
    cameras: Cameras,
    config: WorldConfig,
    *,
    offset: np.ndarray | None = None,
) -> np.ndarray:
    """Images (n, H, W, 3) uint8 of people ``fig`` (one row per image) under ``shots``.

    ``offset`` (n, 3): extra x shift (pixels), y shift and scale for badly framed boxes
    (distractors and junk); None for well-framed pedestrians.
    """
    n, H, W = shots.camera.shape[0], config.height, config.width
    cam = shots.camera - 1
    cv = _Canvas(n, H, W)
    _background(cv, cameras, cam, H, W)

    extra = offset if offset is not None else np.tile(np.array([0, 0, 1], F), (n, 1))
    u = H * 0.86 * fig["height"] * cameras.scale[cam] * shots.scale * extra[:, 2]  # person height, px
    feet = H * 0.965 + shots.dy + cameras.shift[cam, 1] + extra[:, 1] - (H * 0.86 - u) * 0.15
    cx = W * 0.5 + shots.dx + cameras.shift[cam, 0] + extra[:, 0]
    top = feet - u
    back = shots.back_view
    front = ~back
    side = fig["side"]
    build = fig["build"]
    female = fig["female"]

    # body landmarks
    head_ry = 0.068 * u * fig["head"]
    head_rx = 0.052 * u * fig["head"]
    head_cy = top + head_ry + 0.005 * u + 0.02 * u * fig["stoop"]
    head_cx = cx + 0.02 * u * fig["stoop"] * side
    shoulder_y = head_cy + head_ry + 0.035 * u
    hip_y = top + 0.53 * u
    half_shoulder = (0.128 - 0.025 * female) * u * build
    half_hip = (0.095 + 0.02 * female) * u * build
    arm_r = 0.032 * u * build
    leg_r = 0.042 * u * build
    skin, up_rgb, down_rgb, hair = fig["skin"], fig["up_rgb"], fig["down_rgb"], fig["hair_rgb"]

    # long hair falls behind the shoulders (seen from the front: around the face)
    long_hair = fig["long_hair"] > 0
    hair_box = cv.box(head_cx - head_rx * 1.25, head_cx + head_rx * 1.25, head_cy - head_ry * 0.6, shoulder_y + 0.09 * u)
    cv.paint(hair_box, hair, long_hair & front)

    # a backpack seen from the front peeks out on both sides of the torso
    has_pack = fig["backpack"] > 0
    pack = cv.box(cx - half_shoulder - 0.03 * u, cx + half_shoulder + 0.03 * u, shoulder_y + 0.03 * u, shoulder_y + 0.25 * u)
    cv.paint(pack, fig["accessory_rgb"] * 0.8, has_pack & front)

    # legs: trousers down to the ankle (long) or above the knee (short); skin below
    lower_cut = np.where(fig["short_lower"] > 0, 0.42, 1.01).astype(F)
    dress = fig["dress"] > 0
    knee_cut = np.where(dress, 0.0, lower_cut)[:, None, None]
    has_boots = fig["boots"] > 0
    for sign in (-1.0, 1.0):
        hip_x = cx + sign * 0.048 * u * build
        foot_x = hip_x + sign * shots.stride * u
        alpha, t = cv.capsule(hip_x, hip_y, foot_x, feet - 0.035 * u, leg_r)
        cloth = t < knee_cut
        cv.paint(alpha * cloth, down_rgb)
        cv.paint(alpha * ~cloth, skin)
        cv.paint(cv.ellipse(foot_x + sign * 0.01 * u, feet - 0.02 * u, leg_r * 1.25, 0.024 * u), fig["shoe_rgb"])
        if has_boots.any():  # a boot shaft from mid-calf, over trousers, skin or shoe
            cv.paint(alpha * (t > 0.62), fig["boot_rgb"], has_boots)
            cv.paint(cv.ellipse(foot_x + sign * 0.012 * u, feet - 0.022 * u, leg_r * 1.35, 0.028 * u), fig["boot_rgb"], has_boots)
    cv.paint(cv.box(cx - half_hip, cx + half_hip, hip_y - 0.03 * u, hip_y + 0.05 * u), down_rgb, ~dress)

    # a dress: a skirt flaring from the hips, to the knee (short) or the calf (long)
    skirt_end = hip_y + np.where(fig["short_lower"] > 0, 0.17, 0.36).astype(F) * u
    cv.paint(cv.trapezoid(cx, hip_y - 0.04 * u, skirt_end, half_hip, half_hip * 1.55), down_rgb, dress)

    # torso with the shirt's pattern
    torso = cv.trapezoid(cx, shoulder_y, hip_y, half_shoulder, half_hip)
    long_top = fig["long_top"] > 0
    if long_top.any():  # a coat or long top covering the hips to mid-thigh, flaring slightly
        cv.paint(cv.trapezoid(cx, hip_y - 0.03 * u, hip_y + 0.17 * u, half_hip * 1.05, half_hip * 1.3), up_rgb, long_top)
    cv.paint(torso, up_rgb)
    stripes = fig["pattern"] == 1
    if stripes.any():  # darker bands across the shirt
        phase = (torso.y - shoulder_y[:, None, None]) / fig["stripe_period"][:, None, None]
        cv.paint(torso * (np.mod(phase, 1.0) < 0.5), up_rgb * 0.72, stripes)
    logo = (fig["pattern"] == 2) & front
    cv.paint(cv.box(cx - 0.04 * u, cx + 0.04 * u, shoulder_y + 0.07 * u, shoulder_y + 0.13 * u), fig["logo_rgb"], logo)

    # arms: sleeve cloth from the shoulder, skin below the sleeve, a hand at the end
    sleeve = np.where(fig["short_sleeve"] > 0, 0.38, 0.93).astype(F)[:, None, None]
    for sign in (-1.0, 1.0):
        x0 = cx + sign * (half_shoulder - arm_r * 0.6)
        x1 = x0 + sign * 0.03 * u + sign * shots.swing * u
        alpha, t = cv.capsule(x0, shoulder_y + arm_r, x1, shoulder_y + 0.33 * u, arm_r)
        cloth = t < sleeve
        cv.paint(alpha * cloth, up_rgb)
        cv.paint(alpha * ~cloth, skin)

    # shoulder bag: a strap across the chest and a bag at the hip
    has_bag = fig["bag"] > 0
    sx = cx - side * half_shoulder * 0.7
    alpha, _ = cv.capsule(sx, shoulder_y, cx + side * half_hip, hip_y - 0.02 * u, 0.012 * u)
    cv.paint(alpha, fig["accessory_rgb"] * 0.6, has_bag)
    bag_x = cx + side * (half_hip + 0.04 * u)
    cv.paint(cv.box(bag_x - 0.06 * u, bag_x + 0.06 * u, hip_y - 0.05 * u, hip_y + 0.07 * u), fig["accessory_rgb"], has_bag)

    # handbag hanging from the other hand
    has_handbag = fig["handbag"] > 0
    hand_x = cx - side * (half_shoulder + 0.03 * u)
    hand_y = shoulder_y + 0.33 * u
    cv.paint(cv.box(hand_x - 0.045 * u, hand_x + 0.045 * u, hand_y + 0.01 * u, hand_y + 0.075 * u), fig["accessory_rgb"] * 1.15, has_handbag)

    # backpack seen from behind covers the upper back; from the front only the straps show
    cv.paint(cv.box(cx - half_shoulder * 0.85, cx + half_shoulder * 0.85, shoulder_y + 0.02 * u, shoulder_y + 0.27 * u),
             fig["accessory_rgb"], has_pack & back)  # fmt: skip
    for sign in (-1.0, 1.0):
        strap_x = cx + sign * half_shoulder * 0.55
        cv.paint(cv.box(strap_x - 0.014 * u, strap_x + 0.014 * u, shoulder_y, shoulder_y + 0.2 * u),
                 fig["accessory_rgb"] * 0.7, has_pack & front)  # fmt: skip

    # neck and head; from behind the head shows hair
    cv.paint(cv.box(head_cx - head_rx * 0.45, head_cx + head_rx * 0.45, head_cy, shoulder_y + 0.01 * u), skin)
    cv.paint(cv.ellipse(head_cx, head_cy, head_rx, head_ry), np.where(back[:, None], hair, skin))
    cap = cv.ellipse(head_cx, head_cy - head_ry * 0.3, head_rx * 1.1, head_ry * 0.8)
    cv.paint(cap * (cap.y < (head_cy - head_ry * 0.15)[:, None, None]), hair)
    cv.paint(hair_box, hair, long_hair & back)

    # hat: crown and brim
    has_hat = fig["hat"] > 0
    crown = cv.box(head_cx - head_rx * 1.05, head_cx + head_rx * 1.05, head_cy - head_ry * 1.25, head_cy - head_ry * 0.35)
    brim = cv.box(head_cx - head_rx * 1.5, head_cx + head_rx * 1.5, head_cy - head_ry * 0.5, head_cy - head_ry * 0.3)
    cv.paint(crown, fig["hat_rgb"], has_hat)
    cv.paint(brim, fig["hat_rgb"], has_hat)

    _occlude(cv, shots, H, W)
    return _develop(cv.rgb, shots, cameras, cam, sigma=1.0 + 2.5 * float(config.nuisance), seed=config.seed)


def _background(cv: _Canvas, cameras: Cameras, cam: np.ndarray, H: int, W: int) -> None:
    horizon = (cameras.horizon[cam] * H)[:, None, None]
    ground = cv.y > horizon
    amp, period, angle = (cameras.texture[cam, i][:, None, None] for i in range(3))
    wave = np.sin(2 * np.pi * (cv.x * np.cos(angle) + cv.y * np.sin(angle)) / period)
    shade = 1 + (amp / 255.0) * wave * np.where(ground, 0.5, 1.0)
    base = np.where(ground[..., None], cameras.ground[cam][:, None, None, :], cameras.wall[cam][:, None, None, :])
    cv.rgb[...] = base * shade[..., None]


def _occlude(cv: _Canvas, shots: Shots, H: int, W: int) -> None:
    size = shots.occluder_size
    bottom = cv.box(0, W, H * (1 - size), H)
    left = cv.box(0, W * size * 1.6, H * 0.3, H)
    right = cv.box(W * (1 - size * 1.6), W, H * 0.3, H)
    for code, alpha in ((1, bottom), (2, left), (3, right)):
        cv.paint(alpha, shots.occluder_rgb, shots.occluder == code)


def _develop(rgb: np.ndarray, shots: Shots, cameras: Cameras, cam: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Camera response: blur, light (gain, colour cast, exposure), sensor noise of ``sigma``, 8 bits."""
    for c in np.unique(cam):
        blur = float(cameras.blur[c])
        if blur > 0.05:
            rows = np.flatnonzero(cam == c)
            rgb[rows] = ndimage.gaussian_filter(rgb[rows], sigma=(0, blur, blur, 0), mode="nearest", truncate=3.0)
    light = cameras.gain[cam][:, None] * cameras.cast[cam] * shots.brightness[:, None]
    rgb *= light[:, None, None, :]
    for i, key in enumerate(shots.noise_key):
        # one generator per image: an image's bytes do not depend on which batch it was drawn in
        rgb[i] += np.random.default_rng((seed, _NOISE_STREAM, int(key))).standard_normal(rgb.shape[1:], dtype=F) * sigma
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
