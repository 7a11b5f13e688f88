"""boltfix.describe: what `page` shows of a page -- a bounded preview of a huge
value, masked as the whole value says (its secrets found over all of it),
the schema of small values kept; and a damaged page whose elements all claim
one value (issue 14)."""

from __future__ import annotations

import json

from boltfix import describe
from boltfix.reader import DB
from support import k8sbytes as K
from support.cli import invoke
from support.etcdfiles import key_bucket_file
from support.files import write_values
from support.measure import assert_sane, run_child

# ---------------------------------------------------------------- files


# ---------------------------------------------------------------- previews
def _json_page(path, pgid, *extra):
    r = invoke("page", str(path), str(pgid), "--json", *extra)
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
    path = key_bucket_file(tmp_path / "p.db", [kv, b"short", text.encode(), *pad])
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
    r = invoke("page", str(path), str(pgid), env={"COLUMNS": "200"})
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


def test_page_of_elements_that_all_claim_one_value(tmp_path):
    """Damage: 4,000 elements of one leaf all claim the same 20 MB value (80
    GB read to mask them, 260 MB of previews).  Past secrets.SPAN_READ_BUDGET
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
        code, out, err, rss, _ = run_child("page", path, 17, *extra, lines_only=True)
        assert_sane(code, err, rss, ok=(0,))
        assert rss < 150 and time.monotonic() - t < 120, (extra, rss)
