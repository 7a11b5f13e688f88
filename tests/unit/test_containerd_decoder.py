"""boltfix.containerd: the layout test on files that are not containerd's
(every bbolt fixture stays generic), and the decoders on hostile bytes
(never a traceback, every mask inside the value).  What containerd wrote
is judged in tests/oracle/test_containerd.py."""

from __future__ import annotations

import json
import random

import pytest

from boltfix import containerd as CD
from boltfix.reader import DB
from support import FIXTURES
from support.cli import inspect_json

BBOLT = sorted((FIXTURES / "bbolt").glob("*.db"))


def test_layout_needs_exactly_v1():
    assert CD.looks_like_containerd([b"v1"])
    assert CD.looks_like_containerd(["v1"])
    assert not CD.looks_like_containerd([b"v1", b"v2"])
    assert not CD.looks_like_containerd([b"key", b"meta"])
    assert not CD.looks_like_containerd([])


@pytest.mark.parametrize("path", BBOLT, ids=[p.name for p in BBOLT])
def test_generic_bbolt_is_not_containerd(path):
    with DB(str(path)) as db:
        assert CD.recognise(db) is None
    info = inspect_json(path)
    assert "containerd" not in info and "application" not in info


PATHS = [(b"v1",), (b"v1", b"ns", b"containers", b"c1"), (b"v1", b"ns", b"images", b"i", b"labels"),
         (b"v1", b"ns", b"containers", b"c1", b"extensions"), (b"v1", b"ns", b"content", b"blob", b"d"),
         (b"v1", b"ns", b"snapshots", b"native", b"k", b"children"), (b"v1", b"ns", b"leases", b"l")]
KEYS = [b"version", b"spec", b"options", b"createdat", b"size", b"token", b"parent", b"x"]


def test_hostile_values_never_raise_and_masks_stay_inside():
    rng = random.Random(23)
    for _ in range(3000):
        path, key = rng.choice(PATHS), rng.choice(KEYS)
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        if rng.random() < 0.3:  # an Any's shape: field 1, field 2, then noise
            value = b"\x0a\x03abc\x12" + bytes([len(value)]) + value
        d = CD.decode_record(path, key, value, rng.random() < 0.5)
        assert isinstance(d, dict)
        masked, redacted = CD.mask(path, key, value)
        assert len(masked) == len(value)
        for lo, hi in CD.secret_ranges(path, key, value):
            assert 0 <= lo < hi <= len(value)
        assert redacted == (masked != value) or set(masked) <= {ord("*")} | set(value)


def test_credential_like_labels_and_only_those_are_masked():
    labels = (b"v1", b"default", b"images", b"img", b"labels")
    for key in (b"registry.auth.token", b"PASSWORD", b"my-secret", b"api_key"):
        assert CD.mask(labels, key, b"value")[0] == b"*****"
        assert CD.decode_record(labels, key, b"value")["value"] == "<redacted>"
        assert CD.decode_record(labels, key, b"value", show_secrets=True)["value"] == "value"
    assert CD.mask(labels, b"app", b"value") == (b"value", False)
    assert CD.decode_record((b"other",), b"k", b"v") is None


def _dict_json(path, key, value, show):
    """What dump wrote before decode_json: the dict's json.dumps."""
    d = CD.decode_record(path, key, value, show)
    return None if d is None else json.dumps(d, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("entries", [CD._CACHE_ENTRIES, 2])
def test_decode_json_is_the_dicts_json_on_hostile_bytes(monkeypatch, entries):
    """The fast JSON (dump's ``containerd`` member) against json.dumps of
    decode_record, on every kind of place, key and value, bucket entries
    at each depth, hostile bytes, keys and values too long to remember,
    and with the caches emptied every second entry."""
    monkeypatch.setattr(CD, "_CACHE_ENTRIES", entries)
    rng = random.Random(2323)
    paths = PATHS + [(b"v1", b"ns"), (b"v1", b"ns", b"content"), (b"v1", b"ns", b"labels"),
                     (b"v1", b"ns", b"snapshots", b"native"), (b"v1", b"\xff\"q"),
                     (b"v1", b"ns", b"leases", b"l", b"content"), (b"v1", b"ns", b"x\ty"),
                     (b"v1", b"ns", b"images", b"i", b"annotations"), (b"other",), ()]
    keys = KEYS + [b"expireat", b"updatedat", b"\x00\xff", b"a\"b\\", b"x" * 5000, b""]
    seen = 0
    for _ in range(4000):
        path, key = rng.choice(paths), rng.choice(keys)
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        pick = rng.random()
        if pick < 0.2:  # an Any: a type URL, then a payload (JSON or noise)
            payload = rng.choice([b'{"process":{"env":["A=1","B"]}}', b"{", value,
                                  b"\x0a\x03abc", b"x" * 5000])
            value = b"\x0a\x03abc\x12" + bytes([len(payload) & 0x7F]) + payload
        elif pick < 0.3:  # a Go time, right or wrong
            value = b"\x01" + bytes(rng.randrange(256) for _ in range(14))
        elif pick < 0.4:
            value = None  # a bucket entry
        for show in (False, True):
            got = CD.decode_json(path, key, value, show)
            assert got == _dict_json(path, key, value, show), (path, key, value, show)
            seen += got is not None
    assert seen > 6000


def test_a_place_made_from_its_parents_is_the_same():
    """A bucket's place worked out from its parent's (a bucket entry's,
    the way dump meets them) is the one worked out from its whole path."""
    names = [b"ns", b"content", b"snapshots", b"labels", b"images", b"containers", b"blob",
             b"ingests", b"native", b"leases", b"extensions", b"\xff", b"a\"b"]
    rng = random.Random(5)
    for _ in range(2000):
        rel = tuple(rng.choice(names) for _ in range(rng.randrange(1, 7)))
        parent = CD._Place(rel[:-1])
        whole, made = CD._Place(rel), CD._Place(rel, parent)
        assert (made.json, made.head) == (whole.json, whole.head), rel
        assert json.loads(whole.json) == CD._where(rel)
