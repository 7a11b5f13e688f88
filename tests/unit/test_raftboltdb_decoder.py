"""boltfix.raftboltdb: the msgpack raft.Log decoder, the layout test, the
facts and findings, and Data's masking, on bytes made here (msgpack as
go-msgpack's MsgpackHandle writes a raft.Log: a map of field names, []byte
as str)."""

from __future__ import annotations

import datetime
import random
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boltfix import raftboltdb as RB
from boltfix import secrets
from boltfix.findings import Collector


def log_bytes(index=1, term=1, typ=0, data=b"secret-data", ext=None, when=None, **extra):
    """A raft.Log as raft-boltdb's encodeMsgPack writes it (fields by name)."""
    fields = {"AppendedAt": when if when is not None else
              b"\x01" + struct.pack(">qih", 63_900_000_000, 5, -1),
              "Data": data, "Extensions": ext, "Index": index, "Term": term, "Type": typ}
    fields.update(extra)
    return msgpack.packb(fields, use_bin_type=False)


def key(i: int) -> bytes:
    return i.to_bytes(8, "big")


def test_layout_is_told_by_the_buckets_only():
    assert RB.looks_like_raft([b"logs", b"conf"])
    assert RB.looks_like_raft(["conf", "logs"])
    assert not RB.looks_like_raft([b"logs"])
    assert not RB.looks_like_raft([b"logs", b"conf", b"key"])
    assert not RB.looks_like_raft([b"key", b"meta"])
    assert not RB.looks_like_raft([])


def test_decode_log_reads_every_field():
    d = RB.decode_log(log_bytes(7, 3, 5, b"abc"), key(7))
    assert (d["index"], d["term"], d["type"], d["type_name"]) == (7, 3, 5, "LogConfiguration")
    assert d["data"] == {"type": "str", "length": 3, "value": "<redacted>"}
    assert d["extensions"] == {"type": "nil", "length": 0}
    when = datetime.datetime(1, 1, 1) + datetime.timedelta(seconds=63_900_000_000)
    assert d["appended_at"] == when.strftime("%Y-%m-%dT%H:%M:%S") + ".000000005Z"
    assert d["key_index"] == 7 and d["index_matches_key"] is True
    assert list(d)[:4] == ["index", "term", "type", "type_name"]
    shown = RB.decode_log(log_bytes(data=b"abc"), show_secrets=True)
    assert shown["data"]["value"] == "abc"


def test_decode_log_types_and_bin_data():
    assert RB.decode_log(log_bytes(typ=9))["type_name"] == "9"
    d = RB.decode_log(msgpack.packb({"Index": 1, "Term": 1, "Type": 0, "Data": b"\x00\xff"},
                                    use_bin_type=True), show_secrets=True)
    assert d["data"] == {"type": "bin", "length": 2, "value": "0x00ff"}
    ts = msgpack.packb({"Index": 1, "Term": 1, "Type": 0,
                        "AppendedAt": msgpack.Timestamp(1_700_000_000, 0)}, datetime=False)
    assert RB.decode_log(ts)["appended_at"].startswith("2023-11-14T")


def test_index_not_matching_its_key():
    assert RB.decode_log(log_bytes(index=5), key(6))["index_matches_key"] is False


@pytest.mark.parametrize("value", [
    b"", b"\xc1", b"\x90", b"\x01", b"\xdb\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
    b"\x91" * 100_000, b"\x81\xa4Term\xa1x", log_bytes()[:-1], log_bytes() + b"\x00",
    msgpack.packb({"Index": -1, "Term": 1, "Type": 0}),
    msgpack.packb({1: 2, "Index": 1}), msgpack.packb({"Index": True, "Term": 1, "Type": 0}),
])
def test_hostile_values_give_an_error_never_raise(value):
    d = RB.decode_log(value)
    assert "error" in d
    assert RB.data_range(value) is None or RB.data_range(value) == (0, 0)


def test_random_bytes_never_raise():
    rng = random.Random(5)
    good = log_bytes(data=b"x" * 300)
    for _ in range(3000):
        v = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            v[rng.randrange(len(v))] = rng.randrange(256)
        v = bytes(v[:rng.randrange(len(v) + 1)]) if rng.random() < 0.3 else bytes(v)
        d = RB.decode_log(v, key(1))
        assert isinstance(d, dict)
        r = RB.data_range(v)
        assert r is None or 0 <= r[0] <= r[1] <= len(v)
        masked, _ = secrets.mask_raft_log(v)
        assert len(masked) == len(v)


def test_data_is_masked_at_its_bytes():
    v = log_bytes(data=b"hunter2-token")
    lo, hi = RB.data_range(v)
    assert v[lo:hi] == b"hunter2-token"
    masked, redacted = secrets.mask_raft_log(v)
    assert redacted and masked == v[:lo] + b"*" * (hi - lo) + v[hi:]
    assert RB.decode_log(masked)["data"]["length"] == 13  # still a raft.Log
    nil = log_bytes(data=None)
    assert secrets.mask_raft_log(nil) == (nil, False)
    assert secrets.mask_raft_log(b"\xc1garbage") == (b"********", True)


def test_conf_values():
    assert RB.decode_conf(b"CurrentTerm", key(9)) == {"key": "CurrentTerm", "value": 9}
    bad = RB.decode_conf(b"LastVoteTerm", b"\x01\x02")
    assert "error" in bad and bad["hex"] == "0102"
    assert RB.decode_conf(b"LastVoteCand", b"10.0.0.1:8300")["value"] == "10.0.0.1:8300"
    assert RB.decode_record(b"conf", b"CurrentTerm", None) is None
    assert RB.decode_record(b"other", b"k", b"v") is None


def test_facts_count_gaps_terms_and_types():
    found = Collector()
    f = RB.RaftFacts(found)
    for i, term, typ in [(3, 1, 0), (4, 1, 1), (8, 2, 0), (9, 1, 5), (10, 3, 0)]:
        f.see_log(key(i), log_bytes(i, term, typ), page=4)
    f.see_log(b"short", b"", page=5)
    f.see_log(key(11), b"\xc1", page=5)
    f.see_conf(b"CurrentTerm", key(3))
    j = f.to_json()
    assert j["logs"]["count"] == 6 and (j["logs"]["first_index"], j["logs"]["last_index"]) == (3, 11)
    assert j["logs"]["terms"] == {"min": 1, "max": 3}
    assert j["logs"]["types"] == {"LogCommand": 3, "LogConfiguration": 1, "LogNoop": 1}
    assert j["logs"]["gaps"] == {"count": 1, "missing_indexes": 3, "first": [[5, 7]]}
    assert j["logs"]["term_decreases"] == 1 and j["logs"]["undecodable"] == 2
    assert j["current_term"] == 3 and j["last_vote_term"] is None
    assert dict(found.counts) == {"raft-log-gap": 1, "raft-term-decreases": 1,
                                  "raft-log-undecodable": 1, "raft-log-index-mismatch": 1}


def test_a_log_not_under_its_own_index():
    """StoreLogs puts each log under uint64ToBytes(Index): another Index, or
    a key that is not 8 bytes, is in the wrong place; an undecodable value
    proves nothing."""
    assert RB.index_mismatch(key(5), log_bytes(5)) is None
    assert "Index is 6" in RB.index_mismatch(key(5), log_bytes(6))
    assert "3 bytes" in RB.index_mismatch(b"abc", log_bytes(5))
    assert RB.index_mismatch(key(5), b"\xc1") is None
    found = Collector()
    f = RB.RaftFacts(found)
    for i in (1, 2, 3):
        f.see_log(key(i), log_bytes(i if i != 2 else 7))
    j = f.to_json()["logs"]
    assert (j["count"], j["index_mismatches"]) == (2, 1)
    assert dict(found.counts) == {"raft-log-index-mismatch": 1, "raft-log-gap": 1}


def test_facts_keep_few_gaps_but_count_all():
    f = RB.RaftFacts()
    for i in range(0, 1000, 2):
        f.see_log(key(i), log_bytes(i))
    gaps = f.to_json()["logs"]["gaps"]
    assert gaps["count"] == 499 and len(gaps["first"]) == RB.GAPS_SHOWN


# ---------------------------------------------------------------- the fast paths
def _json(d) -> str:
    import json
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


def _general(value: bytes):
    """What msgpack's own Unpacker reads (the fast reader must agree)."""
    RB._LAST[0] = None
    return RB._general_map(value)


@pytest.mark.parametrize("value", [
    log_bytes(),
    log_bytes(index=2**64 - 1, term=300, typ=5, data=b"x" * 70000),  # uint64, str32
    log_bytes(data=b"", ext=b"e" * 40),
    msgpack.packb({"Index": 1, "Term": 2, "Type": 0, "Data": b"\x00" * 300}, use_bin_type=True),
    msgpack.packb({"Index": 7, "Term": 1, "Type": 0, "Data": None, "Other": 255}),
])
def test_fast_map_reads_what_msgpack_reads(value):
    assert RB._fast_map(value) == _general(value)


@pytest.mark.parametrize("value", [
    msgpack.packb({"Index": -1, "Term": 1, "Type": 0}),  # a negative int: not the fast shape
    msgpack.packb({"Index": 1.5}),  # a float
    msgpack.packb({b"Index": 1}, use_bin_type=True),  # a bin key
    msgpack.packb({"k" * 40: 1}),  # a str8 key
    log_bytes()[:-3],  # cut short
    log_bytes() + b"\x00",  # a byte after the map
    b"\x91\x01",  # an array
])
def test_fast_map_leaves_other_shapes_to_msgpack(value):
    assert RB._fast_map(value) is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_decode_and_log_json_agree_with_the_slow_paths(raw, show):
    # a real log with its bytes changed, or any bytes
    for value in (raw, log_bytes(data=raw), log_bytes()[:len(raw)] + raw[:3]):
        fast = RB._fast_map(value)
        if fast is not None:
            assert fast == _general(value)
        d = RB.decode_log(value, key(1), show)
        assert RB.log_json(d) == _json(d)


@pytest.mark.parametrize("when", [
    b"\x01" + struct.pack(">qih", 0, 0, -1),  # year 1: unpadded, as strftime writes it
    b"\x01" + struct.pack(">qih", 63_900_000_000, 999_999_999, 0),
    msgpack.Timestamp(1_700_000_000, 5),
    b"\x01" + struct.pack(">qih", 63_900_000_000, -1, 0),  # no time: null
])
def test_log_json_of_every_time_and_shown_data(when):
    for show in (False, True):
        d = RB.decode_log(log_bytes(when=when, data=b'quote " and \\ and \n'), key(1), show)
        assert RB.log_json(d) == _json(d)


def _go_time_by_datetime(sec: int, nsec: int):
    """A Go MarshalBinary time as datetime writes it (go_time's rule before
    its dates were remembered): year unpadded, None out of range."""
    try:
        when = datetime.datetime(1, 1, 1) + datetime.timedelta(seconds=sec)
    except OverflowError:
        return None
    return (f"{when.year}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:"
            f"{when.minute:02d}:{when.second:02d}.{nsec:09d}Z")


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-90_000, 315_537_897_600 + 90_000),
                 st.sampled_from([0, -1, 59, 86_399, 86_400, 315_537_897_599,
                                  315_537_897_600, 63_900_000_000])),
       st.integers(0, 10**9 - 1))
def test_go_time_is_datetimes_text(sec, nsec):
    """go_time (a day's text remembered, the time of day by divmod) writes
    what datetime does, and None where datetime overflows."""
    RB._LAST_SECOND[:] = [None, ""]
    for version in (1, 2):
        raw = bytes([version]) + struct.pack(">qih", sec, nsec, 0)
        assert RB.go_time(raw) == _go_time_by_datetime(sec, nsec)
