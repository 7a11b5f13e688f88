"""`boltfix page` on huge page runs (issue 14): `--hex` streamed in pieces,
the table and `--json` showing a bounded preview of a huge value, and
secrets masked over the whole range shown whatever piece cuts them.

The byte-exact tests run in process with the piece sizes made tiny, so that
every piece boundary (a folded '*' run, a bcrypt hash, a Kubernetes Secret's
data) is met on small files; the RSS tests run the CLI in a child process on
a 200 MB value (test_hostile_big's file) and read its peak (VmHWM).
"""

from __future__ import annotations

import json
import random
import re

import k8sbytes as K
import pytest
from click.testing import CliRunner
from test_hostile_big import _rss_parts, write_values
from test_hostile_walk import assert_sane, run_cli

from boltfix import bigbytes, describe, k8s, render, resident
from boltfix.cli import main
from boltfix.reader import DB
from boltfix.writer import BoltWriter


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
BCRYPT = b"$2a$10$" + b"N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
SECRET_DATA = {"password": b"hunter2-very-secret-password-value-0123456789"}


def _file(path, values, page_size=4096):
    """Bucket ``key`` (etcd's name) of ``values`` under 17-byte revision keys."""
    with open(path, "wb") as f:
        w = BoltWriter(f, page_size)
        w.begin_bucket(b"key")
        for i, v in enumerate(values):
            w.put(i.to_bytes(8, "big") + b"_" + bytes(8), v)
        w.end_bucket()
        w.close()
    return path


def _secret_kv(name: str, pad: int = 0) -> bytes:
    value = K.secret(name, "default", SECRET_DATA, annotations={"pad": "x" * pad})
    return K.key_value(f"/registry/secrets/default/{name}".encode(), value)


@pytest.fixture
def secret_file(tmp_path):
    """Small records, bcrypt hashes and Kubernetes Secrets at many offsets
    (values of every length from 40 on: every alignment to a piece edge),
    one Secret with an overflow run."""
    values = []
    for i in range(24):
        values.append(b"x" * (40 + i) + BCRYPT + b"y" * i)
        values.append(_secret_kv(f"s{i}", pad=i))
    values.append(_secret_kv("big", pad=9000))  # an overflow run
    return _file(tmp_path / "secrets.db", values)


def _page_ids(path):
    with DB(str(path)) as d:
        return list(range(d.pages_in_file))


def _hex(args, monkeypatch=None, piece=None) -> str:
    if piece is not None:
        monkeypatch.setattr(render, "HEX_PIECE", piece)
    r = CliRunner().invoke(main, ["page", *map(str, args), "--hex"])
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
            data = render.redact_range(d.buf, p.offset, p.run_end)
            data = k8s.mask_file_range(d.buf, d.page_size, p.offset, data)
            old.append(f"page {pgid} ({p.type}, {len(data)} bytes, offset {p.offset:#x})\n"
                       + old_hexdump(data, p.offset) + "\n")
    assert whole == "".join(old)
    for pgid in ids:  # a page alone (an overflow page of the big Secret too)
        shown = _shown(_hex([secret_file, pgid], monkeypatch, piece))
        assert BCRYPT[20:40] not in shown and SECRET_DATA["password"][:20] not in shown
    shown = _shown(CliRunner().invoke(main, ["page", str(secret_file), *map(str, ids), "--hex",
                                             "--show-secrets"]).output)
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


def test_kv_secret_ranges_of_a_view_in_pieces(monkeypatch):
    """k8s.kv_view_secret_ranges (what page masks a value with) reads a big
    view as a bigbytes.Span: with every value "big" and pieces of 3 to 20
    bytes (a marker cut by every edge) its answer is that of the bytes."""
    kvs = [_secret_kv("a"), _secret_kv("b", pad=50),
           K.key_value(b"/registry/configmaps/x/y", K.configmap("y", "x", {"k": b"v"})),
           K.key_value(b"/registry/pods/x/y", K.json_object("v1", "Secret", "y", "x",
                                                           data={"k": "c2VjcmV0"})),
           K.key_value(b"/registry/pods/x/z", K.pod("z", "x")), b"\x0a\x05Secret"]
    want = [k8s.kv_secret_ranges(kv) for kv in kvs]
    assert want[0] and want[1] and want[3] and not want[2] and not want[4]
    monkeypatch.setattr(resident, "BIG_VALUE", 1)
    for size in range(3, 21):
        monkeypatch.setattr(resident, "PIECE", size)
        monkeypatch.setattr(bigbytes, "MIN_SPAN", size)
        assert [k8s.kv_view_secret_ranges(memoryview(kv)) for kv in kvs] == want


# ---------------------------------------------------------------- previews
def _json_page(path, pgid, *extra):
    r = CliRunner().invoke(main, ["page", str(path), str(pgid), "--json", *extra])
    assert r.exit_code == 0, (r.output, r.exception)
    (view,) = json.loads(r.output)
    return view


def _leaf_of(path, key_index: int) -> int:
    with DB(str(path)) as d:
        for pgid in range(2, d.pages_in_file):
            p = d.page(pgid)
            if p.self_id == pgid and p.type == "leaf":
                for el in p.elements():
                    if el.key[:8] == key_index.to_bytes(8, "big"):
                        return pgid
    raise AssertionError("no leaf")


def test_a_big_value_is_a_preview_masked_as_the_whole(tmp_path, monkeypatch):
    """A value over VALUE_PREVIEW is its first bytes, "truncated" and its
    length; a Secret's data in the preview is masked though the marker that
    makes it one (the JSON kind, last) lies past the preview."""
    monkeypatch.setattr(describe, "VALUE_PREVIEW", 100)
    value = (b'{"data":{"token":"' + b"T0pS3cr3tT0k3n" * 10 + b'"},"apiVersion":"v1",'
             b'"metadata":{"name":"n"},"kind":"Secret"}')
    kv = K.key_value(b"/registry/things/n", value)  # not a Secret's key
    text = "é" * 200  # a long text: its preview is text, no character cut
    pad = [b"p" * 100] * 60  # a bucket of its own pages, not inline
    path = _file(tmp_path / "p.db", [kv, b"short", text.encode(), *pad])
    pgid = _leaf_of(path, 0)
    els = _json_page(path, pgid)["elements"]
    els = els[:3]
    assert [el.get("value_bytes") for el in els] == [len(kv), None, 400]
    assert [el.get("truncated", False) for el in els] == [True, False, True]
    assert els[1]["value"] == "short"
    assert els[2]["value"] == "é" * 50  # 100 bytes: 50 characters, none cut
    shown = bytes.fromhex(els[0]["value"][2:])
    assert len(shown) == 100 and b"T0pS3cr3t" not in shown and b"*" * 40 in shown
    assert kv[:100] == bytes.fromhex(_json_page(path, pgid, "--show-secrets")
                                     ["elements"][0]["value"][2:])
    r = CliRunner().invoke(main, ["page", str(path), str(pgid)], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and f"({len(kv):,} bytes)" in r.output and "T0pS3" not in r.output


def test_small_values_keep_the_schema(secret_file):
    """Under VALUE_PREVIEW nothing changes: no "truncated", the value whole."""
    pgid = _leaf_of(secret_file, 0)
    for el in _json_page(secret_file, pgid, "--show-secrets")["elements"]:
        assert "truncated" not in el and "value_bytes" not in el
        assert len(el["value"]) >= el["vsize"]


# ---------------------------------------------------------------- 200 MB
# big_value_db (a 200 MB value among small records; its leaf is page 17,
# overflow 51200) and mode (C core or pure Python) are in conftest.py


@pytest.mark.parametrize("extra", [[], ["--json"], ["--show-secrets"]])
def test_page_of_a_200_mb_value_is_bounded(big_value_db, mode, extra):
    """page built the value's text whole: 1.26 GB (table), 2.1 GB (--json)."""
    code, out, err, rss, _ = run_cli("page", big_value_db, 17, *extra)
    assert_sane(code, err, rss, ok=(0,))
    assert rss < 150, f"peak RSS {rss:.0f} MB"
    text = out.decode()
    assert ("209,715,200 bytes" in text if "--json" not in extra
            else json.loads(text)[0]["elements"][0]["value_bytes"] == 200 << 20)


@pytest.mark.parametrize("pgid", [17, 18])
def test_page_hex_of_a_200_mb_value_is_bounded(big_value_db, mode, pgid):
    """page --hex took 61 s and 3.4 GB (the run copied twice, one 800 MB
    string); now streamed.  Page 18 is an overflow page: its "header" is
    the value's bytes and claims a run to the end of the file."""
    code, out, err, rss, _ = run_cli("page", "--hex", big_value_db, pgid, lines_only=True)
    assert_sane(code, err, rss, ok=(0,))
    assert rss < 150, f"peak RSS {rss:.0f} MB"
    lines, size = out
    if pgid == 17:  # a line per 16 bytes of the 51,201 pages (zeros folded)
        assert lines > (200 << 20) // 16 and size > 70 * lines


def test_page_json_of_overflow_pages_is_bounded(big_value_db, mode):
    code, err, rss, _ = _rss_parts("page", "--json", big_value_db, 18, 1000, 51217)
    assert code == 0 and b"Traceback" not in err, err[-500:]
    assert rss < 150, f"peak RSS {rss:.0f} MB"


def test_page_of_elements_that_all_claim_one_value(tmp_path):
    """Damage: 4,000 elements of one leaf all claim the same 20 MB value (80
    GB read to mask them, 260 MB of previews).  Past k8s.SPAN_READ_BUDGET
    read (and describe.PAGE_PREVIEW shown) the rest is masked unread (and
    shown in SMALL_PREVIEW bytes): bounded time and memory."""
    import struct
    import time

    path = tmp_path / "overlap.db"
    write_values(path, [bytes(range(256)) * (20 << 12)], pad=2000)
    off, n = 17 * 4096, 4000
    with open(path, "r+b") as f:
        f.seek(off)
        _pid, flags, _count, overflow = struct.unpack("<QHHI", f.read(16))
        assert flags == 2 and overflow == 5120  # the value's leaf
        value_at, run_end = off + 16 + 16 * n, off + (overflow + 1) * 4096
        f.seek(off + 10)
        f.write(struct.pack("<H", n))
        for i in range(n):
            el = off + 16 + 16 * i
            f.seek(el)
            f.write(struct.pack("<IIII", 0, value_at - el, 1, run_end - value_at - 1))
    for extra in ([], ["--json"], ["--hex"]):
        t = time.monotonic()
        code, out, err, rss, _ = run_cli("page", path, 17, *extra, lines_only=True)
        assert_sane(code, err, rss, ok=(0,))
        assert rss < 150 and time.monotonic() - t < 120, (extra, rss)
