"""Write-behind (boltfix.writebehind): the writer's output leaves the page cache
as the disk takes it, and repair's self-check drops what it has read.

What must hold: the bytes written are the same with and without it (every
fixture, every crafted damage kind, small windows so that it really steps),
the dropped ranges follow the written ones without a gap, an error of the
writeback stops the repair with nothing written, platforms without the calls
write as before, and the self-check finds the same with the read-behind.
"""

from __future__ import annotations

import errno
import io
import os
import sys

import pytest

from boltfix import writebehind as WB
from boltfix.check import check
from boltfix.errors import OutputError
from boltfix.reader import DB
from boltfix.repair import repair
from boltfix.writer import BoltWriter
from support import REPO, damage

FIXTURES = sorted((REPO / "fixtures" / "bbolt").glob("*.db")) + sorted(
    (REPO / "fixtures" / "etcd").glob("etcd-*.db"))
SMALL = 16 << 10  # a window of 4 pages: every fixture steps many times

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="sync_file_range and fadvise are Linux's")


def _spy_fadvise(monkeypatch):
    calls = []
    real = os.posix_fadvise

    def spy(fd, off, n, advice):
        calls.append((off, n, advice))
        return real(fd, off, n, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    return calls


def _repair_bytes(src, out):
    try:
        repair(src, out, force=True)
    except Exception as exc:  # NothingRecoverable and the like: both ways alike
        return type(exc).__name__
    return out.read_bytes()


def _with_and_without(src, tmp_path, monkeypatch):
    """(bytes without write-behind, bytes with a small window, fadvise calls)."""
    with monkeypatch.context() as m:
        m.setattr(WB.WriteBehind, "wrote", lambda self, n: None)
        m.setattr(WB.ReadBehind, "of", classmethod(lambda cls, db, window=None: None))
        plain = _repair_bytes(src, tmp_path / "plain.db")
    monkeypatch.setattr(WB, "WINDOW", SMALL)
    monkeypatch.setattr(WB, "KEEP", 0)
    # the writer's chunks (4 MB) would be bigger than these files
    monkeypatch.setitem(BoltWriter.__init__.__kwdefaults__, "chunk_size", 4096)
    calls = _spy_fadvise(monkeypatch)
    behind = _repair_bytes(src, tmp_path / "behind.db")
    return plain, behind, calls


def _assert_contiguous(calls, upto):
    """The DONTNEED ranges of the output start at 0, leave no gap, reach upto."""
    ranges = [(off, n) for off, n, advice in calls if advice == os.POSIX_FADV_DONTNEED]
    assert ranges, "nothing was dropped"
    end = 0
    for off, n in ranges:
        assert off == end, (off, end)
        assert n > 0
        end = off + n
    assert end >= upto, (end, upto)


@linux_only
@pytest.mark.parametrize("src", FIXTURES, ids=lambda p: p.name)
def test_fixture_bytes_are_the_same(src, tmp_path, monkeypatch):
    plain, behind, _ = _with_and_without(src, tmp_path, monkeypatch)
    assert behind == plain


@linux_only
@pytest.mark.parametrize("kind", sorted(damage.KINDS))
def test_damage_bytes_are_the_same(kind, tmp_path, monkeypatch):
    k = damage.KINDS[kind]
    src = damage.copy_fixture(k.shape, tmp_path, "damaged.db")
    k.apply(src)
    plain, behind, _ = _with_and_without(src, tmp_path, monkeypatch)
    assert behind == plain


def _big_file(path, keys=3000, value=200):
    with open(path, "wb") as f:
        w = BoltWriter(f)
        w.begin_bucket(b"b")
        for i in range(keys):
            w.put(i.to_bytes(8, "big"), bytes([i % 251]) * value)
        w.end_bucket()
        w.close()
    return path


@linux_only
def test_written_ranges_are_dropped_in_order(tmp_path, monkeypatch):
    calls = _spy_fadvise(monkeypatch)
    with open(tmp_path / "out.db", "wb") as f:
        w = BoltWriter(f, chunk_size=4096)
        w._wb = WB.WriteBehind(f, 0, window=SMALL, keep=0)
        assert w._wb.active
        w.begin_bucket(b"b")
        for i in range(3000):
            w.put(i.to_bytes(8, "big"), bytes([i % 251]) * 200)
        w.end_bucket()
        stats = w.close()
    # all but the last two windows (still on their way to the disk) are gone
    _assert_contiguous(calls, stats.file_size - 3 * SMALL)
    plain = _big_file(tmp_path / "plain.db")
    assert (tmp_path / "out.db").read_bytes() == plain.read_bytes()


@linux_only
def test_repair_drops_what_it_wrote(tmp_path, monkeypatch):
    src = _big_file(tmp_path / "src.db", keys=20000)
    plain, behind, calls = _with_and_without(src, tmp_path, monkeypatch)
    assert behind == plain
    # the writer's drops run from 0 up to its last two steps (a step is a
    # write of the writer's, a window or more); then the self-check's drops
    # of what it read start again from 0
    restart = next(i for i, (off, _, _) in enumerate(calls) if i and off == 0)
    _assert_contiguous(calls[:restart], len(plain) // 2)
    _assert_contiguous(calls[restart:], 0)


@linux_only
def test_the_first_keep_bytes_are_left_alone(tmp_path, monkeypatch):
    """Below KEEP the output is any file (nothing started, nothing dropped);
    beyond it the drops start at KEEP, for the writer and the read-back."""
    monkeypatch.setattr(WB, "WINDOW", SMALL)
    calls = _spy_fadvise(monkeypatch)
    _big_file(tmp_path / "default.db")  # ~0.7 MB, far below the default KEEP
    assert calls == []
    keep = 40 * 4096
    monkeypatch.setattr(WB, "KEEP", keep)
    out = _big_file(tmp_path / "kept.db", keys=20000)
    drops = [(off, n) for off, n, advice in calls if advice == os.POSIX_FADV_DONTNEED]
    assert drops and drops[0][0] == keep
    assert all(off >= keep for off, _ in drops)
    calls.clear()
    with DB(out) as db:
        check(db, progress=WB.ReadBehind.of(db, window=SMALL))
    assert calls and min(off for off, _, _ in calls) == keep


@linux_only
def test_without_sync_file_range_fdatasync_does_it(tmp_path, monkeypatch):
    monkeypatch.setattr(WB, "_sfr", lambda: None)
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    calls = _spy_fadvise(monkeypatch)
    monkeypatch.setattr(WB, "WINDOW", SMALL)
    monkeypatch.setattr(WB, "KEEP", 0)
    out = _big_file(tmp_path / "fallback.db")
    assert synced, "fdatasync never ran"
    _assert_contiguous(calls, out.stat().st_size - 2 * SMALL)
    monkeypatch.undo()
    assert out.read_bytes() == _big_file(tmp_path / "plain.db").read_bytes()


def test_without_fadvise_nothing_is_done(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "posix_fadvise", raising=False)
    with open(tmp_path / "x.db", "wb") as f:
        assert not WB.WriteBehind(f, 0).active
    out = _big_file(tmp_path / "x.db")
    monkeypatch.undo()
    assert out.read_bytes() == _big_file(tmp_path / "plain.db").read_bytes()


def test_not_a_regular_file_is_written_as_before():
    buf = io.BytesIO()
    w = BoltWriter(buf)
    assert not w._wb.active
    w.begin_bucket(b"b")
    w.put(b"k", b"v")
    w.end_bucket()
    assert w.close().file_size == len(buf.getvalue())
    r, wfd = os.pipe()
    try:
        with os.fdopen(wfd, "wb", closefd=False) as pipe:
            assert not WB.WriteBehind(pipe, 0).active
    finally:
        os.close(r)
        os.close(wfd)


@linux_only
def test_writeback_error_stops_the_repair(tmp_path, monkeypatch):
    """EIO from the writeback is the kernel's one report of it (a later fsync
    would not repeat it): repair must stop there, with nothing left behind."""
    src = _big_file(tmp_path / "src.db")
    monkeypatch.setattr(WB, "WINDOW", SMALL)
    monkeypatch.setattr(WB, "KEEP", 0)
    monkeypatch.setitem(BoltWriter.__init__.__kwdefaults__, "chunk_size", 4096)

    def eio(fd, off, n, flags):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(WB, "_sfr", lambda: eio)
    out = tmp_path / "out" / "new.db"
    out.parent.mkdir()
    with pytest.raises(OutputError, match="Input/output error"):
        repair(src, out)
    assert list(out.parent.iterdir()) == []


@linux_only
def test_read_behind_check_finds_the_same(tmp_path, monkeypatch):
    src = _big_file(tmp_path / "src.db", keys=40000)  # > 1024 pages: progress runs
    calls = _spy_fadvise(monkeypatch)
    for path in [src] + FIXTURES:
        with DB(path) as db:
            plain = check(db)
        with DB(path) as db:
            behind = WB.ReadBehind.of(db, window=SMALL, keep=0)
            assert behind is not None
            seen = check(db, progress=behind)
        assert [f.message for f in seen.findings] == [f.message for f in plain.findings]
        assert seen.stats == plain.stats
    # the big file was dropped behind the walk (progress comes every 1024 pages)
    assert any(advice == os.POSIX_FADV_DONTNEED for _, _, advice in calls)
