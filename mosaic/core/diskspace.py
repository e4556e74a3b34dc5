"""A write that cannot happen: refused before the work, or reported in one line after it failed.

Two halves of one rule (every writer in mosaic goes through them, most via
:func:`mosaic.core.fileio.atomic_path`):

* :func:`require_space` compares what a command is about to write with the free space of each
  target's file system, *before* the work that produces it (a trace's hour on a GPU, a training
  run), and refuses with one line when it cannot fit;
* :func:`write_errors` turns an operating-system error of a write (no space left, quota, read-only
  file system, permission) into one :class:`MosaicError` line naming the path, the bytes needed when
  known, the free space and the fix, instead of a traceback.

Libraries hide the ``OSError`` in different ways: ``torch.save`` into a Python file re-raises it as a
``RuntimeError`` whose context is the ``OSError``; ``numpy.ndarray.tofile`` raises an ``OSError``
without an errno. :func:`write_error` finds the first and reads the second as a short write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from mosaic.core.errors import MosaicError

__all__ = ["DEFAULT_FIX", "OUT_FIX", "SpaceNeed", "format_bytes", "free_space", "require_space", "reserve_file",
           "write_error", "write_errors"]

DEFAULT_FIX = "write to a folder on another disk"
OUT_FIX = "pass --out on another disk"  # the commands whose output is --out: trace, report, study, synth, get-attributes

# errors that more free space (or a smaller output) would cure, and how the system calls them
_SPACE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    getattr(errno, "EDQUOT", -1): "disk quota exceeded",  # Windows has no EDQUOT
    errno.EFBIG: "file too large for this file system",
}
_PLACE_ERRORS = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``: sizes in the messages users read."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _existing_folder(path: Path) -> Path:
    """The nearest folder at or above ``path`` that exists (the one whose file system will hold it)."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(".")


def free_space(path: str | os.PathLike) -> tuple[Path, int]:
    """(the existing folder that decides, bytes free to this user) for a file or folder still to be written."""
    folder = _existing_folder(Path(path).absolute())
    return folder, shutil.disk_usage(folder).free


@dataclass(frozen=True)
class SpaceNeed:
    """``nbytes`` to be written at ``path`` (a file, or a folder that will hold them).

    ``what`` names it in a message (``"trace"``, ``"image cache"``); ``fix`` says how to put it
    elsewhere (``"pass --out on another disk"``).
    """

    path: Path
    nbytes: int
    what: str
    fix: str = DEFAULT_FIX


def require_space(needs: Iterable[SpaceNeed]) -> None:
    """Refuse (one :class:`MosaicError` line) when ``needs`` do not fit the free space of their file systems.

    Needs on one file system are added up, so a trace and the trunk tokens it spills to the same
    disk are compared with that disk's free space together. Each file takes at least one block.
    """
    merged: dict[tuple[Path, str, str], int] = {}  # several files of one kind in one folder: one need
    for need in needs:
        key = (Path(need.path), need.what, need.fix)
        merged[key] = merged.get(key, 0) + int(need.nbytes)
    by_device: dict[int, list[tuple[SpaceNeed, Path]]] = {}
    for (path, what, fix), nbytes in merged.items():
        if nbytes > 0:
            folder = _existing_folder(path.absolute())
            by_device.setdefault(os.stat(folder).st_dev, []).append((SpaceNeed(path, nbytes, what, fix), folder))
    for group in by_device.values():
        folder = group[0][1]
        block = getattr(os.statvfs(folder), "f_frsize", 0) if hasattr(os, "statvfs") else 0
        total = sum(_round_up(need.nbytes, block) for need, _ in group)
        free = shutil.disk_usage(folder).free
        if total > free:
            parts = " and ".join(f"the {need.what} {need.path} ({format_bytes(need.nbytes)})" for need, _ in group)
            if len(group) > 1:
                parts += f", together {format_bytes(total)}"
            fixes = "; or ".join(dict.fromkeys(need.fix for need, _ in group))
            raise MosaicError(f"not enough space for {parts}: {format_bytes(free)} free in {folder}; free space there, or {fixes}")


def _round_up(n: int, block: int) -> int:
    return -(-n // block) * block if block > 0 else n


def _os_error(exc: BaseException | None) -> OSError | None:
    """The OSError behind ``exc``: itself, or one in the chain it reports (torch wraps it).

    A MosaicError already says what went wrong, and a context suppressed (``from None``) is not
    part of the error, so neither is looked into.
    """
    seen = set()
    while exc is not None and id(exc) not in seen and not isinstance(exc, MosaicError):
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ if exc.__cause__ is not None or exc.__suppress_context__ else exc.__context__
    return None


def write_error(path: str | os.PathLike, exc: BaseException, *, needed: int | None = None,
                fix: str = DEFAULT_FIX) -> MosaicError | None:
    """The one-line error for a failed write of ``path``; ``None`` when ``exc`` is not an I/O error
    (a :class:`MosaicError` included: it is one line already).

    ``needed``: the bytes the write takes, when known. ``fix``: how to put the output elsewhere.
    """
    os_error = _os_error(exc)
    if os_error is None:
        return None
    path = Path(path)
    code = os_error.errno
    if code is None and needed:  # a short write reported without errno (numpy's tofile)
        code = errno.ENOSPC if free_space(path)[1] < needed else None
    if code in _SPACE_ERRORS:
        folder, free = free_space(path)
        amount = f"{format_bytes(needed)} needed, " if needed else ""
        return MosaicError(
            f"cannot write {path}: {_SPACE_ERRORS[code]} ({amount}{format_bytes(free)} free in {folder}); "
            f"free space there, or {fix}"
        )
    if code in _PLACE_ERRORS:
        return MosaicError(f"cannot write {path}: {_PLACE_ERRORS[code]}; {fix}")
    reason = os_error.strerror or str(os_error) or type(os_error).__name__
    return MosaicError(f"cannot write {path}: {reason}; {fix}")


@contextlib.contextmanager
def write_errors(path: str | os.PathLike, *, needed: int | None = None, fix: str = DEFAULT_FIX) -> Iterator[None]:
    """Inside: any I/O error of the writes (see :func:`write_error`) leaves as one MosaicError line.

    MosaicErrors and errors that are not I/O errors pass unchanged.
    """
    try:
        yield
    except MosaicError:
        raise
    except Exception as exc:
        error = write_error(path, exc, needed=needed, fix=fix)
        if error is None:
            raise
        raise error from None


def reserve_file(path: str | os.PathLike, nbytes: int) -> None:
    """Allocate the blocks of ``path`` up to ``nbytes`` now, so that writes through a memory map cannot fail later.

    A memory-mapped file is created sparse; a page the full disk cannot back kills the process
    with SIGBUS instead of raising. Here the shortage raises ``OSError(ENOSPC)`` at once. Where the
    platform or file system cannot allocate ahead, the free-space check must do.
    """
    if not hasattr(os, "posix_fallocate") or nbytes <= 0:
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    finally:
        os.close(fd)
