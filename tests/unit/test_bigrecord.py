"""boltfix.bigrecord: huge values that dump and get must mask or decode
(issue 14), written in pieces, never built whole, secrets masked across
every piece boundary: the lines are the lines a whole value gives.

Files are written by boltfix's BoltWriter in etcd's layout: the ``key``
bucket with mvccpb.KeyValue values (support/k8sbytes.py), ``authUsers``
with authpb.User values, ``auth``, ``meta``.  The tests run in process
with the piece size tiny, every value "big" and slices above a few hundred
bytes kept as views (so every piece boundary is met on small files)."""

from __future__ import annotations

import io
import json

import pytest

from boltfix import bigbytes, bigrecord, resident
from boltfix.dump import DumpOptions, dump
from boltfix.reader import DB
from support import k8sbytes as K
from support.cli import invoke
from support.etcdfiles import (
    OTHER_HASH,
    SECRET_A,
    SECRET_B,
    USERS,
    free_bucket,
    key_records,
    rev,
    write_etcd,
)
from support.protobuf import BCRYPT
from support.purepy import pure_python

#: records masked only where the bucket is unknown (free, orphan): bcrypt
#: hashes anywhere
FREE_ONLY = [(rev(100), K.key_value(b"/plain/with-hash", b"x" * 500 + BCRYPT + b"y" * 500)),
             (b"user", b"\xff\xff garbage " + OTHER_HASH + b"public " * 100)]


#: users whose secrets are masked where the bucket is unknown too
FREE_USERS = [(k, v) for k, v in USERS if SECRET_A not in v]


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


# ---------------------------------------------------------------- get
@pytest.mark.parametrize("encoding", ["auto", "utf8", "hex", "base64", "raw"])
def test_get_of_masked_values_in_pieces(etcd_db, monkeypatch, encoding):
    """get masks a huge value the same way (a Source, in pieces)."""
    cases = [["authUsers", "bob"], ["authUsers", "zed"],
             ["key", "0x" + rev(5).hex()], ["key", "0x" + rev(2).hex()]]

    def run():
        outs = []
        for args in cases:
            r = invoke("get", "--encoding", encoding, str(etcd_db), *args)
            assert r.exit_code == 0, r.output
            outs.append(r.stdout_bytes)
        return outs

    whole = run()
    assert not any(_leaks(o) for o in whole[:3])
    _tiny(monkeypatch)
    with pure_python():
        assert run() == whole


# ---------------------------------------------------------------- escapes


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
