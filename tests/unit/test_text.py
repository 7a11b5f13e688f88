"""boltfix.text: the text-or-hex rule's escapes (the per-character rule, run a
piece at a time)."""

from __future__ import annotations

from boltfix import bigrecord, resident


# ---------------------------------------------------------------- escapes
def _escape_per_character(data: bytes) -> bytes:
    """The rule of text.escape_controls, one character at a time (what
    it did before it went by runs)."""
    out = []
    for c in data.decode("utf-8", "surrogateescape"):
        o = ord(c)
        if c == "\\":
            out.append("\\\\")
        elif 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif not c.isprintable():
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(c)
    return "".join(out).encode("utf-8")


def test_escape_controls_is_the_per_character_rule(monkeypatch):
    """Runs of controls, backslashes, bytes that are not UTF-8, C1 controls,
    U+2028 and unassigned characters: the same bytes as the per-character
    rule, whole and in pieces (a character cut by a piece's end)."""
    import random

    from boltfix.text import escape_controls

    rnd = random.Random(14)
    samples = [b"\\\\a\x01\\", "é€😀\u2028\u00ad\x85\x9f\xa0\ue000\U000e0001\U0010ffff".encode(),
               bytes(range(256)) * 3, b"\xed\xa0\x80", b"\\\x01\\\x02\\"] + VALUES_UTF8
    for _ in range(3000):
        n = rnd.randrange(0, 40)
        samples.append(bytes(rnd.choice([rnd.randrange(256), 0x5C, 0x41]) for _ in range(n)))
        samples.append("".join(chr(rnd.choice([rnd.randrange(0x110000), rnd.randrange(0x300), 0x5C]))
                               for _ in range(n)).encode("utf-8", "surrogatepass"))
    for s in samples:
        assert escape_controls(s) == _escape_per_character(s), s
    monkeypatch.setattr(resident, "PIECE", 5)
    for s in samples[:200]:
        assert b"".join(bigrecord.format_pieces(memoryview(s), "utf8")) == \
            _escape_per_character(s), s


VALUES_UTF8 = [b"tabs\tand\nnew\rlines " * 7, "é€😀 multi-byte ".encode() * 7,
               b"\xff\xfe not utf-8 \x80" * 7, "line\u2028separator ".encode() * 9]
