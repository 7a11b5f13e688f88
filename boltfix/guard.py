"""Input that changes while it is read: notice it, never die of it.

Every :class:`~boltfix.reader.DB` watches its file (:class:`Watch`): the
size and mtime at open, through the descriptor it keeps open, and, with the
small C module ``boltfix._guard``, its mapping.  When the file is truncated
while mapped, touching a page past the new end raises SIGBUS; the guard's
handler maps zeros over the lost pages and flags the mapping, so the read goes
on (zeros are never a valid page: the walk reports them as damage) instead of
the process dying.

:func:`raise_if_changed` is called at batch boundaries (the walk's progress
callback) and before anything is committed (repair's rename), and the CLI
calls it once more at the end of every command: a change ends the command
with :class:`~boltfix.errors.FileChanged` (exit 4, "stopped part-way").

Without the C module (no compiler at install, or ``BOLTFIX_NO_GUARD=1``) the
size and mtime checks still run, but a page that vanishes between two checks
still kills the process with SIGBUS.  ``BOLTFIX_PURE_PYTHON=1`` does not turn
the guard off: it chooses the walk, not this.
"""

from __future__ import annotations

import os
import weakref
from typing import List, Optional, Tuple

from boltfix.errors import FileChanged


def _load():
    if os.environ.get("BOLTFIX_NO_GUARD"):
        return None
    try:
        from boltfix import _guard
    except ImportError:
        return None
    return _guard


_c = _load()

#: watches of files still open
_open: "weakref.WeakSet[Watch]" = weakref.WeakSet()
#: (path, reason) of every file seen changing, open or closed since
_changed: List[Tuple[str, str]] = []


def available() -> bool:
    """True when a vanished page is survived (the C guard is loaded)."""
    return _c is not None


class Watch:
    """One open input: its identity at open, its descriptor, its guard slot."""

    def __init__(self, path: str, fd: int, mm) -> None:
        self.path = path
        self.fd: Optional[int] = fd
        # the size the map was made with (the file may shrink before this fstat)
        self.size, self.mtime = len(mm), os.fstat(fd).st_mtime_ns
        self.reason: Optional[str] = None
        self.slot = -1
        if _c is not None:
            view = memoryview(mm)
            try:
                self.slot = _c.register(view)
            finally:
                view.release()
            if self.slot >= 0:
                # the slot lives exactly as long as the mapping: an mmap is
                # unmapped when the object goes (values sliced from it may
                # keep it alive after DB.close)
                _slots[self.slot] = weakref.ref(mm, _unregisterer(self.slot, path))
        _open.add(self)

    def changed(self) -> Optional[str]:
        """Why the file is no longer what was opened, or None."""
        if self.reason is not None or self.fd is None:
            return self.reason
        reason = None
        if self.slot >= 0 and _c.faulted(self.slot):
            reason = _VANISHED
        else:
            st = os.fstat(self.fd)
            if st.st_size != self.size:
                reason = f"its size changed from {self.size:,} to {st.st_size:,} bytes"
            elif st.st_mtime_ns != self.mtime:
                reason = "it was written to"
        if reason is not None:
            self.reason = reason
            _changed.append((self.path, reason))
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


#: guard slot -> weakref to its mmap, whose callback frees the slot
_slots: dict = {}


_VANISHED = "pages of it vanished while they were read (it was truncated)"


def _free(slot: int) -> bool:
    """Release a slot; True when its mapping had faulted."""
    if _slots.pop(slot, None) is None:
        return False
    faulted = _c.faulted(slot)
    _c.unregister(slot)
    return faulted


def _unregisterer(slot: int, path: str):
    def gone(_ref):  # the mmap was freed: its fault must not be forgotten
        if _free(slot):
            _changed.append((path, _VANISHED))
    return gone


def start_session() -> None:
    """Forget files opened and changes seen before now (one CLI command is
    one session; a test or a library user may run many in one process and
    change files between them)."""
    _open.clear()
    _changed.clear()


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
