"""boltfix.render: hexdumps -- the text is the old one, in pieces or laid out in
columns; `page --hex` streamed in pieces with secrets masked whatever piece
or page edge cuts them (the piece sizes made tiny so every boundary is met)."""

from __future__ import annotations

import random
import re

import pytest

from boltfix import render, secrets
from boltfix.reader import DB
from support.cli import invoke
from support.etcdfiles import SECRET_DATA
from support.protobuf import BCRYPT


def old_hexdump(data: bytes, base: int = 0, width: int = 16) -> str:
    """The hexdump before it was streamed (the reference, kept verbatim)."""
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


def _samples(rnd):
    """Random bytes, runs of repeated lines (folds), short tails."""
    for _ in range(400):
        n = rnd.randrange(0, 400)
        kind = rnd.randrange(3)
        if kind == 0:
            yield bytes(rnd.randrange(256) for _ in range(n))
        elif kind == 1:
            yield bytes(rnd.choice(b"\0\0\0\0a") for _ in range(n))
        else:
            yield b"\0" * n + bytes(rnd.randrange(2) for _ in range(rnd.randrange(40)))


def test_hexdump_is_the_old_text():
    rnd = random.Random(14)
    for data in _samples(rnd):
        width = rnd.choice([16, 16, 8, 4])
        base = rnd.randrange(1 << 36)
        assert render.hexdump(data, base, width) == old_hexdump(data, base, width)


def test_hexdump_in_pieces_is_the_whole():
    """Fed in pieces of any multiple of the width (empty ones too), the lines
    are those of the whole; a fold that runs over a piece edge stays one '*'."""
    rnd = random.Random(15)
    for data in _samples(rnd):
        width = rnd.choice([16, 8])
        dump, lines, i = render.Hexdump(4096, width), [], 0
        while True:
            piece = data[i:i + width * rnd.randrange(0, 4)]
            i += len(piece)
            lines += dump.lines(piece, last=i >= len(data))
            if i >= len(data):
                break
        assert "\n".join(lines) == old_hexdump(data, 4096, width)
    # 64 equal lines cut into pieces of one line: one '*', the last line shown
    data = b"\0" * 16 * 64
    dump = render.Hexdump(0)
    lines = [x for k in range(64) for x in dump.lines(data[16 * k:16 * k + 16], last=k == 63)]
    assert lines == old_hexdump(data).split("\n") and lines.count("*") == 1
    assert lines[-1].startswith("000003f0")


def test_hexdump_text_laid_out_in_columns_is_the_old_text():
    """Hexdump.text's column-by-column layout (pieces of 64 lines or more,
    no fold, offsets of 8 digits) and its fallbacks (a repeated line, also
    one that repeats the last line of the piece before; offsets past 4 GiB)
    give the old text."""
    rnd = random.Random(16)
    for t in range(300):
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 6000)))
        if t % 3 == 1:  # a line repeated somewhere, and a run of one byte
            at = rnd.randrange(0, max(1, len(data) - 16)) // 16 * 16
            data = data[:at + 16] + data[at:at + 16] * rnd.randrange(1, 4) + data[at + 16:]
        if t % 3 == 2:
            data = data + bytes([rnd.randrange(256)]) * rnd.randrange(1, 200) + data
        base = rnd.choice([0, 4096 * rnd.randrange(1 << 19), (1 << 32) - 16 * rnd.randrange(500),
                           rnd.randrange(1 << 40)])
        dump, out, i = render.Hexdump(base), "", 0
        while True:
            piece = data[i:i + 16 * rnd.choice([0, 1, 63, 64, 65, 128, 300])]
            i += len(piece)
            out += dump.text(piece, last=i >= len(data))
            if i >= len(data):
                break
        want = old_hexdump(data, base)
        assert out == (want + "\n" if want else "")


# ---------------------------------------------------------------- files


def _page_ids(path):
    with DB(str(path)) as d:
        return list(range(d.pages_in_file))


def _hex(args, monkeypatch=None, piece=None) -> str:
    if piece is not None:
        monkeypatch.setattr(render, "HEX_PIECE", piece)
    r = invoke("page", *map(str, args), "--hex")
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


def _shown(text: str) -> bytes:
    """The bytes a hexdump shows, folds unfolded."""
    got, last = bytearray(), None
    for line in text.splitlines():
        if line == "*":
            continue
        m = re.match(r"^([0-9a-f]{8,})  ((?:[0-9a-f]{2} ?)+)", line)
        if m:
            base, chunk = int(m.group(1), 16), bytes.fromhex(m.group(2).replace(" ", ""))
            if last is not None and base > last[0] + len(last[1]):  # a fold
                got += last[1] * ((base - last[0] - len(last[1])) // len(last[1]))
            got += chunk
            last = (base, chunk)
    return bytes(got)


@pytest.mark.parametrize("piece", [16, 48, 64, 112, 4096])
def test_hex_in_pieces_is_the_old_output(secret_file, monkeypatch, piece):
    """Every page, masked and not, in tiny pieces: the text of the old code
    (the whole run masked, then one hexdump); no secret shows."""
    ids = _page_ids(secret_file)
    whole = _hex([secret_file, *ids], monkeypatch, 1 << 20)
    assert _hex([secret_file, *ids], monkeypatch, piece) == whole
    with DB(str(secret_file)) as d:
        old = []
        for pgid in ids:
            p = d.page(pgid)
            data = secrets.redact_range(d.buf, p.offset, p.run_end)
            data = secrets.mask_file_range(d.buf, d.page_size, p.offset, data)
            old.append(f"page {pgid} ({p.type}, {len(data)} bytes, offset {p.offset:#x})\n"
                       + old_hexdump(data, p.offset) + "\n")
    assert whole == "".join(old)
    for pgid in ids:  # a page alone (an overflow page of the big Secret too)
        shown = _shown(_hex([secret_file, pgid], monkeypatch, piece))
        assert BCRYPT[20:40] not in shown and SECRET_DATA["password"][:20] not in shown
    shown = _shown(invoke("page", secret_file, *ids, "--hex", "--show-secrets").output)
    raw = secret_file.read_bytes()  # every page shown: every copy in the file
    # (at least: an overflow page shows again on its own)
    assert shown.count(BCRYPT) >= raw.count(BCRYPT) >= 24
    assert shown.count(SECRET_DATA["password"]) >= raw.count(SECRET_DATA["password"]) >= 25


def test_a_secret_cut_by_a_piece_edge_is_masked(secret_file, monkeypatch):
    """A piece edge inside every byte of one hash and one Secret's data: the
    hexdump's '*' lie exactly where the whole run's mask has them."""
    with DB(str(secret_file)) as d:
        raw = bytes(d.buf)
        h, s = raw.index(BCRYPT), raw.index(SECRET_DATA["password"])
        pgid_h, pgid_s = h // d.page_size, s // d.page_size
    for pgid, at, secret in ((pgid_h, h, BCRYPT), (pgid_s, s, SECRET_DATA["password"])):
        off = pgid * 4096
        for cut in range(at + 1, at + len(secret), 7):
            # pieces of 16 bytes from the page start meet `cut` rounded down
            piece = max(16, (cut - off) // 16 * 16)
            shown = _shown(_hex([secret_file, pgid], monkeypatch, piece))
            assert shown[at - off:at - off + len(secret)] == b"*" * len(secret), (cut, piece)


# ---------------------------------------------------------------- 200 MB
# big_value_db (a 200 MB value among small records; its leaf is page 17,
# overflow 51200) and mode (C core or pure Python) are in conftest.py
