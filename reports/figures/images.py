"""Small embedded thumbnails (base64 JPEG ``data:`` URIs) of dataset images.

Trace image paths are relative to the dataset root recorded in the trace
(``trace.dataset["root"]``) or absolute. A missing or unreadable image gives ``None`` and is
remembered in :attr:`ThumbnailCache.missing`, so that the report shows the identity instead
and lists the problem once, rather than failing.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

THUMBNAIL_SIZE = (32, 64)  # width, height: the Market-1501 aspect (64 x 128) at a quarter
JPEG_QUALITY = 70


@dataclass
class ThumbnailCache:
    """Decode, downscale and encode each image once."""

    root: Path | None
    size: tuple[int, int] = THUMBNAIL_SIZE
    quality: int = JPEG_QUALITY
    missing: list[str] = field(default_factory=list)
    _cache: dict[str, str | None] = field(default_factory=dict, repr=False)

    def resolve(self, path: str) -> Path:
        p = Path(path)
        if p.is_absolute() or self.root is None:
            return p
        return self.root / p

    def __call__(self, path: str) -> str | None:
        """A ``data:image/jpeg;base64,...`` URI of ``path``, or ``None`` when it cannot be read."""
        if path in self._cache:
            return self._cache[path]
        uri = self._encode(self.resolve(path))
        if uri is None:
            self.missing.append(path)
        self._cache[path] = uri
        return uri

    def _encode(self, path: Path) -> str | None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image = image.convert("RGB").resize(self.size, Image.Resampling.BILINEAR)
        except (OSError, UnidentifiedImageError, ValueError):
            return None
        buffer = io.BytesIO()
        # No EXIF, no optimiser passes: the same pixels always give the same bytes.
        image.save(buffer, format="JPEG", quality=self.quality)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def dataset_root(dataset: dict, trace_path: str | os.PathLike | None = None) -> Path | None:
    """The folder that relative image paths start from: the recorded root, made absolute
    against the trace's own folder when it was recorded relative."""
    root = dataset.get("root") if dataset else None
    if not root:
        return Path(trace_path).parent if trace_path else None
    root = Path(str(root))
    if not root.is_absolute() and trace_path is not None:
        root = Path(trace_path).parent / root
    return root
