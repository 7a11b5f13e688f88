"""Input that changes while it is read: notice it, never die of it.

Every :class:`~boltfix.reader.DB` watches its file (:class:`Watch`): the
size and mtime at open, through the descriptor it keeps open, and, with the
small C module ``boltfix._guard`` (loaded by :mod:`boltfix.ccore`), its mapping.
When the file is truncated
while mapped, touching a page past the new end raises SIGBUS; the guard's
handler maps zeros over the lost pages and flags the mapping, so the read goes
on (zeros are never a valid page: the walk reports them as damage) instead of
the process dying.

:func:`raise_if_changed` is called at batch boundaries (the walk's progress
callback) and before anything is committed (repair's rename), and the CLI
calls it once more at the end of every command: a change ends the command
with :class:`~boltfix.errors.FileChanged` (exit 4, "stopped part-way").

Without the C module (no compiler at install, or ``BOLTFIX_NO_GUARD=1``) the
size and mtime checks still run, and in a CLI command (:func:`start_session`)
the file is held with a read lease (``fcntl(F_SETLEASE, F_RDLCK)``,
:func:`lease_input`): another process that
opens it to write or truncates it (``cp`` over it, ``truncate``) is held up
by the kernel until boltfix lets go, or ``/proc/sys/fs/lease-break-time``
seconds (45 by default) have passed, and boltfix is told (SIGIO): the change
is recorded at once, the command stops at its next batch boundary and the
lease goes with the descriptor.  So no page vanishes while it is read.  The
kernel grants no lease on a file that some process has open for writing (a
running etcd), nor to a user who does not own it without CAP_LEASE: then a
page that vanishes between two checks still kills the process with SIGBUS.
``BOLTFIX_PURE_PYTHON=1`` does not turn the guard off: it chooses the walk,
not this.
"""

from __future__ import annotations

import os
import weakref
from typing import List, Optional, Tuple

from boltfix import ccore
from boltfix.errors import FileChanged

#: watches of files still open
_open: "weakref.WeakSet[Watch]" = weakref.WeakSet()
#: (path, reason) of every file seen changing, open or closed since
_changed: List[Tuple[str, str]] = []


def available() -> bool:
    """True when a vanished page is survived (the C guard is loaded)."""
    return ccore.sigbus is not None


class Watch:
    """One open input: its identity at open, its descriptor, its guard slot."""

    leased = False  # a read lease holds writers off (no C guard: lease_input)

    def __init__(self, filename: str, fd: int, mm, leased: bool = False) -> None:
        self.filename = filename
        self.fd: Optional[int] = fd
        # the size the map was made with (the file may shrink before this fstat)
        self.size, self.mtime = len(mm), os.fstat(fd).st_mtime_ns
        self.reason: Optional[str] = None
        self.slot = -1
        if ccore.sigbus is not None:
            view = memoryview(mm)
            try:
                self.slot = ccore.sigbus.register(view)
            finally:
                view.release()
            if self.slot >= 0:
                # the slot lives exactly as long as the mapping: an mmap is
                # unmapped when the object goes (values sliced from it may
                # keep it alive after DB.close)
                _slots[self.slot] = weakref.ref(mm, _unregisterer(self.slot, filename))
        self.leased = leased  # lease_input(fd) said so, before the file was mapped
        _open.add(self)

    def changed(self) -> Optional[str]:
        """Why the file is no longer what was opened, or None."""
        if self.reason is not None or self.fd is None:
            return self.reason
        reason = None
        if self.slot >= 0 and ccore.sigbus.faulted(self.slot):
            reason = _VANISHED
        else:
            st = os.fstat(self.fd)
            if st.st_size != self.size:
                reason = f"its size changed from {self.size:,} to {st.st_size:,} bytes"
            elif st.st_mtime_ns != self.mtime:
                reason = "it was written to"
        if reason is not None:
            self.reason = reason
            _changed.append((self.filename, reason))
        return reason

    def close(self, unmapped: bool) -> None:
        """Last look, then let go (the guard slot goes with the mapping)."""
        if self.fd is None:
            return
        self.changed()
        os.close(self.fd)
        self.fd = None
        if self.slot >= 0 and unmapped:
            _free(self.slot)
            self.slot = -1
        _open.discard(self)

    def __del__(self):  # a DB dropped without close(): still look, then let go
        if self.fd is not None:
            try:
                self.changed()
            finally:
                os.close(self.fd)
                self.fd = None


_BROKEN = ("another process opened it to write or truncated it (held up until "
           "boltfix let go)")


def lease_input(fd: int) -> bool:
    """Without the C guard, in a CLI command: a read lease on ``fd``, its
    break told by SIGIO (see the module's docstring); taken before the file
    is sized and mapped, so that no truncation falls between.  False when
    there is none (the C guard is there, a library's DB, the kernel refuses
    it, or not the main thread, where no signal handler can be set)."""
    import fcntl
    import signal
    import threading

    if ccore.sigbus is not None or not _leasing:
        return False
    if threading.current_thread() is not threading.main_thread() or \
            not hasattr(fcntl, "F_SETLEASE") or os.environ.get("BOLTFIX_NO_LEASE"):
        return False
    # the handler first: SIGIO's default action ends the process
    old = signal.getsignal(signal.SIGIO)
    if old is not _on_lease_break:
        signal.signal(signal.SIGIO, _on_lease_break)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError:  # EAGAIN: open for writing somewhere; EACCES; EINVAL
        return False
    return True


def _on_lease_break(signum, frame) -> None:
    """SIGIO: a leased input is about to change; its writer waits until we
    close it.  Recorded here; the walk stops at its next batch boundary."""
    import fcntl

    for w in list(_open):
        if not w.leased or w.fd is None or w.reason is not None:
            continue
        try:
            broken = fcntl.fcntl(w.fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK
        except OSError:
            broken = True
        if broken:
            w.reason = _BROKEN
            _changed.append((w.filename, _BROKEN))


#: guard slot -> weakref to its mmap, whose callback frees the slot
_slots: dict = {}


_VANISHED = "pages of it vanished while they were read (it was truncated)"


def _free(slot: int) -> bool:
    """Release a slot; True when its mapping had faulted."""
    if _slots.pop(slot, None) is None:
        return False
    faulted = ccore.sigbus.faulted(slot)
    ccore.sigbus.unregister(slot)
    return faulted


def _unregisterer(slot: int, filename: str):
    def gone(_ref):  # the mmap was freed: its fault must not be forgotten
        if _free(slot):
            _changed.append((filename, _VANISHED))
    return gone


#: whether inputs opened now are leased (without the C guard): only inside a
#: CLI command, which ends soon; a library's DB may stay open for long, and
#: would hold every writer of its file up to lease-break-time
_leasing = False


def start_session(lease: bool = False) -> None:
    """Forget files opened and changes seen before now (one CLI command is
    one session; a test or a library user may run many in one process and
    change files between them).  ``lease``: lease the inputs opened from
    now on when there is no C guard (the CLI does)."""
    global _leasing
    _open.clear()
    _changed.clear()
    _leasing = lease


def end_session() -> None:
    """The CLI command is over: inputs opened from now on (by a library user
    or the next test in this process) are not leased, as before it began."""
    global _leasing
    _leasing = False


def first_change() -> Optional[Tuple[str, str]]:
    """(path, reason) of the first input seen changing, after looking at all open ones."""
    for w in list(_open):
        w.changed()
    return _changed[0] if _changed else None


def raise_if_changed() -> None:
    """Raise FileChanged when any input changed while it was read."""
    seen = first_change()
    if seen is not None:
        path, reason = seen
        raise FileChanged(f"{path} changed while it was being read: {reason}")


def batch_boundary(_done: int = 0) -> None:
    """A progress callback: stop at the first batch after a change."""
    raise_if_changed()
