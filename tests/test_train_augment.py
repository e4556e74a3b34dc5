"""Batch-wise augmentation: whole-batch tensor ops, per-sample randomness, reproducible under a seed."""

from __future__ import annotations

import torch

from mosaic.train.augment import BatchAugment
from mosaic.train.config import AugmentConfig


def batch(b=16, h=32, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)


def scale(x):
    return x.float() / 255.0


def test_same_seed_same_output_and_different_seed_differs():
    images = batch()
    aug = BatchAugment(AugmentConfig(), normalize=scale)
    a = aug(images, torch.Generator().manual_seed(3))
    b = aug(images, torch.Generator().manual_seed(3))
    c = aug(images, torch.Generator().manual_seed(4))
    assert a.shape == images.shape and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_flip_only_flips_the_chosen_samples():
    images = batch()
    aug = BatchAugment(AugmentConfig(flip_prob=0.5, pad=0, erase_prob=0.0), normalize=scale)
    params = aug.draw(len(images), 32, 16, torch.Generator().manual_seed(0))
    out = aug.apply(images, params)
    assert 0 < int(params.flip.sum()) < len(images)  # per-sample decisions within one batch
    for i in range(len(images)):
        expected = images[i].flip(-1) if params.flip[i] else images[i]
        assert torch.equal(out[i], scale(expected))


def test_pad_crop_shifts_each_sample_by_its_offset():
    images = batch(b=8)
    pad = 3
    aug = BatchAugment(AugmentConfig(flip_prob=0.0, pad=pad, erase_prob=0.0), normalize=lambda x: x)
    params = aug.draw(8, 32, 16, torch.Generator().manual_seed(1))
    out = aug.apply(images, params)
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    for i in range(8):
        dy, dx = int(params.dy[i]), int(params.dx[i])
        assert torch.equal(out[i], padded[i, :, dy : dy + 32, dx : dx + 16])


def test_erasing_replaces_exactly_the_drawn_rectangle():
    images = batch(b=32)
    aug = BatchAugment(AugmentConfig(flip_prob=0.0, pad=0, erase_prob=0.5, erase_fill="zero"), normalize=lambda x: x.float() + 1)
    params = aug.draw(32, 32, 16, torch.Generator().manual_seed(2))
    out = aug.apply(images, params)
    assert 0 < int(params.erase.sum()) < 32
    for i in range(32):
        y0, x0, eh, ew = (int(t[i]) for t in (params.y0, params.x0, params.eh, params.ew))
        region = out[i, :, y0 : y0 + eh, x0 : x0 + ew]
        zeros = int((out[i] == 0).sum())
        if params.erase[i]:
            assert eh > 0 and ew > 0 and torch.all(region == 0)
            assert zeros == 3 * eh * ew
        else:
            assert zeros == 0


def test_generator_state_continues_like_an_uninterrupted_stream():
    images = batch()
    aug = BatchAugment(AugmentConfig(), normalize=scale)
    g = torch.Generator().manual_seed(9)
    aug(images, g)
    saved = g.get_state()
    expected = aug(images, g)
    resumed = torch.Generator()
    resumed.set_state(saved)
    assert torch.equal(aug(images, resumed), expected)


def test_pixel_noise_fills_only_the_erased_rectangles():
    images = batch(b=32)
    aug = BatchAugment(AugmentConfig(flip_prob=0.0, pad=0, erase_prob=0.5, erase_fill="pixel"), normalize=scale)
    params = aug.draw(32, 32, 16, torch.Generator().manual_seed(5))
    out = aug.apply(images, params)
    assert torch.equal(out, aug.apply(images, params))  # the noise is a function of the drawn seed
    for i in range(32):
        inside = torch.zeros(32, 16, dtype=torch.bool)
        y0, x0, eh, ew = (int(t[i]) for t in (params.y0, params.x0, params.eh, params.ew))
        inside[y0 : y0 + eh, x0 : x0 + ew] = True
        assert torch.equal(out[i][:, ~inside], scale(images[i])[:, ~inside])
        if params.erase[i]:
            noise = out[i][:, inside]
            assert noise.min() < 0 < noise.max()  # standard-normal values, not pixels in [0, 1]
