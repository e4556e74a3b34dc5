"""Writing a synthetic world in a dataset's layout (folders, file names, attribute file), plus world.json.

The layout (:mod:`mosaic.synth.layouts`) says how: Market-1501 or DukeMTMC-reID.

The plan (who appears in which camera, under which file name, in which split) is made first and
entirely from the seed; images are then drawn in batches and encoded as JPEG. Everything goes to
a temporary folder beside the target that is renamed into place at the end, so an interrupted
run leaves nothing at ``out_dir``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mosaic.core.diskspace import OUT_FIX, write_error
from mosaic.core.errors import MosaicError
from mosaic.core.fileio import ensure_writable_dir, give_default_permissions, write_text_atomic
from mosaic.synth.config import WorldConfig
from mosaic.synth.layouts import WorldLayout, get_layout
from mosaic.synth.people import People
from mosaic.synth.population import COLOUR_ATTRS, sample_population
from mosaic.synth.render import render
from mosaic.synth.scene import Cameras, Shots, figure_parameters
from mosaic.synth.traps import Traps, plant_traps

SIDECAR = "world.json"
BATCH = 128  # images drawn together; memory ~ BATCH x H x W x 3 floats per temporary
# Independent random streams of one seed: changing how many images are drawn does not change
# who the people are, and so on.
STREAMS = {"people": 1, "cameras": 2, "layout": 3, "shots": 4, "extras": 5, "missing": 6, "traps": 7}


@dataclass(frozen=True)
class Plan:
    """One row per image file: where it goes and what it shows."""

    folder: np.ndarray  # split folder name
    name: np.ndarray  # file name in the layout's spelling
    person: np.ndarray  # row into the people table (identities, then distractors and junk)
    camera: np.ndarray  # 1-based
    framing: np.ndarray  # (n, 3): x shift, y shift (pixels), scale; bad boxes only
    kind: np.ndarray  # "identity", "distractor" or "junk"


def _stream(config: WorldConfig, name: str) -> np.random.Generator:
    return np.random.default_rng((config.seed, STREAMS[name]))


class _Frames:
    """Running frame numbers per (camera, sequence), so every file name is unique."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.next: dict[tuple[int, int], int] = {}

    def take(self, camera: int, sequence: int) -> int:
        key = (camera, sequence)
        frame = self.next.get(key, int(self.rng.integers(1, 200)))
        self.next[key] = frame + int(self.rng.integers(5, 60))
        return frame


def make_plan(config: WorldConfig, train_pids: np.ndarray, gallery_only_pids=()) -> tuple[Plan, dict[str, int]]:
    """Every image of the world: identities over cameras, query/gallery, gallery-only identities,
    distractor and junk images."""
    layout = get_layout(config.layout)
    split_dirs, _name = layout.folders.split_dirs, layout.file_name
    rng = _stream(config, "layout")
    frames = _Frames(rng)
    train = set(int(p) for p in train_pids)
    gallery_only = set(int(p) for p in gallery_only_pids)
    rows: list[tuple[str, str, int, int, str]] = []
    k_max = min(config.n_cameras, config.images_per_id // 2)
    for pid in range(1, config.n_ids + len(gallery_only) + 1):
        if pid in gallery_only:
            rows += _gallery_only_rows(pid, config, rng, frames, layout)
            continue
        # at least two cameras with two images each: every query keeps a match in another camera
        k = int(rng.integers(2, k_max + 1))
        cams = np.sort(rng.choice(config.n_cameras, size=k, replace=False)) + 1
        counts = 2 + rng.multinomial(config.images_per_id - 2 * k, np.full(k, 1.0 / k))
        for cam, count in zip(cams, counts):
            sequence = int(rng.integers(1, 7))
            for j in range(int(count)):
                name = _name(pid, int(cam), sequence, frames.take(int(cam), sequence), 1)
                if pid in train:
                    split = "train"
                else:  # Market-1501: one query per identity and camera, the rest in the gallery
                    split = "query" if j == 0 else "gallery"
                rows.append((split_dirs[split], name, pid - 1, int(cam), "identity"))
    n_gallery = sum(1 for r in rows if r[0] == split_dirs["gallery"])
    n_distractors = config.n_distractors if config.n_distractors is not None else round(layout.distractor_image_share * n_gallery)
    n_junk = config.n_junk if config.n_junk is not None else round(layout.junk_share * n_gallery)

    framing = [np.array([0.0, 0.0, 1.0])] * len(rows)
    extra = config.n_ids + len(gallery_only)
    for kind, count, pid in (("distractor", n_distractors, 0), ("junk", n_junk, -1)):
        for _ in range(count):
            cam = int(rng.integers(1, config.n_cameras + 1))
            sequence = int(rng.integers(1, 7))
            name = _name(pid, cam, sequence, frames.take(cam, sequence), int(rng.integers(1, 9)))
            rows.append((split_dirs["gallery"], name, extra, cam, kind))
            framing.append(_bad_box(kind, rng, config))
            extra += 1
    plan = Plan(
        folder=np.array([r[0] for r in rows]),
        name=np.array([r[1] for r in rows]),
        person=np.array([r[2] for r in rows], dtype=np.int64),
        camera=np.array([r[3] for r in rows], dtype=np.int64),
        framing=np.array(framing, dtype=np.float32),
        kind=np.array([r[4] for r in rows]),
    )
    return plan, {"n_distractors": int(n_distractors), "n_junk": int(n_junk)}


def _gallery_only_rows(pid: int, config: WorldConfig, rng: np.random.Generator, frames: _Frames, layout: WorldLayout) -> list:
    """An annotated identity seen only in the gallery (DukeMTMC-reID's 408): no query, no train image."""
    count = max(1, config.images_per_id // 2)
    k = int(rng.integers(1, min(config.n_cameras, count) + 1))
    cams = np.sort(rng.choice(config.n_cameras, size=k, replace=False)) + 1
    counts = 1 + rng.multinomial(count - k, np.full(k, 1.0 / k))
    rows = []
    for cam, n in zip(cams, counts):
        sequence = int(rng.integers(1, 7))
        for _ in range(int(n)):
            name = layout.file_name(pid, int(cam), sequence, frames.take(int(cam), sequence), 1)
            rows.append((layout.folders.split_dirs["gallery"], name, pid - 1, int(cam), "identity"))
    return rows


def _bad_box(kind: str, rng: np.random.Generator, config: WorldConfig) -> np.ndarray:
    """Framing of a distractor (a stranger, or a badly placed box) or a junk box."""
    W, H = config.width, config.height
    u = rng.random(4)
    if kind == "distractor":
        if u[0] < 0.5:  # a well-framed stranger
            return np.array([0.0, 0.0, 1.0])
        if u[0] < 0.75:  # box shifted half off the person
            return np.array([(1 if u[1] < 0.5 else -1) * W * (0.3 + 0.25 * u[2]), 0.0, 1.0])
        return np.array([0.0, H * (0.25 + 0.3 * u[2]), 1.4 + 0.6 * u[3]])  # box on the upper body only
    if u[0] < 0.5:  # background only
        return np.array([W * 10.0, 0.0, 1.0])
    return np.array([(1 if u[1] < 0.5 else -1) * W * (0.55 + 0.2 * u[2]), 0.0, 0.45 + 0.2 * u[3]])


# ---------------------------------------------------------------------- attribute file
def attribute_struct(
    layout: WorldLayout, people: People, pids: np.ndarray, order: tuple[str, ...], missing: np.ndarray, extra: dict
) -> np.ndarray:
    """One split of the layout's attribute file: a 1x1 struct of uint8 (1, N) rows + image_index.

    Raw fields are written as the schema's ``source`` entries read them back. ``missing``
    (N, n_groups) marks labels written as 0 (not annotated); ``extra[group]`` (N,) is a second
    marked colour field per identity (-1: none), the multi-marked trap.
    """
    index = pids - 1
    fields: dict[str, np.ndarray] = {}
    groups = list(layout.group_states)
    colours = layout.colour_fields
    for gi, group in enumerate(groups):
        if group in colours:
            drawn = getattr(people, COLOUR_ATTRS[group])[index]
            second = extra.get(group, np.full(len(pids), -1))
            for i, name in enumerate(colours[group]):
                marked = (drawn == i) | (second == i)
                fields[name] = np.where(missing[:, gi], 0, np.where(marked, 2, 1)).astype(np.uint8)
            continue
        source = layout.mapping.sources[group]
        raw_of_state = {layout.group_states[group].index(state): code for code, state in source.codes.items()}
        code = np.vectorize(raw_of_state.get, otypes=[np.uint8])(people.states[group][index])
        fields[source.field] = np.where(missing[:, gi], 0, code).astype(np.uint8)
    struct = np.empty((1, 1), dtype=[(name, object) for name in order])
    for name in order:
        if name == "image_index":
            cells = np.empty((1, len(pids)), dtype=object)
            for j, pid in enumerate(pids):
                cells[0, j] = f"{int(pid):04d}"
            struct[0, 0][name] = cells
        else:
            struct[0, 0][name] = fields[name].reshape(1, -1)
    return struct


def write_attribute_file(path: Path, people: People, train_pids, test_pids, config: WorldConfig, traps: Traps | None = None) -> None:
    from scipy.io import savemat

    layout = get_layout(config.layout)
    rng = _stream(config, "missing")
    n_groups = len(layout.group_states)
    missing = rng.random((len(people), n_groups)) < config.missing
    traps = traps if traps is not None else Traps()
    for (group, _split), pids in traps.unannotated.items():
        missing[np.asarray(pids, dtype=np.int64) - 1, list(layout.group_states).index(group)] = True
    extra = traps.extra_fields(len(people))
    order = layout.field_order
    top = np.empty((1, 1), dtype=[(struct, object) for struct in layout.struct_order])
    for struct, pids in (("train", train_pids), ("test", test_pids)):
        top[0, 0][struct] = attribute_struct(
            layout, people, pids, order[struct], missing[pids - 1], {g: e[pids - 1] for g, e in extra.items()}
        )
    buffer = io.BytesIO()
    savemat(buffer, {layout.attribute_key: top}, format="5", oned_as="row")
    data = bytearray(buffer.getvalue())
    # The 116-byte text header carries a creation time; a fixed one keeps same seed, same bytes.
    text = f"MATLAB 5.0 MAT-file, Platform: posix, Created by: mosaic synth, seed {config.seed}".encode("ascii")
    data[:116] = text[:116].ljust(116, b" ")
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- the world
def synthesize(
    out_dir: str | os.PathLike,
    config: WorldConfig | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a synthetic world in the layout of ``config.layout`` to ``out_dir`` and return it.

    ``out_dir`` gets ``bounding_box_train/``, ``query/``, ``bounding_box_test/``, the layout's
    attribute file (``market_attribute.mat`` / ``duke_attribute.mat``) and ``world.json``
    (seed, version, layout, every knob, and the counts and traps a reader should find). It must
    not exist or be empty, unless ``overwrite``. The same config gives the same bytes.
    """
    from PIL import Image

    config = config if config is not None else WorldConfig()
    if not isinstance(config, WorldConfig):
        raise MosaicError(f"config must be a WorldConfig, got {type(config).__name__}")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise MosaicError(f"{out} exists and is not a folder: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise MosaicError(f"{out} exists and is not empty: choose another --out or pass --overwrite")
    parent = ensure_writable_dir(out.parent, create=True)

    layout = get_layout(config.layout)
    n_test_query = config.n_ids - (config.n_ids + 1) // 2  # half/half, as Market-1501's 751 / 750
    n_gallery_only = (
        config.n_distractor_ids if config.n_distractor_ids is not None else round(layout.distractor_id_share * n_test_query)
    )
    pids = np.arange(1, config.n_ids + n_gallery_only + 1)  # gallery-only pids interleave, as in DukeMTMC-reID
    order = np.random.default_rng((config.seed, STREAMS["people"], 0)).permutation(pids)
    n_train = (config.n_ids + 1) // 2
    train_pids, test_pids = np.sort(order[:n_train]), np.sort(order[n_train:])
    gallery_only_pids = np.sort(order[config.n_ids:])
    people = sample_population(len(pids), config, _stream(config, "people"))
    traps = plant_traps(config, people, train_pids, test_pids, _stream(config, "traps"))
    plan, resolved = make_plan(config, train_pids, gallery_only_pids)
    resolved["n_distractor_ids"] = int(n_gallery_only)
    n_extra = resolved["n_distractors"] + resolved["n_junk"]
    everyone = _concat(people, sample_population(n_extra, config, _stream(config, "extras"))) if n_extra else people
    cameras = Cameras.sample(config, _stream(config, "cameras"))
    shots = Shots.sample(plan.camera, config, _stream(config, "shots"))
    figures = figure_parameters(everyone, config)

    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise write_error(out, exc, fix=OUT_FIX) from None
    give_default_permissions(staging)
    try:
        for folder in layout.folders.split_dirs.values():
            (staging / folder).mkdir()
        bar = _progress(len(plan.name), progress)
        for start in range(0, len(plan.name), BATCH):
            rows = np.arange(start, min(start + BATCH, len(plan.name)))
            fig = {k: v[plan.person[rows]] for k, v in figures.items()}
            images = render(fig, shots.take(rows), cameras, config, offset=plan.framing[rows])
            for row, image in zip(rows, images):
                Image.fromarray(image).save(staging / plan.folder[row] / plan.name[row], format="JPEG", quality=config.jpeg_quality)
            bar.update(len(rows))
        bar.close()
        write_attribute_file(staging / layout.attribute_file, people, train_pids, test_pids, config, traps)
        sidecar = _sidecar(config, plan, resolved, train_pids, test_pids, traps)
        write_text_atomic(staging / SIDECAR, json.dumps(sidecar, indent=2) + "\n")
        _move_into_place(staging, out)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        error = write_error(out, exc, fix=OUT_FIX)  # a full disk: one line, not a traceback
        if error is not None:
            raise error from None
        raise
    return out


def _concat(a: People, b: People) -> People:
    return People(
        states={g: np.concatenate([a.states[g], b.states[g]]) for g in a.states},
        up_field=np.concatenate([a.up_field, b.up_field]),
        down_field=np.concatenate([a.down_field, b.down_field]),
        detail={k: np.concatenate([a.detail[k], b.detail[k]]) for k in a.detail},
    )


def _sidecar(config: WorldConfig, plan: Plan, resolved: dict[str, int], train_pids, test_pids, traps: Traps) -> dict:
    from mosaic import __version__

    layout = get_layout(config.layout)
    identity = plan.kind == "identity"
    counts = {split: int(np.sum((plan.folder == folder) & identity)) for split, folder in layout.folders.split_dirs.items()}
    ids = {
        split: int(np.unique(plan.person[(plan.folder == folder) & identity]).size)
        for split, folder in layout.folders.split_dirs.items()
    }
    return {
        "generator": "mosaic synth",
        "mosaic_version": __version__,
        "seed": config.seed,
        "config": config.to_dict(),
        "resolved": {**resolved, "n_train_ids": int(len(train_pids)), "n_test_ids": int(len(test_pids))},
        "images": {**counts, "distractor": resolved["n_distractors"], "junk": resolved["n_junk"]},
        "identities": ids,
        "layout": layout.name,
        "cameras": int(config.n_cameras),
        "attribute_file": layout.attribute_file,
        "schema": layout.schema_name,
        "traps": traps.to_dict(),
    }


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished world onto ``out``; an existing folder is swapped out, then removed."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _progress(total: int, enabled: bool):
    from mosaic.core.progress import progress_bar

    return progress_bar(total, "synth", unit="img", enabled=enabled)
