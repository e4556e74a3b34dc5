"""A checkpoint's digests: what lets a flipped bit in its weights be found before they are used.

Two records, checked by every read (:func:`mosaic.train.checkpoint.read_checkpoint`, so by
``mosaic train --resume`` and ``mosaic trace --ckpt`` alike):

* inside the checkpoint, ``tensor_digests``: per tensor of the payload (``model/<name>``,
  ``optimizer/state/<i>/<slot>``, ``rng/...``), the CRC-32 of its dtype, shape and bytes, so a
  mismatch names the tensor;
* beside it, ``<name>.pt.sha256``: the SHA-256 of the whole file in ``sha256sum`` format
  (``sha256sum -c last.pt.sha256`` checks it by hand), which also covers the bytes that are not
  tensors (configuration, schema, counters). The trace of a checkpoint records the same SHA-256
  in its provenance.

Checkpoints written before either record read as before (nothing to check).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from mosaic.core.errors import MosaicError
from mosaic.core.fileio import sha256_file, write_text_atomic

__all__ = ["DIGESTS_KEY", "sidecar_path", "tensor_digests", "verify_checkpoint", "write_sidecar"]

DIGESTS_KEY = "tensor_digests"
SIDECAR_SUFFIX = ".sha256"


def _tensors(value: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, f"{prefix}/{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{prefix}/{i}")


def tensor_digest(tensor: torch.Tensor) -> str:
    """CRC-32 of the tensor's dtype, shape and bytes (C order, on the CPU)."""
    t = tensor.detach()
    crc = zlib.crc32(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        data = t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        crc = zlib.crc32(data, crc)
    return f"crc32:{crc:08x}"


def tensor_digests(payload: Mapping[str, Any]) -> dict[str, str]:
    """Per tensor of ``payload`` (nested dicts and lists), its :func:`tensor_digest`, keyed by its path."""
    return {name: tensor_digest(t) for name, t in _tensors({k: v for k, v in payload.items() if k != DIGESTS_KEY}, "")}


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: str | Path, *, fix: str) -> str:
    """Record the SHA-256 of the checkpoint at ``path`` beside it; return the digest."""
    path = Path(path)
    digest = sha256_file(path)
    try:
        write_text_atomic(sidecar_path(path), f"{digest}  {path.name}\n", fix=fix)
    except BaseException:
        # the previous checkpoint's digest must not stand beside the new file: without a digest
        # file the checkpoint is still checked tensor by tensor
        sidecar_path(path).unlink(missing_ok=True)
        raise
    return digest


def _recorded_sha256(path: Path) -> str | None:
    sidecar = sidecar_path(path)
    try:
        text = sidecar.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        text = []
    if not text or len(text[0]) != 64:
        raise MosaicError(f"checkpoint digest file {sidecar} is damaged (no SHA-256 in it): delete it to read "
                          f"{path.name} unchecked, or use another checkpoint")
    return text[0].lower()


def verify_checkpoint(path: Path, data: Mapping[str, Any], sha256: str) -> str:
    """Check the loaded ``data`` of ``path`` (whose bytes hash to ``sha256``) against its digests.

    Returns what was verified (``"sha256 and tensor crc32"``, ... or ``"none"`` for a checkpoint
    written before digests); a mismatch raises one :class:`MosaicError` line naming the file and
    the tensor.
    """
    damaged = "the file is corrupted; use another checkpoint (e.g. RUN/checkpoints/best.pt) or retrain"
    stored = data.get(DIGESTS_KEY)
    if isinstance(stored, Mapping):
        computed = tensor_digests(data)
        for name in sorted(set(stored) | set(computed)):
            if stored.get(name) != computed.get(name):
                detail = ("is missing" if name not in computed else "was not recorded" if name not in stored
                          else f"fails its checksum (stored {stored[name]}, computed {computed[name]})")
                raise MosaicError(f"checkpoint {path}: tensor {name} {detail}: {damaged}")
    recorded = _recorded_sha256(path)
    if recorded is not None and recorded != sha256:
        where = ("every tensor matches its own digest, so the difference lies in the rest of the file "
                 "(configuration, counters) or the digest file is stale" if isinstance(stored, Mapping) else "")
        raise MosaicError(
            f"checkpoint {path} does not match the SHA-256 recorded in {sidecar_path(path).name}"
            + (f" ({where})" if where else "") + f": {damaged}"
        )
    checked = [what for what, done in (("sha256", recorded is not None), ("tensor crc32", isinstance(stored, Mapping))) if done]
    return " and ".join(checked) or "none"
