"""Whether a secret shows in an output: every way a window of its bytes may
show (text, hex, the hexdump's spaced hex, base64 at each alignment)."""

from __future__ import annotations

import base64
import re

WINDOW = 8


def _windows(data: bytes, n: int) -> set:
    """Every ``n``-byte window of ``data``."""
    return {data[i:i + n] for i in range(len(data) - n + 1)}


def leaks(output: bytes, secrets) -> list:
    """Every way a window of a secret value may show: text, hex (also the
    hexdump's spaced form), base64 at each alignment."""
    low = output.lower()
    raw = _windows(output, WINDOW)
    hexes = _windows(low, 2 * WINDOW) | _windows(re.sub(rb"\s+", b"", low), 2 * WINDOW)
    b64s = _windows(output, 12)
    found = []
    for s in secrets:
        for i in range(len(s) - WINDOW + 1):
            w = s[i:i + WINDOW]
            if w in raw or w.hex().encode() in hexes:
                found.append((s[:12], i))
                break
        for shift in range(3):
            b64 = base64.b64encode(s[shift:])[:-4]
            if any(b64[i:i + 12] in b64s for i in range(0, len(b64) - 12, 4)):
                found.append((s[:12], "b64", shift))
                break
    return found
