"""Writing outputs so that an interrupted run never leaves a half-written file behind, and a full disk
ends in one line (:mod:`mosaic.core.diskspace`) instead of a traceback."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Iterator

from mosaic.core.diskspace import DEFAULT_FIX, SpaceNeed, require_space, write_errors
from mosaic.core.errors import MosaicError


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


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it.

    ``os.umask`` can only be read by setting it, which races with files created meanwhile by
    other threads (a logger's writer, a data-loader). Linux reports the mask in
    ``/proc/self/status``; elsewhere a probe file created with mode 0o777 shows what it removes.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with tempfile.TemporaryDirectory(prefix=".umask-probe.") as folder:
        probe = os.path.join(folder, "probe")
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o777))
        return 0o777 & ~os.stat(probe).st_mode


def give_default_permissions(path: str | os.PathLike) -> None:
    """The permissions a plain ``open()`` / ``mkdir()`` would give ``path``.

    ``mkstemp`` and ``mkdtemp`` create private (0600 / 0700) entries; outputs staged through them
    are meant to be shared like any other file.
    """
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~current_umask())


def _create_temporary_beside(path: Path, parent: Path) -> Path:
    """A new empty file in ``parent`` with the mode a plain ``open()`` gives (the umask applies)."""
    for _ in range(100):
        candidate = parent / f".{path.name}.{secrets.token_hex(6)}.partial"
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free temporary name beside {path}")


def _fsync(path: Path, *, directory: bool = False) -> None:
    """Flush ``path`` to the disk; a directory, so that a rename in it survives a power cut.

    Directories cannot be opened for syncing on every platform (Windows): skipped there.
    """
    try:
        fd = os.open(path, (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if directory else os.O_RDONLY)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, create_parent: bool = False, needed: int | None = None,
                fix: str = DEFAULT_FIX) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path``
    is left exactly as it was before. The file's content reaches the disk before the rename and
    the rename before returning, so after a crash ``path`` holds either the old or the new bytes.

    ``needed`` (bytes, when known) is checked against the free space before anything is written.
    An I/O error of the writes (a full disk, a quota, a read-only file system) leaves as one
    :class:`MosaicError` line naming ``path`` and ``fix`` (how to write elsewhere); see
    :mod:`mosaic.core.diskspace`.
    """
    path = Path(path)
    parent = ensure_writable_dir(path.parent if str(path.parent) else Path("."), create=create_parent)
    if needed is not None:
        require_space([SpaceNeed(path, needed, "file", fix)])
    with write_errors(path, needed=needed, fix=fix):
        tmp = _create_temporary_beside(path, parent)
        try:
            yield tmp
            _fsync(tmp)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync(parent, directory=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, create_parent: bool = False,
                       fix: str = DEFAULT_FIX) -> Path:
    with atomic_path(path, create_parent=create_parent, needed=len(data), fix=fix) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, create_parent: bool = False,
                      fix: str = DEFAULT_FIX) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), create_parent=create_parent, fix=fix)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (used for checkpoint and trace provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()
