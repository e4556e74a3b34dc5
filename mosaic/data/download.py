"""The Lin et al. attribute files: where they are cached, and fetching them from their publishers.

The cache is ``$MOSAIC_DATA_DIR/attributes`` when that variable is set, otherwise
``$XDG_CACHE_HOME/mosaic/attributes`` (``~/.cache/mosaic/attributes`` without it). Each file
sits in a folder named after it, as in the published repositories' own names:
``market_attribute/market_attribute.mat`` and ``duke_attribute/duke_attribute.mat``.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "MOSAIC_DATA_DIR"


def data_dir() -> Path:
    """Root of the files mosaic downloads for the user."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home).expanduser() / "mosaic"


def attribute_cache_dir() -> Path:
    """Folder that ``mosaic data get-attributes`` fills by default."""
    return data_dir() / "attributes"
