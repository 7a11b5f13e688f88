"""Small text helpers for people (tables, hexdumps), and secret masking.

Whether bytes are shown as text is :mod:`boltfix.record`'s one rule
(:func:`~boltfix.record.as_text`); :func:`name_text` is its line form.
"""

from __future__ import annotations

import re as _re

from boltfix.record import name_text  # noqa: F401  (the one rule, for people)


def short(data, limit: int = 64) -> str:
    """A value shortened for tables."""
    text = name_text(data)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# bcrypt hashes as etcd stores them in authUsers ($2a$10$ + 53 chars)
_BCRYPT = _re.compile(rb"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")


def redact_secrets(data: bytes) -> bytes:
    """Mask password hashes in raw bytes (same length, so offsets stay true)."""
    return _BCRYPT.sub(lambda m: b"*" * len(m.group(0)), bytes(data))


#: a bcrypt hash is 60 bytes: this much on each side of a shown range finds
#: one that straddles its edge (a page boundary, whatever the page size)
_SECRET_REACH = 59


def redact_range(buf, start: int, end: int) -> bytes:
    """``buf[start:end]`` with password hashes masked, including a hash that
    only partly lies inside the range (the bytes around it are looked at too)."""
    lo, hi = max(0, start - _SECRET_REACH), min(len(buf), end + _SECRET_REACH)
    return redact_secrets(buf[lo:hi])[start - lo: end - lo]


def hexdump(data: bytes, base: int = 0, width: int = 16) -> str:
    """A classic hexdump with absolute file offsets; repeated lines folded as '*'."""
    lines = []
    prev = None
    folded = False
    for i in range(0, len(data), width):
        chunk = data[i: i + width]
        if chunk == prev and i + width < len(data):
            if not folded:
                lines.append("*")
                folded = True
            continue
        folded = False
        prev = chunk
        hexpart = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{base + i:08x}  {hexpart:<{width * 3 - 1}}  |{text}|")
    return "\n".join(lines)


def bcrypt_ranges(view):
    """The ranges :func:`redact_secrets` masks, found in windows
    (:func:`boltfix.bigbytes.pattern_ranges`: a huge value is never copied
    whole); None when there are too many to list (mask all)."""
    from boltfix.bigbytes import pattern_ranges

    return pattern_ranges(_BCRYPT, view, 59)  # a bcrypt hash is at most 60 bytes
