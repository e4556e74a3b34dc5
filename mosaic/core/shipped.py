"""Files that ship inside the package (attribute schemas, training configs), found by name.

They are package data, read through :mod:`importlib.resources`, so a wheel installed into any
environment finds them exactly as a clone does; nothing looks beside the package.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

SUFFIX = ".yaml"


def shipped_names(package: str) -> list[str]:
    """Names (without ``.yaml``) of the YAML files shipped in ``package``, sorted."""
    return sorted(p.name.removesuffix(SUFFIX) for p in resources.files(package).iterdir() if p.name.endswith(SUFFIX))


def shipped_path(package: str, name: str) -> Path | None:
    """The file of the shipped ``name`` (``.yaml`` optional) in ``package``, or None.

    Installed packages live on a file system (pip never installs zipped), so the resource is a
    real path that the readers, the demo's stage hashes and run-folder names can use.
    """
    stem = name.removesuffix(SUFFIX)
    if not stem or os.sep in stem or (os.altsep and os.altsep in stem) or stem not in shipped_names(package):
        return None
    return Path(os.fspath(resources.files(package).joinpath(stem + SUFFIX)))
