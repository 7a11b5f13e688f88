"""``boltfix dump`` / ``buckets`` / ``keys`` / ``get`` against real bbolt 1.3.6
(``support/oracle.py``), on damaged copies, on free and orphan pages, on a
closed pipe, and on the real etcd fixtures."""

from __future__ import annotations

import base64
import json

import pytest

from support import oracle
from support.cli import hexdump_records, jsonl, live, run_ok


# ---------------------------------------------------------------- live = bbolt
@pytest.mark.parametrize("shape", oracle.SHAPES)
def test_live_hex_dump_equals_oracle(shape, oracle_dumps):
    recs, r = hexdump_records(oracle.fixture(shape))
    assert live(recs) == oracle_dumps[shape]
    assert all(d["state"] == "live" and isinstance(d["page"], int) for _, d in recs)
    assert r.stderr == ""


def _decode_auto(d, field):
    v = d[field]
    if v is None:
        return None
    return bytes.fromhex(v) if d.get(field + "_encoding") == "hex" else v.encode()


@pytest.mark.parametrize("shape", ["nested", "page16k"])
@pytest.mark.parametrize("encoding", ["auto", "base64", "utf8"])
def test_other_encodings_are_byte_exact(shape, encoding, oracle_dumps):
    r = run_ok("dump", oracle.fixture(shape), "--encoding", encoding)
    got = []
    for d in jsonl(r):
        if encoding == "auto":
            pe = d.get("path_encoding", ["utf8"] * len(d["path"]))
            path = [bytes.fromhex(p) if e == "hex" else p.encode() for p, e in zip(d["path"], pe)]
            key, value = _decode_auto(d, "key"), _decode_auto(d, "value")
        elif encoding == "base64":
            path = [base64.b64decode(p) for p in d["path"]]
            key = base64.b64decode(d["key"])
            value = None if d["value"] is None else base64.b64decode(d["value"])
        else:
            def u(s):
                return s.encode("utf-8", "surrogateescape")
            path = [u(p) for p in d["path"]]
            key = u(d["key"])
            value = None if d["value"] is None else u(d["value"])
        e = {"path": path, "key": key, "value": value, "type": d["type"]}
        if d["type"] == "bucket":
            e["sequence"] = d["sequence"]
        got.append(e)
    assert got == oracle_dumps[shape]


# ---------------------------------------------------------------- filters


# ---------------------------------------------------------------- buckets / keys / get
def _bucket_paths(entries):
    return [(tuple(e["path"]), e["key"], e["sequence"]) for e in entries if e["type"] == "bucket"]


@pytest.mark.parametrize("shape", oracle.SHAPES)
def test_buckets_json_equals_oracle(shape, oracle_dumps):
    r = run_ok("buckets", oracle.fixture(shape), "--json")
    got = []

    def flat(nodes, path):
        for n in nodes:
            name = bytes.fromhex(n["name"]) if n.get("name_encoding") == "hex" \
                else n["name"].encode()
            got.append((tuple(path), name, n["sequence"]))
            flat(n["buckets"], path + [name])

    flat(json.loads(r.stdout), [])
    assert got == _bucket_paths(oracle_dumps[shape])
    text = run_ok("buckets", oracle.fixture(shape)).stdout.splitlines()
    assert len(text) == len(got)


@pytest.mark.parametrize("shape", ["nested", "deep", "page16k"])
def test_keys_and_get_equal_oracle(shape, oracle_dumps):
    entries = oracle_dumps[shape]
    paths = {tuple(e["path"]) for e in entries if e["path"]}
    for path in sorted(paths):
        args = ["0x" + p.hex() for p in path]
        want = [e["key"].hex() for e in entries if tuple(e["path"]) == path]
        r = run_ok("keys", oracle.fixture(shape), *args, "--encoding", "hex")
        assert r.stdout.split() == want
        kvs = [e for e in entries if tuple(e["path"]) == path and e["type"] == "kv"]
        for e in kvs[:: max(1, len(kvs) // 5)]:
            r = run_ok("get", oracle.fixture(shape), *args, "0x" + e["key"].hex(),
                    "--encoding", "hex")
            assert r.stdout.strip() == e["value"].hex()
        r = run_ok("get", oracle.fixture(shape), *args, "0x00ffabsent", ok=(1,))
        assert "not found" in r.stderr


# ---------------------------------------------------------------- free / orphan


# ---------------------------------------------------------------- damage


# ---------------------------------------------------------------- pipes


# ---------------------------------------------------------------- etcd-shaped files


# ---------------------------------------------------------------- real etcd
