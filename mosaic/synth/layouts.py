"""The dataset layouts a synthetic world can be written in: one :class:`WorldLayout` per dataset.

A layout is data: the folder layout the real readers expect (:data:`mosaic.data.folders.FOLDER_LAYOUTS`),
how a file name is spelled, how many cameras, the attribute schema and file it annotates with,
the raw colour fields and their order in each split of the file, the attribute priors, the
share of junk / distractor images and of annotated gallery-only identities, and the annotation
traps of the real file that a world reproduces by default. Adding a dataset is adding an entry
to :data:`WORLD_LAYOUTS`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from mosaic.core.errors import MosaicError
from mosaic.core.shipped import shipped_path

if TYPE_CHECKING:
    from mosaic.data.folders import FolderLayout

DEFAULT_LAYOUT = "market1501"


def market_file_name(pid: int, camera: int, sequence: int, frame: int, box: int) -> str:
    """``0002_c1s1_000451_03.jpg``; junk boxes are written with pid ``-1``."""
    label = "-1" if pid < 0 else f"{pid:04d}"
    return f"{label}_c{camera}s{sequence}_{frame:06d}_{box:02d}.jpg"


def duke_file_name(pid: int, camera: int, sequence: int, frame: int, box: int) -> str:
    """``0001_c2_f0046182.jpg``: DukeMTMC-reID names only pid, camera and frame."""
    return f"{pid:04d}_c{camera}_f{frame:07d}.jpg"


@dataclass(frozen=True)
class WorldLayout:
    """How a synthetic world is written so that one dataset's real readers take it for the real thing."""

    name: str  # also the FolderLayout and the dataset format it is read back as
    file_name: Callable[[int, int, int, int, int], str]  # (pid, camera, sequence, frame, box) -> name
    max_cameras: int  # how many cameras the file names can hold
    default_cameras: int
    train_share: float  # of the identities with queries; the rest are test identities
    distractor_image_share: float  # pid-0000 gallery images per identity gallery image
    junk_share: float  # pid -1 gallery images per identity gallery image
    distractor_id_share: float  # annotated gallery-only identities per test identity with queries
    default_traps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # knob -> entries
    drawn_defaults: Mapping[str, int] = field(default_factory=dict)  # drawable group not in the schema -> state drawn
    priors_file: str | None = None  # YAML shipped in mosaic.synth; None: the Market-1501 tables of priors.py
    struct_order: tuple[str, str] = ("test", "train")  # the real file's order of its two structs
    demo_config: str = "synthetic_micro"  # the shipped CPU training config (mosaic.configs) that reads this layout

    @property
    def folders(self) -> "FolderLayout":
        from mosaic.data.folders import FOLDER_LAYOUTS  # imported when used: the CLI starts without pandas

        return FOLDER_LAYOUTS[self.name]

    @property
    def mapping(self):
        from mosaic.data.mapping import load_mapping

        return load_mapping(self.folders.schema)

    @property
    def schema(self):
        return self.mapping.schema

    @property
    def schema_name(self) -> str:
        return self.folders.schema

    @property
    def attribute_file(self) -> str:
        return self.mapping.file.filename

    @property
    def attribute_key(self) -> str:
        return self.mapping.file.key

    @property
    def group_states(self) -> dict[str, tuple[str, ...]]:
        return {g.name: tuple(g.states) for g in self.schema.groups}

    @property
    def priors(self) -> dict[str, Any]:
        return _priors(self.name)

    @property
    def colour_fields(self) -> dict[str, tuple[str, ...]]:
        """Colour group -> its raw one-hot fields, in the order people's colour indices use."""
        if self.priors_file is None:
            from mosaic.synth.priors import DOWN_COLOUR_FIELDS, UP_COLOUR_FIELDS

            return {"upcolour": UP_COLOUR_FIELDS, "downcolour": DOWN_COLOUR_FIELDS}
        return {g: tuple(f) for g, f in self.priors["fields"].items()}

    @property
    def field_order(self) -> dict[str, tuple[str, ...]]:
        """Struct (``train`` / ``test``) -> the real file's field order in it."""
        if self.priors_file is None:
            from mosaic.synth.priors import TEST_FIELD_ORDER, TRAIN_FIELD_ORDER

            return {"train": TRAIN_FIELD_ORDER, "test": TEST_FIELD_ORDER}
        return {s: tuple(f) for s, f in self.priors["field_order"].items()}


WORLD_LAYOUTS: dict[str, WorldLayout] = {
    layout.name: layout
    for layout in (
        WorldLayout(
            name="market1501",
            file_name=market_file_name,
            max_cameras=9,  # one camera digit
            default_cameras=6,
            train_share=0.5,  # 751 / 750
            distractor_image_share=0.15,
            junk_share=0.05,
            distractor_id_share=0.0,  # Market's gallery strangers are pid 0000 images, not identities
            drawn_defaults={"top": 0, "boots": 0},  # short top, no boots; shoe colour is identity detail
        ),
        WorldLayout(
            name="dukemtmc",
            file_name=duke_file_name,
            max_cameras=8,  # DukeMTMC's eight cameras
            default_cameras=8,
            train_share=0.5,  # 702 train ids, 702 test ids with queries
            distractor_image_share=0.0,  # no pid 0000 images and no junk in DukeMTMC-reID
            junk_share=0.0,
            distractor_id_share=408 / 702,  # 408 annotated gallery-only ids beside the 702 with queries
            # train `top` is 0 for ids 0370 and 0679; 23 of 1,110 test ids have several lower
            # colours; 1 train / 14 test ids have no upper colour and 11 test ids no lower one
            default_traps={
                "unannotated": ("top:train=2",),
                "multi_marked": ("downcolour:test=3",),
                "none_marked": ("upcolour:train=1", "upcolour:test=2", "downcolour:test=2"),
            },
            # no hair, age, sleeve, lower length or dress in the schema: a winter world of
            # short hair, adults, long sleeves and long trousers
            drawn_defaults={"hair": 0, "age": 2, "up": 0, "down": 0, "clothes": 1},
            priors_file="dukemtmc_priors.yaml",
            struct_order=("train", "test"),
            demo_config="synthetic_micro_duke",
        ),
    )
}


def get_layout(name: str) -> WorldLayout:
    """The layout registered under ``name``; a one-line error naming the known ones otherwise."""
    if name not in WORLD_LAYOUTS:
        raise MosaicError(f"unknown world layout {name!r}: use one of {', '.join(WORLD_LAYOUTS)}")
    return WORLD_LAYOUTS[name]


@functools.lru_cache(maxsize=None)
def _priors(name: str) -> dict[str, Any]:
    import yaml

    layout = WORLD_LAYOUTS[name]
    if layout.priors_file is None:
        raise MosaicError(f"layout {name!r} keeps its priors in mosaic/synth/priors.py, not in a YAML file")
    # package data, read like every other shipped file: a wheel finds it exactly as a clone does
    path = shipped_path(__package__, layout.priors_file)
    if path is None:
        raise MosaicError(f"layout {name!r} names priors {layout.priors_file!r}, which mosaic.synth does not ship")
    return yaml.safe_load(path.read_text(encoding="utf-8"))
