"""The two kinds of trouble: :class:`BoltError` (an operation cannot go on)
and :class:`Finding` (one problem in the file, as data), kept apart on purpose:

* :class:`BoltError` is raised when an *operation* cannot go on (the file
  cannot be opened, a page asked for by id does not exist, a page changed
  under the map).  It carries where it happened (page id, byte offset,
  field) when that is known, so the CLI prints one line, exit 2, instead of
  a traceback; :class:`CannotOpen` is the file-level case.
  :func:`parse_guard` wraps a parse of untrusted bytes (today the page
  header read by ``DB.page``) so that a ``struct.error``, ``construct``
  error, ``IndexError`` ... comes out as a located ``BoltError``.  Anything
  else that escapes is a bug: the CLI's ``guarded`` turns it into exit 3.
* :class:`Finding` is *data*: one problem found in the file (stable code,
  severity, page, the pages leading to it, bucket path, detail).  Walks
  report findings and keep going, so a checker sees every problem, not the
  first.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass, field
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
def parse_guard(what: str, *, page: Optional[int] = None, offset: Optional[int] = None,
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


ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One problem in a file: a stable code, where it is, and what it means."""

    code: str
    message: str
    severity: str = ERROR
    page: Optional[int] = None
    #: page ids from the bucket's root page down to ``page`` (``"path"`` in JSON)
    pages: tuple = ()
    #: bucket names (bytes) from the top level down
    bucket: tuple = ()
    #: extra machine-readable facts (field, offset, key range, bbolt wording)
    detail: dict = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict:
        from boltfix.render import name_text

        out = {
            "code": self.code,
            "severity": self.severity,
            "page": self.page,
            "path": list(self.pages),
            "bucket": [name_text(b) for b in self.bucket],
            "message": self.message,
        }
        if self.detail:
            out["detail"] = {k: (name_text(v) if isinstance(v, (bytes, bytearray)) else v)
                             for k, v in self.detail.items()}
        return out
