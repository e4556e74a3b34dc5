"""Atomic writes: default permissions without touching the process umask, fsync before and after
the rename, nothing left behind on failure."""

from __future__ import annotations

import os
import stat

import pytest

from mosaic.core import fileio
from mosaic.core.fileio import atomic_path, current_umask, give_default_permissions, write_text_atomic


SET_UMASK = os.umask  # kept: a test below replaces os.umask, and fixtures tear down in any order


@pytest.fixture
def umask_027():
    previous = SET_UMASK(0o027)
    try:
        yield 0o027
    finally:
        SET_UMASK(previous)


def test_current_umask_reads_the_mask(umask_027):
    assert current_umask() == 0o027


def test_the_umask_is_never_set(tmp_path, monkeypatch, umask_027):
    def forbidden(mask):  # any call would briefly change the mask for every thread
        raise AssertionError("os.umask called")

    monkeypatch.setattr(os, "umask", forbidden)
    out = write_text_atomic(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    folder = tmp_path / "staged"
    folder.mkdir(mode=0o700)
    give_default_permissions(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750


def test_the_probe_agrees_with_proc(tmp_path, umask_027, monkeypatch):
    real_open = open

    def no_proc(file, *args, **kwargs):
        if str(file).startswith("/proc/"):
            raise OSError("no /proc here")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_proc)
    assert current_umask() == 0o027


def test_content_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", None))
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    monkeypatch.setattr(fileio.os, "replace", replace)
    write_text_atomic(tmp_path / "b.txt", "hello")
    assert events == [("fsync", False), ("replace", None), ("fsync", True)]
    assert (tmp_path / "b.txt").read_text() == "hello"


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "c.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]
