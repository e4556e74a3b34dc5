"""Attribute frequencies of Market-1501 (Lin et al. 2019 annotations), stored as numbers.

Counts of identities over both splits of ``market_attribute.mat`` (1,501 ids), taken once from
the real file; the file itself is never shipped. Gender is drawn first, every other field
conditional on it (long hair, dresses and handbags depend strongly on gender in the real data),
and the lower-body length conditional on gender and garment. Colour counts list the raw fields
in the order of ``UP_COLOUR_FIELDS`` / ``DOWN_COLOUR_FIELDS`` then the ids with no colour marked.
Market marks at most one colour per body part, and so does the synthetic world.
"""

from __future__ import annotations

# Raw annotation fields and the real file's field order in each split (the order differs between
# splits in the real file; readers must go by name, and the synthetic file keeps that trap).
TRAIN_FIELD_ORDER = (
    "age", "backpack", "bag", "handbag", "downblack", "downblue", "downbrown", "downgray", "downgreen",
    "downpink", "downpurple", "downwhite", "downyellow", "upblack", "upblue", "upgreen", "upgray",
    "uppurple", "upred", "upwhite", "upyellow", "clothes", "down", "up", "hair", "hat", "gender",
    "image_index",
)  # fmt: skip
TEST_FIELD_ORDER = (
    "age", "backpack", "bag", "handbag", "clothes", "down", "up", "hair", "hat", "gender", "upblack",
    "upwhite", "upred", "uppurple", "upyellow", "upgray", "upblue", "upgreen", "downblack", "downwhite",
    "downpink", "downpurple", "downyellow", "downgray", "downblue", "downgreen", "downbrown", "image_index",
)  # fmt: skip

UP_COLOUR_FIELDS = ("upblack", "upwhite", "upred", "uppurple", "upyellow", "upgray", "upblue", "upgreen")
DOWN_COLOUR_FIELDS = (
    "downblack", "downwhite", "downpink", "downpurple", "downyellow", "downgray", "downblue", "downgreen",
    "downbrown",
)  # fmt: skip

GENDER_COUNTS = {"male": 845, "female": 656}

# Per gender: counts of raw codes 1, 2, ... of each binary/ordinal field.
CONDITIONAL_COUNTS = {
    "male": {
        "hair": [840, 5],
        "age": [10, 660, 166, 9],
        "up": [23, 822],
        "clothes": [0, 845],
        "hat": [830, 15],
        "backpack": [594, 251],
        "bag": [714, 131],
        "handbag": [772, 73],
        "down|clothes=1": [0, 0],
        "down|clothes=2": [353, 492],
        "upcolour": [132, 214, 73, 31, 59, 131, 74, 56, 75],
        "downcolour": [365, 39, 6, 0, 0, 188, 135, 12, 80, 20],
    },
    "female": {
        "hair": [141, 515],
        "age": [6, 549, 97, 4],
        "up": [61, 595],
        "clothes": [195, 461],
        "hat": [628, 28],
        "backpack": [521, 135],
        "bag": [417, 239],
        "handbag": [567, 89],
        "down|clothes=1": [25, 170],
        "down|clothes=2": [178, 283],
        "upcolour": [90, 222, 81, 23, 38, 61, 24, 45, 72],
        "downcolour": [215, 69, 43, 2, 11, 61, 142, 22, 37, 54],
    },
}
