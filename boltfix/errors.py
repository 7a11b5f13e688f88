"""Errors: an operation cannot go on.  Kept apart on purpose from
:class:`~boltfix.findings.Finding` (one problem in the file, as data):

* :class:`BoltError` is raised when an *operation* cannot go on (the file
  cannot be opened, a page asked for by id does not exist, a page changed
  under the map).  It carries where it happened (page id, byte offset,
  field) when that is known, so the CLI prints one line, exit 2, instead of
  a traceback; :class:`CannotOpen` is the file-level case.
  :func:`located` wraps a parse of untrusted bytes (today the page
  header read by ``DB.page``) so that a ``struct.error``, ``construct``
  error, ``IndexError`` ... comes out as a located ``BoltError``.  Anything
  else that escapes is a bug: the CLI's ``guarded`` turns it into exit 3.
* a :class:`~boltfix.findings.Finding` is *data*: one problem found in
  the file (:mod:`boltfix.findings`).  Walks report findings and keep
  going, so a checker sees every problem, not the first.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Optional

import construct


class BoltError(Exception):
    """A bbolt file could not be read at some place."""

    def __init__(self, message: str, *, page: Optional[int] = None,
                 offset: Optional[int] = None, field: Optional[str] = None):
        self.message = message
        self.page = page
        self.offset = offset
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.page is not None:
            where.append(f"page {self.page}")
        if self.offset is not None:
            where.append(f"offset {self.offset:#x}")
        if self.field is not None:
            where.append(f"field {self.field}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class CannotOpen(BoltError):
    """The file is missing, unreadable, empty or not a regular file."""


class FileChanged(BoltError):
    """The input changed (shrank, was rewritten) while it was read: what was
    produced so far is incomplete.  See :mod:`boltfix.guard`."""


class OutputError(BoltError):
    """The output could not be written (full or read-only filesystem, no
    permission...): the user's environment, not damage; nothing is left."""


@contextlib.contextmanager
def located(what: str, *, page: Optional[int] = None, offset: Optional[int] = None,
            field: Optional[str] = None):
    """Turn any parse failure inside the block into a located BoltError."""
    try:
        yield
    except BoltError:
        raise
    except (struct.error, construct.ConstructError, IndexError, ValueError,
            OverflowError) as exc:
        raise BoltError(f"cannot parse {what}: {exc}", page=page, offset=offset,
                        field=field) from exc

