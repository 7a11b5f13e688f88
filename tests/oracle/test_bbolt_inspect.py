"""`boltfix inspect` against what the real bbolt reports of the same file
(support/oracle.py), never numbers written into the test."""

from __future__ import annotations

import os

import pytest

from support import oracle
from support.cli import inspect_json, total_buckets, total_keys

SHAPES = oracle.SHAPES


# ---------------------------------------------------------------- inspect
@pytest.mark.parametrize("shape", SHAPES)
def test_inspect_matches_real_bbolt(shape):
    path = oracle.fixture(shape)
    info = inspect_json(path)
    truth = oracle.info(path)
    assert info["file"]["page_size"] == truth["page_size"]
    assert info["file"]["page_size_source"] == "meta 0"
    in_use = info["metas"][info["meta_in_use"]]
    assert in_use["txid"] == truth["txid"]
    assert all(m["valid"] for m in info["metas"])
    assert info["file"]["size"] == os.path.getsize(path)
    assert info["file"]["pages_in_file"] == os.path.getsize(path) // truth["page_size"]
    assert not info["file"]["truncated"]
    assert info["problems"]["total"] == 0
    top = {n["name"]: n for n in info["buckets"]}
    from boltfix.text import name_text

    assert set(top) == {name_text(k) for k in truth["buckets"]}
    for raw, facts in truth["buckets"].items():
        node = top[name_text(raw)]
        stats = facts["stats"]
        # bbolt's Stats aggregate sub-buckets: KeyN counts every key and
        # bucket entry below, BucketN every bucket including this one.
        assert total_keys(node) + total_buckets(node) - 1 == stats["KeyN"], raw
        assert total_buckets(node) == stats["BucketN"], raw
        assert node["sequence"] == facts["sequence"]
        assert node["inline"] == (stats["InlineBucketN"] > 0 and stats["LeafPageN"] == 0
                                  and stats["BucketN"] == 1)
        if not node["inline"]:
            assert node["depth"] <= stats["Depth"]
