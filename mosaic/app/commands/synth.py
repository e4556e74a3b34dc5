"""`mosaic synth`: write a synthetic world in the Market-1501 or DukeMTMC-reID layout."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mosaic.app.commands.options import progress_option
from mosaic.synth.config import WorldConfig
from mosaic.synth.layouts import DEFAULT_LAYOUT, WORLD_LAYOUTS, get_layout

_DEFAULT = WorldConfig.__dataclass_fields__


def _default(name: str):
    return _DEFAULT[name].default


def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create (must not exist or be empty, unless --overwrite)."),
    ids: int = typer.Option(_default("n_ids"), "--ids", help="Identities in total; half train, half test (query + gallery)."),
    images_per_id: int = typer.Option(_default("images_per_id"), "--images-per-id", help="Images of each identity, spread over 2+ cameras."),
    seed: int = typer.Option(_default("seed"), "--seed", help="The one source of randomness: same seed and knobs, same bytes."),
    layout: str = typer.Option(DEFAULT_LAYOUT, "--layout", help=f"Dataset layout to write: {', '.join(WORLD_LAYOUTS)} (file names, cameras, attribute file, schema, priors, traps)."),
    cameras: Optional[int] = typer.Option(None, "--cameras", help="Number of cameras [default: the layout's, Market-1501 6, DukeMTMC-reID 8]."),
    height: int = typer.Option(_default("height"), "--height", help="Image height in pixels (Market-1501: 128)."),
    width: int = typer.Option(_default("width"), "--width", help="Image width in pixels (Market-1501: 64)."),
    distractors: Optional[int] = typer.Option(None, "--distractors", help="Gallery images with pid 0000 [default: 15% of the identities' gallery images]."),
    junk: Optional[int] = typer.Option(None, "--junk", help="Gallery images with pid -1, which loaders drop [default: 5%]."),
    distractor_ids: Optional[int] = typer.Option(None, "--distractor-ids", help="Annotated identities seen only in the gallery [default: DukeMTMC-reID 408/702 of the test ids, Market-1501 0]."),
    unannotated: Optional[List[str]] = typer.Option(None, "--unannotated", help="Labels written as 0 for chosen ids, GROUP:SPLIT=COUNT, e.g. top:train=2 [default: the layout's traps]; 'none' for no trap."),
    multi_marked: Optional[List[str]] = typer.Option(None, "--multi-marked", help="Colour group with two fields marked for chosen ids, e.g. downcolour:test=3 [default: the layout's traps]; 'none' for no trap."),
    none_marked: Optional[List[str]] = typer.Option(None, "--none-marked", help="Colour group with no field marked for chosen ids (they wear an unnamed colour), e.g. upcolour:test=2 [default: the layout's traps]; 'none' for no trap."),
    identity_detail: float = typer.Option(_default("identity_detail"), "--identity-detail", help="0-2: detail beyond attributes (skin, shoes, patterns, shades, build); 0 = identities with equal attributes look alike."),
    camera_variation: float = typer.Option(_default("camera_variation"), "--camera-variation", help="0-2: how much cameras differ in light, blur, scale and background; 0 = identical cameras."),
    nuisance: float = typer.Option(_default("nuisance"), "--nuisance", help="0-2: per-image variation in position, scale, pose and noise."),
    occlusion: float = typer.Option(_default("occlusion"), "--occlusion", help="Probability that an image is partly occluded."),
    invisible: List[str] = typer.Option([], "--invisible", help="Group labelled but never drawn (drawn one neutral way); repeat or comma-separate. Groups: those of the layout's schema."),
    constant: List[str] = typer.Option([], "--constant", help="Group every identity shares: GROUP (Market-1501's most frequent state) or GROUP=STATE, e.g. hat=yes; repeat or comma-separate."),
    uniform: List[str] = typer.Option([], "--uniform", help="Group drawn uniformly over its states for every identity (the most it can vary); repeat or comma-separate."),
    missing: float = typer.Option(_default("missing"), "--missing", help="Fraction of identity labels written as 0 (not annotated) in the attribute file."),
    jpeg_quality: int = typer.Option(_default("jpeg_quality"), "--jpeg-quality", help="JPEG quality of the images (1-95)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder (only once the new world is complete)."),
    progress: bool = progress_option(),
) -> None:
    """Write a synthetic world: pedestrians whose attributes show in the pixels, in the exact
    Market-1501 (default) or DukeMTMC-reID layout (bounding_box_train/, query/, bounding_box_test/,
    market_attribute.mat or duke_attribute.mat) plus world.json with the seed, every knob, and
    the counts and traps a reader should find. `mosaic data check OUT` and
    `mosaic train --set data.root=OUT` read it like the real dataset.
    """
    from mosaic import api

    def split(values: List[str]) -> tuple[str, ...]:
        return tuple(v.strip() for item in values for v in item.split(",") if v.strip())

    def traps(values: Optional[List[str]]) -> Optional[tuple[str, ...]]:
        if values is None:
            return None  # the layout's traps
        entries = split(values)
        return () if entries == ("none",) else entries

    world_layout = get_layout(layout)

    config = WorldConfig(
        n_ids=ids,
        images_per_id=images_per_id,
        n_cameras=cameras,
        seed=seed,
        height=height,
        width=width,
        n_distractors=distractors,
        n_junk=junk,
        identity_detail=identity_detail,
        camera_variation=camera_variation,
        nuisance=nuisance,
        occlusion=occlusion,
        invisible=split(invisible),
        constant=split(constant),
        uniform=split(uniform),
        missing=missing,
        jpeg_quality=jpeg_quality,
        layout=world_layout.name,
        n_distractor_ids=distractor_ids,
        unannotated=traps(unannotated),
        multi_marked=traps(multi_marked),
        none_marked=traps(none_marked),
    )
    world = api.synth(out, config, overwrite=overwrite, progress=progress)
    typer.echo(f"wrote {world.path}: " + ", ".join(f"{n} {k}/" for k, n in world.images.items())
               + f" + {world_layout.attribute_file}, world.json")


def register(app: typer.Typer) -> None:
    app.command(name="synth")(synth)
