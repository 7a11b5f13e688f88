"""The WAL reader and ``boltfix wal`` on hostile input, without running etcd.

The fixtures ``fixtures/etcd/wal-3.4`` and ``wal-3.5`` are real segments
written by etcd 3.4.23 and 3.5.1 (:mod:`walcases`' ``cap2``, its
preallocated zero tail trimmed: etcd reads a segment's end as its end)."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltfix import datadir as D
from boltfix import raftlog as R
from boltfix import wal as W
from boltfix.cli import main
from support import k8sbytes as K

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "etcd"
SEG = "0000000000000000-0000000000000000.wal"


def _wal_dir(tmp_path: Path, data: bytes, version: str = "3.5") -> Path:
    d = tmp_path / "member" / "wal"
    d.mkdir(parents=True, exist_ok=True)
    (d / SEG).write_bytes(data)
    return tmp_path


def _fixture(version: str = "3.5") -> bytes:
    return (FIXTURES / f"wal-{version}" / SEG).read_bytes()


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_real_segments_read_cleanly(version):
    res = W.read_wal(str(FIXTURES / f"wal-{version}"))
    assert res.findings == [] and res.stop is None
    assert res.first_index == 1 and res.last_index == res.hard_state["commit"] > 100
    kinds = {R.decode_entry_payload(e)["kind"] for _r, e in W.iter_entries(res)}
    assert {"conf_change", "empty", "put", "delete_range", "txn", "lease_grant",
            "lease_revoke", "compaction", "auth_user_add",
            "auth_user_change_password"} <= kinds


def _run(tmp_path: Path, *args):
    return CliRunner().invoke(main, ["wal", str(tmp_path), *args])


def _assert_sane(tmp_path: Path) -> None:
    """Reading, dumping and predicting never raise; the exit code is 0 or 1."""
    res = W.read_wal(str(tmp_path / "member" / "wal"))
    for _r, e in W.iter_entries(res):
        R.decode_entry_payload(e)
    D.predict_start(D.open_data_dir(str(tmp_path)))
    for fmt in ("text", "jsonl"):
        r = _run(tmp_path, "--format", fmt)
        assert r.exit_code in (0, 1), (r.exit_code, r.output[-2000:])
        assert "Traceback" not in r.output


FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(_fixture())))
def test_truncated(tmp_path, cut):
    _wal_dir(tmp_path, _fixture()[:cut])
    _assert_sane(tmp_path)
    res = W.read_wal(str(tmp_path / "member" / "wal"))
    # a cut WAL has a torn tail at most: etcd repairs it
    assert all(f.code in ("wal-torn-tail",) for f in res.findings), res.findings


@FUZZ
@given(start=st.integers(min_value=0, max_value=len(_fixture()) - 1),
       length=st.integers(min_value=1, max_value=4096))
def test_zeroed(tmp_path, start, length):
    data = bytearray(_fixture())
    data[start:start + length] = bytes(len(data[start:start + length]))
    _wal_dir(tmp_path, bytes(data))
    _assert_sane(tmp_path)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(min_value=0, max_value=len(_fixture()) - 1),
                                st.integers(min_value=0, max_value=7)), min_size=1,
                      max_size=8))
def test_bit_flipped(tmp_path, flips):
    data = bytearray(_fixture("3.4"))
    for pos, bit in flips:
        data[pos] ^= 1 << bit
    _wal_dir(tmp_path, bytes(data))
    _assert_sane(tmp_path)


def _record_offsets(data: bytes) -> list:
    out, off = [], 0
    while off + 8 <= len(data):
        n, pad = W.frame_size(int.from_bytes(data[off:off + 8], "little"))
        if n == 0:
            break
        out.append(off)
        off += 8 + n + pad
    return out


def test_a_mid_file_crc_mismatch_is_not_a_torn_tail(tmp_path):
    data = bytearray(_fixture())
    offs = _record_offsets(bytes(data))
    off = offs[len(offs) // 2]
    n, _pad = W.frame_size(int.from_bytes(data[off:off + 8], "little"))
    data[off + 8 + n - 2] ^= 0x01
    _wal_dir(tmp_path, bytes(data))
    res = W.read_wal(str(tmp_path / "member" / "wal"))
    assert [f.code for f in res.findings] == ["wal-crc-mismatch"]
    assert res.stop == "error" and res.stop_at["offset"] == off
    # the entries after it are still shown (evidence), the bad one is not
    assert res.last_index == W.read_wal(str(FIXTURES / "wal-3.5")).last_index
    r = _run(tmp_path)
    assert r.exit_code == 1 and "wal-crc-mismatch" in r.stderr


def test_a_huge_length_word_is_refused_without_allocating(tmp_path):
    data = bytearray(_fixture())
    offs = _record_offsets(bytes(data))
    off = offs[len(offs) // 2]
    data[off:off + 8] = (1 << 55).to_bytes(8, "little")
    # the last segment: etcd 3.5+ calls that a torn tail and repairs
    _wal_dir(tmp_path, bytes(data))
    tracemalloc.start()
    res = W.read_wal(str(tmp_path / "member" / "wal"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20
    assert [f.code for f in res.findings] == ["wal-torn-tail"]
    assert "claiming 36,028,797,018,963,968 bytes" in res.findings[0].message
    # a segment that is not the last: etcd cannot repair it
    (tmp_path / "member" / "wal" / W.wal_name(1, 10 ** 6)).write_bytes(_fixture())
    res = W.read_wal(str(tmp_path / "member" / "wal"))
    assert "wal-length-past-end" in {f.code for f in res.findings}
    assert res.stop == "error"


def test_a_64mb_segment_streams(tmp_path):
    d = _wal_dir(tmp_path, _fixture())
    seg = d / "member" / "wal" / SEG
    with open(seg, "r+b") as fh:  # preallocated as etcd does: 64 MB of zeros
        fh.truncate(64 << 20)
    tracemalloc.start()
    res = W.read_wal(str(d / "member" / "wal"))
    n = sum(1 for _ in W.iter_entries(res))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res.findings == [] and n == res.last_index
    assert peak < 8 << 20, peak


def test_bad_input(tmp_path):
    runner = CliRunner()
    (tmp_path / "empty").mkdir()
    r = runner.invoke(main, ["wal", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "no member/ directory" in r.stderr
    f = tmp_path / "file"
    f.write_bytes(b"x")
    r = runner.invoke(main, ["wal", str(f)])
    assert r.exit_code == 2
    r = runner.invoke(main, ["wal", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "cannot open" in r.stderr
    # a WAL directory with no segment
    (tmp_path / "dd" / "member" / "wal").mkdir(parents=True)
    r = runner.invoke(main, ["wal", str(tmp_path / "dd")])
    assert r.exit_code == 2 and "wal-no-segments" in r.stderr
    # a segment that cannot be read (a directory where a file should be)
    d = _wal_dir(tmp_path / "dd2", _fixture())
    (d / "member" / "wal" / W.wal_name(1, 10 ** 6)).mkdir()
    res = W.read_wal(str(d / "member" / "wal"))
    assert "wal-unreadable" in {f.code for f in res.findings}


def test_wal_dir_and_member_dir_are_accepted(tmp_path):
    d = _wal_dir(tmp_path, _fixture())
    for arg in (d, d / "member", d / "member" / "wal"):
        r = CliRunner().invoke(main, ["wal", str(arg), "--format", "jsonl", "--limit", "3"])
        assert r.exit_code == 0 and len(r.stdout.splitlines()) == 3


def test_filters(tmp_path):
    shutil.copytree(FIXTURES / "wal-3.5", tmp_path / "w")
    r = CliRunner().invoke(main, ["wal", str(tmp_path / "w"), "--format", "jsonl",
                                  "--start-index", "30", "--end-index", "40",
                                  "--type", "put,txn"])
    import json
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines and all(30 <= x["index"] <= 40 and x["kind"] in ("put", "txn") for x in lines)
    r = CliRunner().invoke(main, ["wal", str(tmp_path / "w"), "--type", "bogus"])
    assert r.exit_code == 2


# ---------------------------------------------------------------- requests by hand
def _irr(field: int, body: bytes, rid: int = 7) -> bytes:
    return K.ld(100, K.vi(1, rid)) + K.ld(field, body)


def test_secrets_in_requests_are_masked():
    add = _irr(1100, K.ld(1, b"bob") + K.ld(2, b"pw-plain") + K.ld(4, b"$2a$10$hash"))
    auth = _irr(1012, K.ld(1, b"bob") + K.ld(2, b"pw-plain") + K.ld(3, b"tok.en"))
    chg = _irr(1103, K.ld(1, b"bob") + K.ld(2, b"pw2") + K.ld(99, b"pw-in-unknown"))
    secret = K.secret("db", "prod", {"password": b"TOPSECRET"})
    put = _irr(4, K.ld(1, b"/registry/secrets/prod/db") + K.ld(2, secret))
    txn = _irr(6, K.ld(1, K.ld(3, b"/registry/secrets/prod/db") + K.vi(2, 3) + K.ld(7, secret))
               + K.ld(2, K.ld(2, K.ld(1, b"/registry/secrets/prod/db") + K.ld(2, secret))))
    for data in (add, auth, chg, put, txn):
        masked = repr(R.decode_normal(data))
        for s in ("pw-plain", "$2a$10$hash", "tok.en", "pw2", "pw-in-unknown", "TOPSECRET"):
            assert s not in masked
    assert "TOPSECRET" in repr(R.decode_normal(put, show_secrets=True))
    assert b"pw-plain" in R.decode_normal(add, show_secrets=True)["auth_user_add"].values()


def test_control_characters_never_reach_the_terminal(tmp_path):
    """A key with an escape sequence, through the real writer's framing."""
    from crc32c import crc32c

    entry = K.vi(2, 1) + K.vi(3, 1) + K.ld(4, _irr(4, K.ld(1, b"\x1b[2J\rkey") + K.ld(2, b"v")))
    crc = crc32c(entry)
    rec = K.vi(1, R.ENTRY) + K.vi(2, crc) + K.ld(3, entry)
    pad = (8 - len(rec) % 8) % 8
    word = len(rec) | ((0x80 | pad) << 56 if pad else 0)
    _wal_dir(tmp_path, word.to_bytes(8, "little") + rec + bytes(pad))
    r = _run(tmp_path)
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout and "\r" not in r.stdout
    assert "put" in r.stdout
