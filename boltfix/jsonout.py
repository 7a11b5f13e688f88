"""JSON output without recursion: what ``json.dumps(data, indent=2)`` prints,
streamed in chunks from an explicit stack.

``json.dumps`` recurses once per nesting level (in C and in Python alike), so
a bucket tree a few hundred levels deep -- bbolt writes such trees without
complaint -- raised RecursionError.  This encoder has one stack frame per open
container on a list, not on the interpreter's stack, and yields the text a
piece at a time, so a large tree is never one string in memory either.  For
data ``json.dumps`` can encode, the text is identical.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import IO, Callable, Iterator, Optional

_CONSTANTS = {None: "null", True: "true", False: "false"}


def iterencode(obj, *, indent: int = 2, default: Optional[Callable] = None,
               ensure_ascii: bool = True) -> Iterator[str]:
    """The text of ``json.dumps(obj, indent=indent, default=default,
    ensure_ascii=ensure_ascii)``, in pieces."""
    string = encode_basestring_ascii if ensure_ascii else encode_basestring
    other = json.JSONEncoder(ensure_ascii=ensure_ascii).encode  # floats
    # frames: [iterator over (key or _NOKEY, value), closing bracket, its indent]
    stack = []
    pending = iter(((_NOKEY, obj),))
    level = 0
    first = True
    close, pad = "", ""
    while True:
        item = next(pending, _END)
        if item is _END:
            if not stack:
                return
            yield ("\n" + pad + close) if not first else close
            pending, close, pad = stack.pop()
            level -= 1
            first = False
            continue
        key, value = item
        head = "" if first else ","
        if stack or level:
            head += "\n" + " " * (indent * level)
        if key is not _NOKEY:
            head += string(_key(key)) + ": "
        first = False
        while True:
            if isinstance(value, str):
                yield head + string(value)
                break
            if value is None or value is True or value is False:
                yield head + _CONSTANTS[value]
                break
            if isinstance(value, int):
                yield head + int.__repr__(value)
                break
            if isinstance(value, float):
                yield head + other(value)
                break
            if isinstance(value, dict):
                items, opening, closing = iter(value.items()), "{", "}"
                empty = not value
            elif isinstance(value, (list, tuple)):
                items, opening, closing = ((_NOKEY, v) for v in value), "[", "]"
                empty = not value
            elif default is not None:
                value = default(value)
                continue
            else:
                raise TypeError(f"Object of type {type(value).__name__} "
                                "is not JSON serializable")
            if empty:
                yield head + opening + closing
                break
            yield head + opening
            stack.append((pending, close, pad))
            pending, close, pad = items, closing, " " * (indent * level)
            level += 1
            first = True
            break


_END = object()
_NOKEY = object()  # a list item's (an array has no keys)


def _key(key) -> str:
    """A dict key as ``json`` turns it into a string."""
    if isinstance(key, str):
        return key
    if key is None or key is True or key is False:
        return _CONSTANTS[key]
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        return json.dumps(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def dump(obj, out: IO[str], *, chunk: int = 1 << 16, **kw) -> None:
    """Write :func:`iterencode`'s text to ``out`` in writes of about ``chunk``
    characters, then a newline (as ``click.echo`` of ``json.dumps`` does)."""
    parts, size = [], 0
    for piece in iterencode(obj, **kw):
        parts.append(piece)
        size += len(piece)
        if size >= chunk:
            out.write("".join(parts))
            parts, size = [], 0
    parts.append("\n")
    out.write("".join(parts))
