"""Huge values that dump and get must mask or decode (issue 14): written in
pieces, never built whole, secrets masked across every piece boundary.

Files are written by boltfix's BoltWriter in etcd's layout (real etcd
refuses a request over 1.5 MB by default): the ``key`` bucket with
mvccpb.KeyValue values (tests/k8sbytes.py), ``authUsers`` with authpb.User
values, ``auth``, ``meta``.  A free record is made by pointing a bucket's
header at another bucket's root (tests/damage.py): its old leaf is then
unreached, below the high-water mark, and with etcd's unsynced freelist a
free page.

The byte-exact tests run in process with the piece size tiny, every value
"big" and slices above a few hundred bytes kept as views (so every piece
boundary is met on small files: a UTF-8 character cut, a JSON escape, a
base64 group, a bcrypt hash, a masked range); the RSS tests run the CLI on
200 MB values in a child process and read its peak (VmHWM).
"""

from __future__ import annotations

import io
import json
import struct

import k8sbytes as K
import pytest
from test_etcd_decode import BCRYPT, user
from test_hostile_big import _rss_parts
from test_hostile_walk import RSS_LIMIT_MB, run_cli
from test_speedups import pure_python

import damage
from boltfix import bigbytes, bigrecord, resident
from boltfix.dump import DumpOptions, dump
from boltfix.reader import DB
from boltfix.writer import BoltWriter

#: secret payloads: none may ever appear in masked output (nor its hex)
SECRET_A = b"SECRET-PAYLOAD-a1b2c3d4e5f6-" * 40
SECRET_B = "sécrét-ünïcode-😀-".encode() * 30
OTHER_HASH = b"$2b$12$" + b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


def _rev(main: int) -> bytes:
    return struct.pack(">Q", main) + b"_" + struct.pack(">Q", 0)


def key_records():
    """(revision key, KeyValue) of every kind the masking and the decoding
    tell apart, values long enough to be cut by pieces."""
    text = ("text value é€😀 \t\n\r with \\ and \" " * 30).encode()
    binary = bytes(range(256)) * 4
    vals = [
        K.key_value(b"/registry/configmaps/ns/text", text),
        K.key_value(b"/registry/configmaps/ns/binary", binary),
        K.key_value(b"/registry/configmaps/ns/cm", K.configmap("cm", "ns", {"k": text})),
        K.key_value(b"/registry/secrets/ns/s1",
                    K.secret("s1", "ns", {"token": SECRET_A, "ca.crt": SECRET_B})),
        K.key_value(b"/registry/secrets/ns/s2", K.secret(
            "s2", "ns", {"a": SECRET_A}, annotations={
                "kubectl.kubernetes.io/last-applied-configuration": SECRET_B.decode()})),
        K.key_value(b"/registry/secrets/ns/js", K.json_object(
            "v1", "Secret", "js", "ns", data={"x": SECRET_A.decode()})),
        K.key_value(b"/registry/secrets/ns/broken", b"k8s\x00" + SECRET_A),
        K.key_value(b"/registry/secrets/ns/enc", K.encrypted(ciphertext=SECRET_A)),
        K.key_value(b"/registry/pods/ns/p", K.pod("p", "ns", annotations={"a": text.decode()})),
        K.key_value(b"/bootstrap/abc", SECRET_A + b"\x00" + SECRET_B),
        K.key_value(b"/registry/oauthaccesstokens/tok", K.json_object(
            "oauth.openshift.io/v1", "OAuthAccessToken", SECRET_A.decode()[:60])),
        b"\x0a\x05not a kv, Secret: " + b"public " * 100,
    ]
    return [(_rev(i + 2), v) for i, v in enumerate(vals)]


#: records masked only where the bucket is unknown (free, orphan): bcrypt
#: hashes anywhere
FREE_ONLY = [(_rev(100), K.key_value(b"/plain/with-hash", b"x" * 500 + BCRYPT + b"y" * 500)),
             (b"user", b"\xff\xff garbage " + OTHER_HASH + b"public " * 100)]


USERS = [
    (b"root", user(b"root", BCRYPT, (b"root",))),
    (b"bob", user(b"bob", OTHER_HASH, (b"r1", b"r2")) + K.ld(5, SECRET_A)),
    (b"eve", user(b"eve", b"", (b"x" * 700,), no_password=True)),
    (b"zed", b"\xff\xff garbage " + BCRYPT + SECRET_A),
]
#: users whose secrets are masked where the bucket is unknown too
FREE_USERS = [(k, v) for k, v in USERS if SECRET_A not in v]


def write_etcd(path, key_recs=None, users=None, auth=None, extra=None, page_size=4096):
    """An etcd-shaped bbolt file (etcd's unsynced freelist)."""
    with open(path, "wb") as f:
        w = BoltWriter(f, page_size)
        buckets = {
            b"auth": auth if auth is not None else [(b"authEnabled", b"\x00"),
                                                     (b"authRevision", b"\x00" * 8)],
            b"authUsers": users if users is not None else USERS,
            b"key": key_recs if key_recs is not None else key_records(),
            b"meta": [(b"consistent_index", struct.pack(">Q", 7))],
        }
        buckets.update(extra or {})
        for name in sorted(buckets):
            w.begin_bucket(name)
            for k, v in sorted(buckets[name]):
                w.put(k, v)
            w.end_bucket()
        w.close()


def free_bucket(path, name: bytes, other: bytes) -> None:
    """Point bucket ``name``'s header at bucket ``other``'s root: ``name``'s
    own pages are no longer reached (free, with etcd's unsynced freelist)."""
    with DB(path) as db:
        page, idx = damage.bucket_entry(db, (name,))
        opage, oidx = damage.bucket_entry(db, (other,))
    ps = damage.page_size_of(path)
    el = damage.read_leaf_element(path, opage, oidx, ps)
    off = damage._element_offset(opage, oidx, ps) + el.pos + el.ksize
    other_root = damage._read(path, off, 8)
    el = damage.read_leaf_element(path, page, idx, ps)
    damage._write(path, damage._element_offset(page, idx, ps) + el.pos + el.ksize, other_root)


def _dump(path, **kw) -> bytes:
    out = io.BytesIO()
    with DB(path) as db:
        dump(db, DumpOptions(**kw), out)
    return out.getvalue()


def _tiny(monkeypatch, piece=9, span=600):
    """Every value through the huge path, in ``piece``-byte pieces, its
    slices of ``span`` bytes or more read as views."""
    monkeypatch.setattr(bigrecord, "BIG_VALUE", 1)
    monkeypatch.setattr(resident, "PIECE", piece)
    monkeypatch.setattr(bigbytes, "MIN_SPAN", span)


@pytest.fixture(scope="module")
def etcd_db(tmp_path_factory):
    """Live records of every kind, and the same key records and users once
    more in buckets whose pages are free (``zkey``, ``zusers``: their
    headers point at ``pad``'s root)."""
    path = tmp_path_factory.mktemp("etcd") / "etcd.db"
    recs = key_records()
    pad = [(b"h%03d" % i, b"pad " * 30) for i in range(60)]  # paged buckets
    write_etcd(path, extra={b"zkey": recs + FREE_ONLY + pad, b"zusers": FREE_USERS + pad,
                            b"pad": pad})
    free_bucket(path, b"zkey", b"pad")
    free_bucket(path, b"zusers", b"pad")
    return path


def _leaks(out: bytes) -> list:
    found = []
    for s in (SECRET_A[:40], SECRET_B[:40], BCRYPT, OTHER_HASH):
        for form in (s, s.hex().encode(), json.dumps(s.decode("utf-8", "replace"))[1:-1]
                     .encode()):
            if form in out:
                found.append(form[:30])
    return found


OPTIONS = [
    dict(fmt=fmt, encoding=enc, decode=dec, include=("live", "free", "orphan"))
    for fmt, enc in [("jsonl", "auto"), ("jsonl", "utf8"), ("jsonl", "hex"),
                     ("jsonl", "base64"), ("text", "auto")]
    for dec in ("auto", "none")
] + [dict(fmt="jsonl", encoding="auto", k8s_object=True, include=("live", "free")),
     dict(fmt="text", encoding="auto", k8s_object=True, include=("live", "free"))]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_masked_huge_lines_are_the_whole_lines(etcd_db, monkeypatch, opts):
    """Every record through the huge path (bigbytes' Span and Source,
    bigrecord's BigLine, 9-byte pieces) gives the bytes of a line built
    whole; no secret in either."""
    whole = _dump(etcd_db, **opts)
    assert whole.count(b"\n") > 30
    assert b'"state":"free"' in whole or b"[free p" in whole
    assert not _leaks(whole)
    calls = []
    real = bigrecord.BigLine.pieces
    monkeypatch.setattr(bigrecord.BigLine, "pieces",
                        lambda self: calls.append(1) or real(self))
    _tiny(monkeypatch)
    with pure_python():
        pieces = _dump(etcd_db, **opts)
    assert len(calls) > 30, "records did not go through the huge path"
    assert pieces == whole


@pytest.mark.parametrize("piece", [3, 6, 57, 60, 63])
def test_masks_hold_at_every_piece_size(etcd_db, monkeypatch, piece):
    """A bcrypt hash (60 bytes) or a masked range cut by pieces of any size
    stays masked; the output is the whole-line output."""
    opts = dict(encoding="hex", include=("live", "free"))
    whole = _dump(etcd_db, **opts)
    _tiny(monkeypatch, piece=piece, span=64)
    with pure_python():
        out = _dump(etcd_db, **opts)
    assert not _leaks(out)
    assert out == whole


def test_show_secrets_shows_them_in_pieces(etcd_db, monkeypatch):
    """--show-secrets: the huge path writes the secrets as they are."""
    opts = dict(encoding="hex", include=("live", "free"), show_secrets=True)
    whole = _dump(etcd_db, **opts)
    assert SECRET_A.hex().encode() in whole and BCRYPT.hex().encode() in whole
    _tiny(monkeypatch)
    with pure_python():
        assert _dump(etcd_db, **opts) == whole


def test_source_and_span_read_as_bytes():
    """Source masks ranges in every piece; Span slices, indexes, compares
    and finds like the masked bytes."""
    data = bytes(range(256)) + bytes(range(256))[::-1] + b"x" * 256
    ranges = [(5, 9), (8, 20), (300, 301), (700, 900)]
    masked = bytearray(data)
    for a, b in ranges:
        b = min(b, len(data))
        masked[a:b] = b"*" * (b - a)
    masked = bytes(masked)
    src = bigbytes.Source(data, ranges)
    for size in (1, 2, 7, 64, 1000):
        assert b"".join(src.pieces(size)) == masked
    span = bigbytes.Span(src)
    for a, b in [(0, 5), (4, 10), (250, 760), (0, 768), (767, 768)]:
        part = span[a:b]
        assert bytes(part) == masked[a:b] and len(part) == b - a
    assert [span[i] for i in (0, 6, 299, 300, -1)] == [masked[i] for i in (0, 6, 299, 300, -1)]
    assert span == masked and span != data
    assert (b"\x00\x01\x02" in span) and (b"**\x14" in span) and (b"\x06\x07" not in span)
    assert span.startswith(b"\x00\x01") and not span.startswith(b"\x01")
    assert bigbytes.Source(data, None).pieces(1000).__next__() == b"*" * 768


def test_pattern_ranges_are_finditer(monkeypatch):
    """bcrypt hashes found in windows are those of one pass over the whole."""
    from boltfix.render import _BCRYPT, bcrypt_ranges

    data = (b"xx" + BCRYPT + b"$2a$10$" + BCRYPT + OTHER_HASH[:-1] + b"$2y$07$" + b"a" * 80) * 5
    want = [m.span() for m in _BCRYPT.finditer(data)]
    assert len(want) >= 10
    for piece in (3, 30, 59, 60, 61, 200):
        monkeypatch.setattr(resident, "PIECE", piece)
        assert bcrypt_ranges(memoryview(data)) == want, piece


# ---------------------------------------------------------------- get
@pytest.mark.parametrize("encoding", ["auto", "utf8", "hex", "base64", "raw"])
def test_get_of_masked_values_in_pieces(etcd_db, monkeypatch, encoding):
    """get masks a huge value the same way (a Source, in pieces)."""
    from click.testing import CliRunner

    from boltfix.cli import main

    cases = [["authUsers", "bob"], ["authUsers", "zed"],
             ["key", "0x" + _rev(5).hex()], ["key", "0x" + _rev(2).hex()]]

    def run():
        outs = []
        for args in cases:
            r = CliRunner().invoke(main, ["get", "--encoding", encoding, str(etcd_db), *args])
            assert r.exit_code == 0, r.output
            outs.append(r.stdout_bytes)
        return outs

    whole = run()
    assert not any(_leaks(o) for o in whole[:3])
    _tiny(monkeypatch)
    with pure_python():
        assert run() == whole


# ---------------------------------------------------------------- 200 MB
BIG = 200 << 20


@pytest.fixture(scope="module")
def big_dbs(tmp_path_factory):
    """200 MB values, one file each: a KeyValue of plain bytes in ``key``, a
    Kubernetes Secret in ``key``, a User with a huge unknown field in
    ``authUsers``, a huge value in ``auth``, and the Secret's KeyValue in a
    bucket whose pages are free."""
    d = tmp_path_factory.mktemp("big200")
    blob = bytes(range(256)) * (BIG // 256)
    secret = K.key_value(b"/registry/secrets/ns/big", K.secret(
        "big", "ns", {"token": (SECRET_A + blob)[:BIG], "ca.crt": SECRET_B}))
    out = {}
    for name, kw in {
        "kv": dict(key_recs=[(_rev(2), K.key_value(b"/registry/configmaps/ns/x", blob))]),
        "secret": dict(key_recs=[(_rev(2), secret)]),
        "user": dict(users=[(b"bob", user(b"bob", BCRYPT, (b"r",)) + K.ld(5, blob))]),
        "auth": dict(auth=[(b"authEnabled", blob)]),
        "free": dict(extra={b"zkey": [(_rev(2), secret)],
                            b"pad": [(b"h%03d" % i, b"pad " * 30) for i in range(60)]}),
    }.items():
        path = d / f"{name}.db"
        write_etcd(path, **kw)
        out[name] = path
    free_bucket(out["free"], b"zkey", b"pad")
    return out


def _bounded(args, limit=150):
    code, err, rss, _ = _rss_parts(*args, timeout=600)
    assert code == 0, err[-800:]
    assert b"Traceback" not in err and b"internal error" not in err, err[-800:]
    assert rss < min(limit, RSS_LIMIT_MB), f"peak RSS {rss} MB: {args}"
    return rss


CASES = [
    ("kv", ["--bucket", "key"]),
    ("secret", ["--bucket", "key"]),
    ("user", ["--bucket", "authUsers"]),
    ("auth", ["--bucket", "auth"]),
    ("free", ["--include", "free"]),
]


@pytest.mark.parametrize("name, args", CASES, ids=[c[0] for c in CASES])
def test_dump_of_200_mb_masked_or_decoded_is_bounded(big_dbs, mode, name, args):
    """These lines were built whole (the value, its masked copy, its etcd
    decoding, their encodings): now each huge part is written in pieces."""
    _bounded(["dump", *args, big_dbs[name]])


def _scan_output(args, needles):
    """(exit code, stderr, output size, {needle: found}) of ``boltfix ARGS``,
    its output scanned in chunks (not held: it is near 1 GB)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "boltfix", *map(str, args)],
                            cwd=damage.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    found = dict.fromkeys(needles, False)
    keep = max(map(len, needles)) - 1
    carry = b""
    size = 0
    while True:
        chunk = proc.stdout.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
        data = carry + chunk
        for n in needles:
            found[n] = found[n] or n in data
        carry = data[-keep:]
    err = proc.stderr.read()
    return proc.wait(), err, size, found


@pytest.mark.parametrize("name, args", [CASES[1], CASES[4]], ids=["secret", "free"])
def test_200_mb_secret_stays_masked(big_dbs, name, args):
    """The Secret's data never reaches the output: neither its first bytes
    nor their hex (the KeyValue is binary: hex) are there; the masked data
    is, as '*' (hex 2a), in the value and in the etcd decoding."""
    secret_hex = SECRET_A[:40].hex().encode()
    stars = b"2a" * 4096
    code, err, size, found = _scan_output(
        ["dump", *args, big_dbs[name]],
        [secret_hex, SECRET_A[:40], stars, b'"value_redacted":true', b'"etcd":{'])
    assert code == 0, err[-500:]
    assert not found[secret_hex] and not found[SECRET_A[:40]]
    assert found[stars] and found[b'"value_redacted":true'] and found[b'"etcd":{']
    assert size > 4 * BIG  # the value's hex and the decoding's


@pytest.mark.parametrize("args", [["--encoding", "utf8"], []], ids=["utf8", "auto"])
def test_get_of_200_mb_is_bounded_and_fast(big_dbs, mode, args):
    """get --encoding utf8 escaped a character at a time (38 s): now a
    regex over runs, in pieces."""
    code, out, err, rss, secs = run_cli("get", *args, big_dbs["kv"], "key",
                                        "0x" + _rev(2).hex(), lines_only=True, timeout=600)
    assert code == 0, err[-500:]
    assert rss < 150, rss
    assert out[1] > BIG * 2
    assert secs < 30, secs


def test_get_of_200_mb_secret_is_masked(big_dbs, mode):
    code, err, rss, _ = _rss_parts("get", big_dbs["secret"], "key", "0x" + _rev(2).hex())
    assert code == 0 and b"Kubernetes Secret data redacted" in err, err[-500:]
    assert rss < 150, rss


# ---------------------------------------------------------------- escapes
def _escape_per_character(data: bytes) -> bytes:
    """The rule of record.escape_controls, one character at a time (what
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

    from boltfix.record import escape_controls

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


def test_too_many_secret_ranges_mask_the_whole_value(tmp_path, monkeypatch):
    """Past MAX_RANGES bcrypt-looking strings in a huge free value, the
    whole value is masked (more masked, never less): no list of millions of
    ranges is kept."""
    path = tmp_path / "many.db"
    value = (b"ab" + BCRYPT) * 50
    pad = [(b"h%03d" % i, b"pad " * 30) for i in range(60)]
    write_etcd(path, extra={b"zkey": [(b"k", value)] + pad, b"pad": pad})
    free_bucket(path, b"zkey", b"pad")
    opts = dict(encoding="hex", include=("free",))
    whole = _dump(path, **opts)
    assert (b"ab".hex() + "*".encode().hex() * 60).encode() in whole  # hashes masked, not "ab"
    monkeypatch.setattr(bigrecord, "BIG_VALUE", 1000)
    assert _dump(path, **opts) == whole  # under MAX_RANGES: the same masking
    monkeypatch.setattr(bigbytes, "MAX_RANGES", 10)
    out = _dump(path, **opts)
    assert b"2a" * len(value) in out and b"ab".hex().encode() * 1 + b"2a" * 60 not in out
    assert out.count(b'"value_redacted":true') == whole.count(b'"value_redacted":true')
