"""boltfix.record: the dump line format."""

from __future__ import annotations

import json

import pytest

from boltfix import record as R
from boltfix import structs as S
from boltfix.text import ENCODERS


@pytest.mark.parametrize("encoding", list(ENCODERS))
@pytest.mark.parametrize("path", [(), (b"a",), (b"a", b"\xff\xfe"), None])
def test_a_line_is_json_in_field_order(encoding, path):
    enc = ENCODERS[encoding]
    pathj = R.path_json(path, enc)
    for value, is_bucket in ((b"v\x00", False), (S.BUCKET_HEADER.pack(0, 9), True)):
        line = R.jsonl_line(enc, pathj, b"k\xff", value, is_bucket, 5, R.LIVE,
                            guess=(b"key",) if path is None else None, redacted=not is_bucket)
        d = json.loads(line)
        keys = list(d)
        assert [R.FIELDS.index(k) for k in keys] == sorted(R.FIELDS.index(k) for k in keys)
        assert d["page"] == 5 and d["state"] == "live"
        assert d["type"] == ("bucket" if is_bucket else "kv")
        if is_bucket:
            assert d["sequence"] == 9 and d["value"] is None


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_path_below_is_the_whole_path(encoding):
    enc = ENCODERS[encoding]
    for path, name in (((b"a",), b"b"), ((b"a",), b"\xff"), ((b"\x00",), b"c"), ((), b"x")):
        assert R.path_json_below(R.path_json(path, enc), path, name, enc) == \
            R.path_json(path + (name,), enc)


def test_live_pieces_are_the_lines():
    enc = ENCODERS["auto"]
    pathj = R.path_json((b"b",), enc)
    keys, values = [b"k1", b"\x00k"], [b"v1", b"\xff"]
    parts: list = []
    R.live_kv_pieces(parts, enc, pathj, keys, values, 3)
    assert "".join(parts) == "".join(R.jsonl_line(enc, pathj, k, v, False, 3, R.LIVE)
                                     for k, v in zip(keys, values))
    hexparts: list = []
    R.live_hex_pieces(hexparts, R.hex_prefix(R.path_json((b"b",), ENCODERS["hex"])), keys,
                      values, 3)
    assert b"".join(hexparts).decode() == "".join(
        R.jsonl_line(ENCODERS["hex"], R.path_json((b"b",), ENCODERS["hex"]), k, v, False, 3,
                     R.LIVE) for k, v in zip(keys, values))


def test_text_lines():
    head = R.text_head((b"a", b"b"), R.LIVE, 4)
    assert head == "a/b"
    assert R.text_head(None, R.FREE, 12, guess=(b"key",)) == "[free p12] ?key?"
    assert R.text_kv_line(head, b"k", b"v", False, None) == "a/b  k = v\n"
    assert R.text_kv_line(head, b"k", b"\x01", True, None) == "a/b  k = 0x01  [redacted]\n"
    assert R.text_bucket_line(head, b"s", S.BUCKET_HEADER.pack(0, 3), None) == \
        "a/b  s/  [bucket seq 3]\n"
