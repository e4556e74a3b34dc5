"""Colours the renderer gives to named attribute states: garment colours by raw field name, shoes, boots."""

from __future__ import annotations

import numpy as np

F = np.float32
# How each named colour of a raw colour field is drawn, per body part (lower-body blue is denim).
UP_COLOUR_RGB = {
    "black": (28, 28, 30), "white": (228, 228, 222), "red": (190, 35, 40), "purple": (115, 50, 145),
    "yellow": (230, 205, 45), "gray": (128, 128, 128), "blue": (40, 75, 175), "green": (45, 130, 60),
    "brown": (115, 75, 45),
}  # fmt: skip
DOWN_COLOUR_RGB = {
    **UP_COLOUR_RGB, "pink": (228, 140, 172), "blue": (50, 80, 155),
}  # fmt: skip
SHOE_DARK = np.array([[30, 30, 32], [110, 75, 45], [45, 65, 140], [60, 60, 64]], dtype=F)  # black brown navy charcoal
SHOE_LIGHT = np.array([[225, 225, 220], [200, 190, 165], [170, 170, 172], [215, 200, 175]], dtype=F)  # white beige grey cream
BOOT_RGB = np.array([[30, 26, 24], [95, 62, 38], [140, 110, 80]], dtype=F)  # black, brown, tan leather


def colour_table(fields: tuple[str, ...], prefix: str, names: dict) -> np.ndarray:
    """(n_fields, 3) RGB of raw colour fields such as ``upblack``, in their order."""
    return np.array([names[f.removeprefix(prefix)] for f in fields], dtype=F)
