"""One process per run folder: a lock file that names its holder.

Two ``mosaic train`` into the same folder would write the same checkpoints and metrics over each
other. :func:`hold_folder` takes ``RUN/run.lock`` for the life of the run:

* on Linux and macOS with ``flock``: the kernel releases the lock when the holder exits, however
  it exits (a crash, ``kill -9``, a node's job killed), so a lock left behind by a dead process is
  recognised as stale by simply being free, even though its file is still there;
* where the file system refuses ``flock`` (some network file systems): the file is created
  exclusively and holds the holder's PID, host and process start time; a holder on this host
  that no longer runs (or whose PID now belongs to another process) is stale and replaced, and
  a holder on another host cannot be checked, so the message says which file to delete.

The file records ``pid``, ``host``, ``since`` (UTC) and, on Linux, the process start time, so a
refusal names the holder: ``run folder runs/x is in use by PID 4242 on gpu07 since 2026-12-07
11:50:03 UTC``. It is removed when the holder releases it. Torch-free.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator

from mosaic.core.errors import MosaicError

__all__ = ["LOCK_NAME", "RunFolderBusy", "hold_folder", "read_holder"]

LOCK_NAME = "run.lock"
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunFolderBusy(MosaicError):
    """Another process holds the run folder."""

    def __init__(self, folder: Path, holder: dict[str, Any], fix: str):
        who = f"PID {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
        super().__init__(f"run folder {folder} is in use by another mosaic process ({who}): {fix}")
        self.holder = holder


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a PID reused by another process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _me() -> dict[str, Any]:
    pid = os.getpid()
    since = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {"pid": pid, "host": socket.gethostname(), "since": since, "process_start": _process_start(pid)}


def read_holder(path: str | os.PathLike) -> dict[str, Any]:
    """What a lock file says of its holder (``{}`` when empty or unreadable)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _alive_here(holder: dict[str, Any]) -> bool:
    """Whether the holder (of this host) still runs: its PID exists and started when it said."""
    try:
        pid = int(holder["pid"])
        os.kill(pid, 0)
    except (KeyError, ValueError, TypeError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # another user's process: it exists
    recorded, now = holder.get("process_start"), _process_start(pid)
    return recorded is None or now is None or str(recorded) == now


def _write(fd: int, info: dict[str, Any]) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(info) + "\n").encode())


def _take_flock(path: Path, folder: Path) -> int | None:
    """The open, flock-ed lock file; ``None`` when the file system has no flock."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(path)
            os.close(fd)
            raise RunFolderBusy(folder, holder, "wait for it to end (or stop it), or choose another --out") from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_FLOCK:
                return None
            raise
        # the holder before us may have removed the file between our open and our lock: the lock
        # must be on the file that the path names now
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _take_exclusive(path: Path, folder: Path) -> int:
    """Without flock: create the file exclusively, replacing it when its holder is known dead."""
    for _ in range(3):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = read_holder(path)
            if holder.get("host") == socket.gethostname() and not _alive_here(holder):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # stale: its holder no longer runs
                continue
            elsewhere = holder.get("host") != socket.gethostname()
            fix = (f"if that process has ended, delete {path} (this file system cannot tell)" if elsewhere
                   else "wait for it to end (or stop it), or choose another --out")
            raise RunFolderBusy(folder, holder, fix) from None
    raise MosaicError(f"cannot take the lock {path}: other processes keep replacing it; choose another --out")


@contextlib.contextmanager
def hold_folder(folder: str | os.PathLike, *, enabled: bool = True) -> Iterator[Path | None]:
    """Hold ``folder`` (created if missing) for the duration of the block; yield the lock file.

    Raises :class:`RunFolderBusy` naming the holder when another process holds it. ``enabled=False``
    (the other processes of a ``torchrun`` job) does nothing: one process holds it for the job.
    """
    if not enabled:
        yield None
        return
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MosaicError(f"cannot create run folder {folder}: {exc.strerror}; choose another --out") from None
    path = folder / LOCK_NAME
    fd = None
    try:
        fd = _take_flock(path, folder) if _has_fcntl() else None
        if fd is None:
            fd = _take_exclusive(path, folder)
        _write(fd, _me())
        yield path
    finally:
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # before the lock goes: a waiting process then opens a new file
            os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if the run left nothing in it


def _has_fcntl() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True
