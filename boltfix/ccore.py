"""Loading the optional C core: the one place that imports it.

Two C modules, both optional (``setup.py`` builds them when a compiler is
there):

* :data:`speedups` (``boltfix/_speedups.c``): hot loops of the walk, the
  writer and dump.  It never decides what is damage, and results are the
  same without it: then, or with ``BOLTFIX_PURE_PYTHON=1``, the
  pure-Python code does everything (slower).
* :data:`sigbus` (``boltfix/_guard.c``): the SIGBUS handler that lets a
  read survive an input truncated under its map (:mod:`boltfix.guard`
  uses it; ``BOLTFIX_NO_GUARD=1`` leaves it out).  ``BOLTFIX_PURE_PYTHON``
  does not turn it off: it chooses the walk, not this.

Modules read ``ccore.speedups`` when they call it (not a copy taken at
import), so a test can swap it (``monkeypatch.setattr(ccore, "speedups",
None)``).
"""

from __future__ import annotations

import os

from boltfix.errors import BoltError


def _load_speedups():
    if os.environ.get("BOLTFIX_PURE_PYTHON"):
        return None
    try:
        from boltfix import _speedups
    except ImportError:
        return None
    return _speedups


def _load_sigbus():
    if os.environ.get("BOLTFIX_NO_GUARD"):
        return None
    try:
        from boltfix import _guard
    except ImportError:
        return None
    return _guard


#: the C core of the walk, writer and dump, or None
speedups = _load_speedups()
#: the C SIGBUS guard, or None
sigbus = _load_sigbus()


def fast(name: str):
    """The C core's function ``name``, or None (no C core, or one without it)."""
    return getattr(speedups, name, None)


def call(fn, *args):
    """Call a C-core function.  Its ValueError means a page no longer holds
    what an earlier look at it saw (the file changed under the map); that is
    the library's own error, like every other unreadable page."""
    try:
        return fn(*args)
    except ValueError as exc:
        raise BoltError(str(exc)) from exc
