"""Small text helpers shared by every output (names, keys, values)."""

from __future__ import annotations


def is_printable_text(data: bytes) -> bool:
    """True when bytes are UTF-8 text without control characters."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.isprintable()


def name_text(data) -> str:
    """A bucket name or key for people: text when printable, else 0x-hex."""
    data = bytes(data)
    if data and is_printable_text(data):
        return data.decode("utf-8")
    return "0x" + data.hex()


def short(data, limit: int = 64) -> str:
    """A value shortened for tables."""
    text = name_text(data)
    return text if len(text) <= limit else text[: limit - 1] + "…"
