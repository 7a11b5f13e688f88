"""Write-behind for the writer's output: keep its pages from piling up in the cache.

A repair writes a file as big as its input (up to etcd's 8 GiB quota) in one
sequential pass.  Left to itself the kernel keeps every written page cached:
dirty ones until the dirty limit throttles the writer, clean ones until
reclaim frees them, and each new page of output takes a page of memory that
was free.  On the machine measured (benchmarks/RESULTS.md: a VM whose
balloon hands free memory back to the host, so a page is slow to fill the
first time after) that last cost grows faster than the file: 2 GB -> 8 GB
took ``cp FILE NEW && sync`` 6-8x the CPU, almost all of it the kernel
copying into fresh cache pages.

So every ``WINDOW`` bytes the output's newest window is handed to writeback
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``: starts the disk write, does not
wait), the window before it is waited for (it has had a window's worth of the
writer's work to finish) and dropped from the cache (``posix_fadvise
(POSIX_FADV_DONTNEED)``: clean pages only).  About two windows of output
are in the cache (a window ends at the first write past it), the same pages
are reused for the next ones, and the disk writes while the writer computes.
The price: repair's self-check then reads the file from the disk
(:class:`ReadBehind` drops it again behind the walk), about 1.3 GB/s on the
machine measured; hence the first ``KEEP`` bytes are left alone.  The bytes
written are unchanged, and the caller still fsyncs the file before it is
renamed: this only changes *when* the kernel writes them, not *whether*
they are durable.

Linux only; ``sync_file_range`` is not in :mod:`os`, so it is called through
:mod:`ctypes`.  Without it (another libc, another platform) ``fdatasync`` plus
``posix_fadvise`` does the same with less overlap; without those nothing is
done.  A file object without a regular file behind it (BytesIO, a pipe) is
written as before.  Through a buffered file object, bytes still in its buffer
are simply not dropped yet: ``DONTNEED`` never drops a dirty page, so this can
only be less effective, never lose data.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from typing import Callable, Optional

#: bytes between write-behind steps (measured on 2 and 8 GB: 8-64 MB are within
#: noise of each other; 32 MB keeps at most 64 MB of output cached)
WINDOW = 32 << 20

#: the first bytes of a file are left to the kernel as any file's: below this
#: the cache holds the output easily, and reading it back from the disk in the
#: self-check cost more than write-behind saved (1 GB etcd-shaped file: +0.25 s
#: CPU of 1.8 s).  Beyond it the cache fills, and dropping pays.
KEEP = 1 << 30

_SYNC_FILE_RANGE_WAIT_BEFORE = 1
_SYNC_FILE_RANGE_WRITE = 2
_SYNC_FILE_RANGE_WAIT_AFTER = 4


def _load_sync_file_range() -> Optional[Callable]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (ImportError, OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def sync_file_range(fd: int, offset: int, nbytes: int, flags: int) -> None:
        if fn(fd, offset, nbytes, flags) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return sync_file_range


_sync_file_range: Optional[Callable] = None
_loaded = False


def _sfr() -> Optional[Callable]:
    global _sync_file_range, _loaded
    if not _loaded:
        _sync_file_range, _loaded = _load_sync_file_range(), True
    return _sync_file_range


def _regular_fd(fileobj) -> Optional[int]:
    try:
        fd = fileobj.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


class WriteBehind:
    """Follows a file written sequentially from ``start``; :meth:`wrote` after
    each write of ``n`` bytes.  Errors of the writeback (EIO, ENOSPC) are
    raised here: the kernel reports them once, and a later fsync would not
    see them again."""

    def __init__(self, fileobj, start: int, window: Optional[int] = None,
                 keep: Optional[int] = None) -> None:
        self._fd = _regular_fd(fileobj) if hasattr(os, "posix_fadvise") else None
        self._sfr = _sfr() if self._fd is not None else None
        if self._sfr is None and not hasattr(os, "fdatasync"):
            self._fd = None
        self._window = WINDOW if window is None else window
        after = start + (KEEP if keep is None else keep)  # nothing done below it
        self._pos = start      # end of what was written
        self._started = after  # end of what writeback was started for
        self._dropped = after  # end of what was written back and dropped

    @property
    def active(self) -> bool:
        """Whether writeback is started and dropped as the file grows."""
        return self._fd is not None

    def wrote(self, n: int) -> None:
        """``n`` more bytes were written: past a window, start writeback and drop
        what is written back."""
        self._pos += n
        if self._fd is not None and self._pos - self._started >= self._window:
            self._step()

    def _step(self) -> None:
        fd, pos, started, dropped = self._fd, self._pos, self._started, self._dropped
        if self._sfr is not None:
            # start the newest window; wait for the one before, then drop it
            self._sfr(fd, started, pos - started, _SYNC_FILE_RANGE_WRITE)
            if started > dropped:
                self._sfr(fd, dropped, started - dropped, _SYNC_FILE_RANGE_WAIT_BEFORE
                          | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER)
                os.posix_fadvise(fd, dropped, started - dropped, os.POSIX_FADV_DONTNEED)
                self._dropped = started
        else:
            os.fdatasync(fd)  # what is dirty is this window: write it, wait
            os.posix_fadvise(fd, started, pos - started, os.POSIX_FADV_DONTNEED)
            self._dropped = pos
        self._started = pos



class ReadBehind:
    """A walk ``progress`` callback (pages walked so far) that drops the pages
    of ``db``'s file the walk has gone past, for a file :class:`BoltWriter`
    wrote: its pages lie in the order a walk visits them, bar a branch page
    a few hundred pages after the first of its leaves.

    repair's self-check reads back the file write-behind has just dropped;
    without this the read would fill the cache with all of it again.  A
    page dropped before the walk reached it is read again from the disk:
    slower, never wrong (the map is the file's, read-only and shared).
    :meth:`of` gives None where it cannot be done."""

    def __init__(self, mm, fd: int, page_size: int, window: int, keep: int) -> None:
        self._mm, self._fd, self._ps, self._window = mm, fd, page_size, window
        self._dropped = keep  # as the writer: the first KEEP bytes stay

    @classmethod
    def of(cls, db, window: Optional[int] = None,
           keep: Optional[int] = None) -> Optional["ReadBehind"]:
        """A progress callback dropping what a walk of ``db`` has read, or None
        where it cannot be done (no map, no fadvise)."""
        mm = getattr(db, "_mm", None)
        watch = getattr(db, "_watch", None)
        fd = getattr(watch, "fd", None)
        if mm is None or fd is None or not hasattr(mm, "madvise") \
                or not hasattr(os, "posix_fadvise"):
            return None
        return cls(mm, fd, db.page_size, WINDOW if window is None else window,
                   KEEP if keep is None else keep)

    def __call__(self, pages_walked: int) -> None:
        # keep two windows behind the walk's position cached
        w = self._window
        upto = (pages_walked * self._ps - 2 * w) // w * w
        if upto - self._dropped < w:
            return
        import mmap

        start, n = self._dropped, upto - self._dropped
        try:
            self._mm.madvise(mmap.MADV_DONTNEED, start, n)  # unmap, so that it can go
            os.posix_fadvise(self._fd, start, n, os.POSIX_FADV_DONTNEED)
        except (OSError, ValueError):
            return
        self._dropped = upto


__all__ = ["WriteBehind", "ReadBehind", "WINDOW", "KEEP"]
