"""Writing outputs so that an interrupted run never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from mosaic.errors import MosaicError


def ensure_writable_dir(directory: str | os.PathLike, *, create: bool = False) -> Path:
    """Return ``directory`` as a Path after checking that outputs can be written into it."""
    directory = Path(directory)
    if create:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MosaicError(f"cannot create output folder {directory}: {exc.strerror}") from None
    if not directory.is_dir():
        raise MosaicError(f"output folder {directory} does not exist: create it or choose another path")
    if not os.access(directory, os.W_OK):
        raise MosaicError(f"output folder {directory} is not writable: choose another path")
    return directory


def give_default_permissions(path: str | os.PathLike) -> None:
    """The permissions a plain ``open()`` / ``mkdir()`` would give ``path``.

    ``mkstemp`` and ``mkdtemp`` create private (0600 / 0700) entries; outputs staged through them
    are meant to be shared like any other file.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, create_parent: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path``
    is left exactly as it was before.
    """
    path = Path(path)
    parent = ensure_writable_dir(path.parent if str(path.parent) else Path("."), create=create_parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=parent)
    except OSError as exc:
        raise MosaicError(f"cannot write {path}: {exc.strerror}; choose another output path") from None
    os.close(fd)
    tmp = Path(tmp_name)
    give_default_permissions(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, create_parent: bool = False) -> Path:
    with atomic_path(path, create_parent=create_parent) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, create_parent: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), create_parent=create_parent)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (used for checkpoint and trace provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()
