"""The training configs that ship with mosaic, as package data.

``--config`` takes either a YAML file or the name of one of these (``synthetic_micro``,
``market1501_clip_vitb16``, ...). ``mosaic configs list`` shows them with their first line,
``mosaic configs copy NAME DEST`` writes one out to edit. They are read through
:mod:`importlib.resources`, so an installed wheel finds them wherever the command runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mosaic.core.errors import MosaicError
from mosaic.core.shipped import SUFFIX, shipped_names, shipped_path

__all__ = ["ShippedConfig", "config_path", "copy_config", "shipped_config", "shipped_configs"]

PACKAGE = __name__


@dataclass(frozen=True)
class ShippedConfig:
    """A shipped config: its name, its file inside the installed package, and its first sentence."""

    name: str
    path: Path

    @property
    def summary(self) -> str:
        """The file's first comment line: what the config is for."""
        first = self.path.read_text(encoding="utf-8").splitlines()[:1]
        return first[0].lstrip("#").strip() if first and first[0].startswith("#") else ""


def _names_line() -> str:
    return ", ".join(shipped_names(PACKAGE))


def shipped_configs() -> list[ShippedConfig]:
    """Every shipped config, sorted by name."""
    return [ShippedConfig(name, shipped_path(PACKAGE, name)) for name in shipped_names(PACKAGE)]


def shipped_config(name: str) -> ShippedConfig:
    """The shipped config ``name`` (``.yaml`` optional); a one-line error lists the names otherwise."""
    path = shipped_path(PACKAGE, str(name))
    if path is None:
        raise MosaicError(f"no shipped config named {name!r}: use one of {_names_line()} (mosaic configs list)")
    return ShippedConfig(path.stem, path)


def config_path(source: str | os.PathLike) -> Path:
    """The config file ``source`` names: an existing file first, else a shipped config of that name."""
    path = Path(source)
    if path.is_file():
        return path
    shipped = shipped_path(PACKAGE, os.fspath(source))
    if shipped is not None:
        return shipped
    if path.exists():
        raise MosaicError(f"config {path} is not a file: pass a YAML file or a shipped config name")
    raise MosaicError(
        f"config {os.fspath(source)!r} is neither a file nor a shipped config: pass a YAML file or one of "
        f"{_names_line()} (mosaic configs list)"
    )


def copy_config(name: str, dest: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the shipped config ``name`` to ``dest`` (a file, or a folder to put ``NAME.yaml`` in).

    Refuses to replace an existing file unless ``overwrite``; written under a temporary name, then renamed.
    """
    from mosaic.core.fileio import ensure_writable_dir, write_text_atomic

    config = shipped_config(name)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / (config.name + SUFFIX)
    if dest.exists() and not overwrite:
        raise MosaicError(f"{dest} already exists: pass --force to replace it, or choose another path")
    ensure_writable_dir(dest.parent if str(dest.parent) else Path("."))
    return write_text_atomic(dest, config.path.read_text(encoding="utf-8"))
