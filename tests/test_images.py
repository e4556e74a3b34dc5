"""Image decoding and the on-disk uint8 cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from mosaic.core.errors import MosaicError
from mosaic.data.images import cache_file, decode_image, load_image_tensor


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        path = tmp_path / f"{i:04d}.png"
        Image.fromarray(rng.integers(0, 256, (20 + i, 10, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_decode_resizes_to_height_width(image_files):
    arr = decode_image(image_files[0], (16, 8))
    assert arr.shape == (3, 16, 8) and arr.dtype == np.uint8
    same_size = decode_image(image_files[0], (20, 10))
    assert np.array_equal(same_size, np.asarray(Image.open(image_files[0]).convert("RGB")).transpose(2, 0, 1))


def test_tensor_matches_single_decodes_and_cache_is_reused(image_files, tmp_path):
    cache = tmp_path / "cache"
    first = load_image_tensor(image_files, (16, 8), cache_dir=cache, progress=False)
    assert first.dtype == torch.uint8 and first.shape == (6, 3, 16, 8)
    for i, path in enumerate(image_files):
        assert np.array_equal(first[i].numpy(), decode_image(path, (16, 8)))
    target = cache_file(image_files, (16, 8), cache)
    assert target.is_file() and [p.name for p in cache.iterdir()] == [target.name]  # no temp files left
    # A second call reads the cache: prove it by planting a marker in the cached array.
    planted = np.load(target)
    planted[0, 0, 0, 0] = 255 - planted[0, 0, 0, 0]
    with open(target, "wb") as handle:
        np.save(handle, planted)
    os.utime(target)
    again = load_image_tensor(image_files, (16, 8), cache_dir=cache, progress=False)
    assert again[0, 0, 0, 0] == planted[0, 0, 0, 0]


def test_cache_key_depends_on_list_size_and_file_content(image_files, tmp_path):
    base = cache_file(image_files, (16, 8), tmp_path)
    assert cache_file(image_files[::-1], (16, 8), tmp_path) != base
    assert cache_file(image_files, (32, 16), tmp_path) != base
    Image.fromarray(np.zeros((25, 10, 3), dtype=np.uint8)).save(image_files[0])  # regenerated in place
    os.utime(image_files[0], ns=(1, 1))
    assert cache_file(image_files, (16, 8), tmp_path) != base


def test_missing_or_broken_image_is_a_user_error(image_files, tmp_path):
    with pytest.raises(MosaicError, match="does not exist"):
        load_image_tensor([tmp_path / "nope.png"], (16, 8), progress=False)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(MosaicError, match="cannot decode image"):
        load_image_tensor([broken], (16, 8), progress=False)
