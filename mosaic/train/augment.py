"""Batch-wise training augmentation on the training device.

The images arrive as one uint8 tensor ``(B, 3, H, W)`` (already at the model's input size, see
:mod:`mosaic.data.images`), so the per-image PIL transforms of the usual ReID pipelines become a few
tensor operations over the whole batch:

* horizontal flip and pad-then-random-crop are one ``gather`` on the uint8 batch (each sample
  gets its own offsets and flip);
* normalisation is done by the caller's ``normalize`` function (the model's, so training and
  inference cannot disagree);
* random erasing (Zhong et al. 2020, as in timm's ``RandomErasing``) is a per-sample rectangle
  mask applied with ``torch.where``.

Every random number comes from an explicit :class:`torch.Generator` on the CPU (a handful of
numbers per sample, moved to the device), so a seed reproduces the batch exactly on any device
and its state can be checkpointed. The per-pixel erase noise is drawn on the device from a
generator re-seeded from the CPU one each call.

Nothing here reads a device tensor back to the host: every number the host needs (the noise
seed, how many pixels are erased) is known at draw time, so the device never waits for the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from mosaic.train.config import AugmentConfig

Normalize = Callable[[torch.Tensor], torch.Tensor]


def _scale_normalize(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0)


@dataclass
class AugmentParams:
    """The random draws of one batch (all on the CPU); exposed for tests and debugging."""

    flip: torch.Tensor  # (B,) bool
    dy: torch.Tensor  # (B,) int64 crop offset into the padded image
    dx: torch.Tensor
    erase: torch.Tensor  # (B,) bool
    y0: torch.Tensor
    x0: torch.Tensor
    eh: torch.Tensor  # erase height / width, 0 when not erasing
    ew: torch.Tensor
    noise_seed: int
    erased_pixels: int = 0  # sum of eh * ew: the erased area per channel, known on the host

    def pin_memory(self) -> "AugmentParams":
        """The same draws in page-locked memory, so that copying them to a GPU need not block."""
        return AugmentParams(**{k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()})


class BatchAugment:
    """Flip / pad-crop / random erasing for a whole uint8 batch at once.

    >>> augment = BatchAugment(AugmentConfig(), normalize=lambda x: x.float() / 255)
    >>> g = torch.Generator().manual_seed(0)
    >>> out = augment(torch.zeros(8, 3, 32, 16, dtype=torch.uint8), g)
    >>> out.shape, out.dtype
    (torch.Size([8, 3, 32, 16]), torch.float32)
    """

    def __init__(self, config: AugmentConfig, normalize: Normalize | None = None):
        self.config = config
        self.normalize = normalize or _scale_normalize
        self._device_generators: dict[torch.device, torch.Generator] = {}

    # ------------------------------------------------------------ random draws
    def draw(self, batch: int, height: int, width: int, generator: torch.Generator) -> AugmentParams:
        """Draw every random quantity of a batch from ``generator`` (fixed number of draws per call)."""
        cfg, g = self.config, generator
        flip = torch.rand(batch, generator=g) < cfg.flip_prob
        span = 2 * cfg.pad + 1
        dy = torch.randint(0, span, (batch,), generator=g)
        dx = torch.randint(0, span, (batch,), generator=g)

        # Random erasing as in timm: up to 10 attempts per sample for a rectangle that fits.
        attempts = 10
        erase = torch.rand(batch, generator=g) < cfg.erase_prob
        area = torch.empty(batch, attempts).uniform_(*cfg.erase_area, generator=g) * (height * width)
        log_lo, log_hi = math.log(cfg.erase_aspect[0]), math.log(cfg.erase_aspect[1])
        aspect = torch.exp(torch.empty(batch, attempts).uniform_(log_lo, log_hi, generator=g))
        eh = torch.sqrt(area * aspect).round().long()
        ew = torch.sqrt(area / aspect).round().long()
        fits = (eh < height) & (ew < width) & (eh > 0) & (ew > 0)
        first = torch.argmax(fits.int(), dim=1)  # first attempt that fits (0 if none does)
        pick = lambda t: t.gather(1, first[:, None]).squeeze(1)  # noqa: E731
        eh, ew = pick(eh), pick(ew)
        erase &= fits.any(dim=1)
        eh, ew = eh * erase, ew * erase
        u = torch.rand(batch, 2, generator=g)
        y0 = (u[:, 0] * (height - eh + 1).float()).long()
        x0 = (u[:, 1] * (width - ew + 1).float()).long()
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=g))
        return AugmentParams(flip, dy, dx, erase, y0, x0, eh, ew, noise_seed, erased_pixels=int((eh * ew).sum()))

    # ---------------------------------------------------------------- applying
    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment and normalise a uint8 batch ``(B, 3, H, W)``; returns the normalised float batch."""
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected a uint8 (B, C, H, W) batch, got {images.dtype} {tuple(images.shape)}")
        b, _, h, w = images.shape
        params = self.draw(b, h, w, generator)
        return self.apply(images, params)

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Apply drawn parameters to a uint8 batch (deterministic given ``params``)."""
        device = images.device
        moved = {k: v.to(device, non_blocking=True) for k, v in vars(params).items() if isinstance(v, torch.Tensor)}
        x = self._flip_crop(images, moved["flip"], moved["dy"], moved["dx"])
        x = self.normalize(x)
        if self.config.erase_prob > 0:
            x = self._erase(x, moved, params)
        return x

    def _flip_crop(self, images: torch.Tensor, flip: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        b, c, h, w = images.shape
        pad = self.config.pad
        if pad == 0 and self.config.flip_prob == 0:
            return images
        padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
        wp = w + 2 * pad
        rows = dy[:, None] + torch.arange(h, device=images.device)  # (B, H)
        cols = torch.arange(w, device=images.device).expand(b, w)
        cols = torch.where(flip[:, None], (w - 1) - cols, cols) + dx[:, None]  # (B, W)
        index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
        out = padded.reshape(b, c, -1).gather(2, index)
        return out.reshape(b, c, h, w)

    def _erase(self, x: torch.Tensor, p: dict[str, torch.Tensor], params: AugmentParams) -> torch.Tensor:
        b, c, h, w = x.shape
        ys = torch.arange(h, device=x.device)[None, :, None]
        xs = torch.arange(w, device=x.device)[None, None, :]
        y0, x0 = p["y0"][:, None, None], p["x0"][:, None, None]
        mask = (ys >= y0) & (ys < y0 + p["eh"][:, None, None]) & (xs >= x0) & (xs < x0 + p["ew"][:, None, None])
        mask = mask[:, None]  # (B, 1, H, W); all-False for samples that are not erased
        fill_mode = self.config.erase_fill
        if fill_mode == "zero":
            fill = torch.zeros((), dtype=x.dtype, device=x.device)
        else:
            gen = self._device_generator(x.device).manual_seed(params.noise_seed)
            if fill_mode == "pixel" and x.device.type == "cpu":
                # Noise for the erased pixels only (about a tenth of the batch): on a CPU drawing
                # it for every pixel is the largest cost of the pipeline; on a GPU it is free.
                # The count comes from the host-side draws (the rectangles lie inside the image).
                full = mask.expand(b, c, h, w)
                noise = torch.randn(c * params.erased_pixels, generator=gen, dtype=x.dtype)
                return x.masked_scatter(full, noise)
            shape = (b, c, h, w) if fill_mode == "pixel" else (b, c, 1, 1)
            fill = torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype)
        return torch.where(mask, fill, x)

    def _device_generator(self, device: torch.device) -> torch.Generator:
        gen = self._device_generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            self._device_generators[device] = gen
        return gen
