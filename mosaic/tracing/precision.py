"""The arithmetic a trace computes its features in: ``fp32``, ``tf32`` or ``bf16``.

Only the network (trunk and expert head) changes precision. What turns features into results
stays float32 under every setting: the L2 normalisation, the distances (with TF32 explicitly off,
so a cosine is not rounded to TF32's 10-bit mantissa), the ranking and the metrics, and every
discrete routing decision (the learned router's argmax runs on float32 logits,
:meth:`mosaic.model.routers.LearnedRouter.decision_logits`): a flipped route or a new tie changes
results by far more than rounding a feature does.

- ``fp32``: IEEE float32 everywhere; on CUDA, TF32 is switched off for matmuls and convolutions
  (PyTorch leaves it on for cuDNN convolutions by default).
- ``tf32``: on CUDA, float32 tensors whose matmuls and convolutions use TF32 tensor cores. TF32
  is a CUDA feature: on the CPU this setting computes exactly what ``fp32`` does.
- ``bf16``: ``torch.autocast`` to bfloat16 (CUDA, and the CPU's own bf16 autocast); weights, the
  residual stream and the cached trunk tokens stay float32.

``docs/validation.md`` measures what each setting changes in a trained model's trace.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from mosaic.tracing.settings import PRECISIONS

__all__ = ["PRECISIONS", "compute_precision", "exact_float32"]


@contextlib.contextmanager
def _tf32(device: torch.device, enabled: bool) -> Iterator[None]:
    if device.type != "cuda":  # TF32 exists on CUDA only; CPU float32 is IEEE either way
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@contextlib.contextmanager
def compute_precision(precision: str, device: torch.device) -> Iterator[None]:
    """The network's arithmetic for ``precision`` on ``device`` (see the module docstring)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    with _tf32(device, precision == "tf32"):
        if precision == "bf16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
        else:
            yield


@contextlib.contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """IEEE float32 whatever the surrounding precision: for distances and decisions."""
    with _tf32(device, False), torch.autocast(device.type, enabled=False):
        yield
