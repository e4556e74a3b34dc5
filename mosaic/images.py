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

from mosaic.errors import MosaicError
from mosaic.fileio import atomic_path

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

    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(
        total=len(paths), desc=f"decoding images at {h}x{w}", unit="img", disable=not progress, leave=False
    ) as bar:
        for _ in pool.map(work, range(len(paths))):
            bar.update(1)
    return out


def load_image_tensor(
    paths: Sequence[str | os.PathLike],
    size: int | Sequence[int],
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
):
    """All ``paths`` as one ``torch.uint8`` tensor ``(N, 3, H, W)`` at ``size = (H, W)``.

    With ``cache_dir`` the decoded array is read from, or written to, a cache file keyed by the
    image list and size (see :func:`cache_file`); without it the images are decoded every call.
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
        if array is not None and array.shape == (len(paths), 3, *_size_hw(size)) and array.dtype == np.uint8:
            return torch.from_numpy(array)
    array = decode_images(paths, size, progress=progress)
    with atomic_path(target, create_parent=True) as tmp:
        with open(tmp, "wb") as handle:  # a file object: np.save would append .npy to a name
            np.save(handle, array, allow_pickle=False)
    return torch.from_numpy(array)
