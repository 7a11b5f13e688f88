"""Big values and big trees in bounded memory (issue 14): what the walk and
the writer keep mapped, and a big value written in pieces.

The byte-exact tests run in process with the piece size made tiny, so that
every piece boundary (a UTF-8 character cut in two, a base64 group, a JSON
escape) is met on small files; the RSS tests run the CLI in a child process
on the issue's files and read its peak (VmHWM) and its file-backed part.
"""

from __future__ import annotations

import io
import os

import pytest

from boltfix import bigrecord, resident
from boltfix import writer as W
from boltfix.dump import DumpOptions, dump
from boltfix.reader import DB
from boltfix.writer import BoltWriter
from support.files import write_overlapping_keys, write_values
from support.measure import RSS_LIMIT_MB, assert_sane, rss_parts, run_child
from support.purepy import pure_python

#: values that meet every rule: text, text with the controls JSON allows,
#: multi-byte characters, invalid UTF-8, a control character, escapes, and
#: a character that is not printable (U+2028)
VALUES = [
    b"plain ascii text " * 9,
    b"tabs\tand\nnew\rlines " * 7,
    "é€😀 multi-byte ".encode() * 7,
    b"\xff\xfe not utf-8 \x80" * 7,
    b"a control \x01 character " * 5,
    b'quotes " and \\ backslashes ' * 5,
    "line\u2028separator ".encode() * 9,
    "😀".encode() * 40,
]


def _dump(path, fmt, encoding) -> bytes:
    out = io.BytesIO()
    with DB(path) as db:
        dump(db, DumpOptions(fmt=fmt, encoding=encoding, decode="none"), out)
    return out.getvalue()


FORMATS = [("jsonl", e) for e in ("auto", "utf8", "hex", "base64")] + [
    ("text", "auto")]


@pytest.mark.parametrize("fmt, encoding", FORMATS)
def test_big_value_lines_are_the_whole_lines(tmp_path, monkeypatch, fmt, encoding):
    """Every value through boltfix.bigrecord (in 9-byte pieces) gives the
    bytes of the whole-line writers (record.jsonl_line / text_kv_line)."""
    path = tmp_path / "v.db"
    write_values(path, VALUES, pad=30)
    whole = _dump(path, fmt, encoding)
    with pure_python():
        assert _dump(path, fmt, encoding) == whole
    monkeypatch.setattr(bigrecord, "BIG_VALUE", 1)
    monkeypatch.setattr(resident, "PIECE", 9)
    calls = []
    real = bigrecord.json_value if fmt == "jsonl" else bigrecord.text_big
    monkeypatch.setattr(bigrecord, real.__name__,
                        lambda *a: calls.append(1) or real(*a))
    with pure_python():
        pieces = _dump(path, fmt, encoding)
    assert calls, "no record went through bigrecord"
    assert pieces == whole


@pytest.mark.parametrize("encoding", ["auto", "utf8", "hex", "base64", "raw"])
def test_get_pieces_are_format_bytes(monkeypatch, encoding):
    """keys/get's format_bytes, piece by piece (9-byte pieces), is the same."""
    from boltfix.text import format_bytes

    monkeypatch.setattr(resident, "PIECE", 9)
    for v in VALUES:
        assert b"".join(bigrecord.format_pieces(memoryview(v), encoding)) == \
            format_bytes(v, encoding), v


@pytest.mark.parametrize("fmt, encoding", FORMATS)
def test_c_hands_big_values_back(tmp_path, fmt, encoding):
    """A value of BIG_VALUE bytes or more is handed back by the C writer
    (its line is never built whole); the output is the pure-Python one."""
    path = tmp_path / "v.db"
    big = [v * (resident.BIG_VALUE // len(v) + 1) for v in VALUES[:4]]
    write_values(path, big, pad=200)
    out = _dump(path, fmt, encoding)
    with pure_python():
        assert _dump(path, fmt, encoding) == out
    assert out.count(b"\n") == len(big) + 401  # the records and the bucket


def test_writer_keeps_big_views_and_bounds_copies(tmp_path, monkeypatch):
    """put_many keeps a big read-only view (no private copy), copy_leaves
    copies at most COPY_BYTES per run and never a page bigger than that:
    the file is the same as the one written from bytes, and repair's Python
    heap never holds a copy of the 3 MB value."""
    import tracemalloc

    from boltfix.repair import repair

    big = [b"v" * (3 << 20), bytes(range(256)) * 8000]
    src = tmp_path / "src.db"
    write_values(src, big, pad=500)
    monkeypatch.setattr(W, "COPY_BYTES", 64 << 10)
    for mode in ("c", "pure"):
        out = tmp_path / f"out-{mode}.db"
        tracemalloc.start()
        try:
            if mode == "pure":
                with pure_python():
                    repair(src, out)
            else:
                repair(src, out)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert out.read_bytes() == src.read_bytes(), mode
        assert peak < 2 << 20, (mode, peak)


def test_repair_of_overlapping_keys_is_bounded(tmp_path, monkeypatch):
    """8,192 overlapping keys of 32 KB: a 188 KB input whose repaired file
    is 872 MB (a 9-page leaf per key, 2 keys per 17-page branch, as bbolt
    writes them).  Its self-check mapped all of it (860 MB of RSS, 830 MB
    file-backed); the walk now drops the map every TRIM_BYTES.  Pure Python
    here (test_hostile_walk runs it with the C core)."""
    monkeypatch.setenv("BOLTFIX_PURE_PYTHON", "1")
    path = tmp_path / "overlap.db"
    write_overlapping_keys(path, 8192, 32 * 1024)
    fixed = tmp_path / "fixed.db"
    code, out, err, rss, _ = run_child("repair", path, "--out", fixed)
    assert_sane(code, err, rss, ok=(0,))
    assert fixed.stat().st_size > 800 << 20
    code, err, rss, rss_file = rss_parts("check", fixed)
    assert code == 0, err[-500:]
    assert rss < RSS_LIMIT_MB and rss_file < 4 * resident.TRIM_BYTES >> 20, (rss, rss_file)


def test_repair_of_a_200_mb_value_is_bounded(tmp_path, big_value_db, mode):
    """repair took 427-629 MB: put_many copied the value, copy_leaves copied
    its page, and the input's map and the output's stayed resident."""
    fixed = tmp_path / "fixed.db"
    code, out, err, rss, _ = run_child("repair", big_value_db, "--out", fixed)
    assert_sane(code, err, rss, ok=(0,))
    assert rss < 100, f"peak RSS {rss:.0f} MB"
    assert fixed.read_bytes() == big_value_db.read_bytes()


@pytest.mark.parametrize("fmt, encoding", FORMATS + [("jsonl", "hex"), ("text", "hex")])
def test_dump_of_a_200_mb_value_is_bounded(big_value_db, mode, fmt, encoding):
    """dump built the value's line whole: 626 MB (hex) to 1 GB (base64)."""
    code, out, err, rss, _ = run_child("dump", "--format", fmt, "--encoding", encoding,
                                     big_value_db, lines_only=True)
    assert_sane(code, err, rss, ok=(0,))
    assert rss < 150, f"peak RSS {rss:.0f} MB"
    assert out[0] == 4002
    assert out[1] > 200 << 20


@pytest.mark.parametrize("encoding", ["auto", "hex", "raw"])
def test_get_of_a_200_mb_value_is_bounded(big_value_db, mode, encoding):
    """get copied the value and built its hex whole: 1.2 GB."""
    code, out, err, rss, _ = run_child("get", "--encoding", encoding, big_value_db, "b", "k00",
                                     lines_only=True)
    assert_sane(code, err, rss, ok=(0,))
    assert rss < 150, f"peak RSS {rss:.0f} MB"
    assert out[1] == (200 << 20) * (1 if encoding == "raw" else 2) + (encoding != "raw")


def test_check_of_a_big_file_keeps_little_mapped(tmp_path, mode):
    """The walk (and inspect's and pages' pass over every header) drops its
    map every TRIM_BYTES: a 300 MB file's commands keep at most a few times
    that resident (the whole file before)."""
    path = tmp_path / "many.db"
    with open(path, "wb") as f:
        w = BoltWriter(f, 4096)
        w.begin_bucket(b"b")
        value = b"v" * 1000
        w.put_many([b"%012d" % i for i in range(300_000)], [value] * 300_000)
        w.end_bucket()
        w.close()
    assert os.path.getsize(path) > 300 << 20
    for args in (["check", path], ["dump", "--encoding", "hex", path], ["inspect", path],
                 ["pages", path], ["keys", path, "b"]):
        code, err, rss, rss_file = rss_parts(*args)
        assert code == 0, err[-500:]
        assert rss_file < 4 * resident.TRIM_BYTES >> 20, (args, rss, rss_file)
