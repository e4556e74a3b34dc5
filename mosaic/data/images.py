"""Decode images once, at the model's input size, and keep them as one uint8 tensor.

ReID images are small (Market-1501: 128x64 JPEGs) and a training run reads each of them
hundreds of times, so decoding per step wastes most of the input pipeline's time. Here every
image is decoded once with PIL, resized to the model's input size (bicubic, see
:data:`RESIZE_FILTER`), and stored in one ``(N, 3, H, W)`` uint8 array. With ``cache_dir`` the array is
saved as ``images-<H>x<W>-<key>.npy`` (written atomically) and reused by the next run; the key
hashes the ordered image list with each file's size and modification time, so regenerating a
dataset in place invalidates the cache instead of silently reusing stale pixels.

Decoding runs on a thread pool (PIL releases the GIL while decoding and resizing) with a
progress bar on stderr. The training loop and the tracer both read images through
:func:`load_image_tensor`.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from mosaic.core.diskspace import SpaceNeed, require_space
from mosaic.core.errors import MosaicError
from mosaic.core.fileio import atomic_path

CACHE_VERSION = 2  # bump when the decoding (filter, layout) changes

# Bicubic, as CLIP-ReID and TransReID resize their training images (``interpolation=3``): Market's
# 128x64 crops are upsampled 2x to 256x128, where bicubic keeps edges that bilinear blurs. One
# filter for training and tracing alike, so a model is evaluated on the pixels it was trained on.
RESIZE_FILTER = "BICUBIC"


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(s) for s in size)
    return h, w


def decode_image(path: str | os.PathLike, size: int | Sequence[int]) -> np.ndarray:
    """One image as a ``(3, H, W)`` uint8 array at ``size = (H, W)``."""
    from PIL import Image, UnidentifiedImageError

    h, w = _size_hw(size)
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if rgb.size != (w, h):
                rgb = rgb.resize((w, h), getattr(Image.Resampling, RESIZE_FILTER))
            return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
    except FileNotFoundError:
        raise MosaicError(f"image {path} does not exist: the dataset folder changed since it was listed") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise MosaicError(f"cannot decode image {path} ({exc}): remove or replace the file") from None


def image_cache_key(paths: Sequence[str | os.PathLike], size: int | Sequence[int]) -> str:
    """Hash of the ordered image list, each file's size and mtime, the output size and the cache version."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, list(_size_hw(size)), len(paths)]).encode())
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise MosaicError(f"image {path} does not exist: the dataset folder changed since it was listed") from None
        digest.update(f"{os.fspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cache_file(paths: Sequence[str | os.PathLike], size: int | Sequence[int], cache_dir: str | os.PathLike) -> Path:
    """Where :func:`load_image_tensor` keeps the decoded array of ``paths`` at ``size``."""
    h, w = _size_hw(size)
    return Path(cache_dir) / f"images-{h}x{w}-{image_cache_key(paths, size)}.npy"


def decode_images(
    paths: Sequence[str | os.PathLike],
    size: int | Sequence[int],
    *,
    workers: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Decode and resize ``paths`` on a thread pool into one ``(N, 3, H, W)`` uint8 array."""
    h, w = _size_hw(size)
    out = np.empty((len(paths), 3, h, w), dtype=np.uint8)
    if not len(paths):
        return out
    workers = workers or min(16, (os.cpu_count() or 1) + 2)

    def work(i: int) -> None:
        out[i] = decode_image(paths[i], (h, w))

    from mosaic.core.progress import progress_bar

    with ThreadPoolExecutor(max_workers=workers) as pool, progress_bar(
        len(paths), f"decoding images at {h}x{w}", unit="img", enabled=progress
    ) as bar:
        for _ in pool.map(work, range(len(paths))):
            bar.update(1)
    return out


CACHE_FIX = "point the image cache elsewhere (data.cache_dir for training, --image-cache for tracing)"


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header of a C-ordered uint8 array of ``shape`` (what :func:`numpy.load` reads)."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _cached_shape(n: int, size: int | Sequence[int]) -> tuple[int, int, int, int]:
    return (n, 3, *_size_hw(size))


def cache_need(paths: Sequence[str | os.PathLike], size: int | Sequence[int], cache_dir: str | os.PathLike | None):
    """The :class:`~mosaic.core.diskspace.SpaceNeed` of caching ``paths`` at ``size`` (``None``: no cache, or cached)."""
    if cache_dir is None or not len(paths):
        return None
    target = cache_file([os.fspath(p) for p in paths], size, cache_dir)
    return None if target.is_file() else _need(target, len(paths), size)


def _need(target: Path, n: int, size: int | Sequence[int]) -> SpaceNeed:
    shape = _cached_shape(n, size)
    return SpaceNeed(target.parent, len(_npy_header(shape)) + int(np.prod(shape)), "image cache", CACHE_FIX)


def _save_cache(target: Path, array: np.ndarray) -> None:
    """``array`` as ``.npy`` at ``target``, atomically, its size checked against the free space first."""
    header = _npy_header(array.shape)
    with atomic_path(target, create_parent=True, needed=len(header) + array.nbytes, fix=CACHE_FIX) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(header)
            # one plain write of the pixels: a short write raises an OSError that says why
            # (numpy's tofile only says how much was written)
            handle.write(np.ascontiguousarray(array).reshape(-1).data)


def load_image_tensor(
    paths: Sequence[str | os.PathLike],
    size: int | Sequence[int],
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
):
    """All ``paths`` as one ``torch.uint8`` tensor ``(N, 3, H, W)`` at ``size = (H, W)``.

    With ``cache_dir`` the decoded array is read from, or written to, a cache file keyed by the
    image list and size (see :func:`cache_file`); without it the images are decoded every call.
    A cache that cannot fit the free space is refused before any image is decoded.
    """
    import torch

    paths = [os.fspath(p) for p in paths]
    if cache_dir is None:
        return torch.from_numpy(decode_images(paths, size, progress=progress))
    target = cache_file(paths, size, cache_dir)
    if target.is_file():
        try:
            array = np.load(target, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            array = None  # unreadable cache: decode again and replace it
        if array is not None and array.shape == _cached_shape(len(paths), size) and array.dtype == np.uint8:
            return torch.from_numpy(array)
    require_space([_need(target, len(paths), size)])
    array = decode_images(paths, size, progress=progress)
    _save_cache(target, array)
    return torch.from_numpy(array)
