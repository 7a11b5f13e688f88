"""boltfix.docker's decoders on small values: libnetwork's index and JSON,
volume metadata, the masking rule, key splitting, never a traceback."""

from __future__ import annotations

import struct

from boltfix import docker as D
from boltfix import findings as F
from boltfix.text import REDACTED

VOL = (D.VOLUMES,)
NET = (D.LIBNETWORK,)


def test_kind_of_is_the_root_bucket_alone():
    assert D.kind_of([b"volumes"]) == D.VOLUMES
    assert D.kind_of(["libnetwork"]) == D.LIBNETWORK
    assert D.kind_of([b"volumes", b"other"]) is None
    assert D.kind_of([b"v1"]) is None


def test_split_key():
    assert D.split_key(b"docker/network/v1.0/endpoint/n1/e1/") == ("endpoint", ["n1", "e1"])
    assert D.split_key(b"docker/network/v1.0/network/") == ("network", [])
    assert D.split_key(b"other/key") is None


def test_libnetwork_value_index_json_parent_and_short():
    v = struct.pack("<Q", 7) + b'{"name":"n","id":"x"}'
    d = D.decode_record(NET, b"docker/network/v1.0/network/x/", v)
    assert d["index"] == 7 and d["json"] == {"name": "n", "id": "x"} and d["kind"] == "network"
    assert D.decode_record(NET, b"docker/network/v1.0/network/", struct.pack("<Q", 3))["parent"]
    assert "error" in D.decode_record(NET, b"k", b"\x01\x02")
    assert "error" in D.decode_record(NET, b"k", struct.pack("<Q", 1) + b"{no")
    assert D.decode_record(NET, b"k", None) is None
    assert D.decode_record((b"other",), b"k", v) is None


def test_volume_masking_in_raw_and_decoded():
    raw = (b'{"Name":"v","Driver":"local","Labels":{"a.token":"T0K"},'
           b'"Options":{"o":"addr=h,password=PW1,vers=3","password":"PW2","type":"cifs"}}')
    masked, did = D.mask(VOL, b"v", raw)
    assert did and len(masked) == len(raw)
    for s in (b"T0K", b"PW1", b"PW2"):
        assert s not in masked
    assert b"addr=h" in masked and b"cifs" in masked
    d = D.decode_record(VOL, b"v", raw)
    assert d["labels"] == {"a.token": REDACTED}
    assert d["options"]["password"] == REDACTED
    assert d["options"]["o"] == f"addr=h,password={REDACTED},vers=3"
    assert D.decode_record(VOL, b"v", raw, show_secrets=True)["options"]["password"] == "PW2"
    assert d["name_matches_key"] is True
    assert D.decode_record(VOL, b"w", raw)["name_matches_key"] is False


def test_nothing_masked_without_credentials():
    raw = b'{"Name":"v","Driver":"local","Labels":null,"Options":{"type":"nfs"}}'
    assert D.mask(VOL, b"v", raw) == (raw, False)
    assert "error" in D.decode_record(VOL, b"v", b"\xff\xfe")


def test_facts_and_findings_of_an_orphan_endpoint():
    f = D.DockerFacts(D.LIBNETWORK)
    idx = struct.pack("<Q", 1)
    f.see(b"docker/network/v1.0/network/n1/", idx + b'{"name":"a","networkType":"bridge",'
          b'"scope":"local"}', 2)
    f.see(b"docker/network/v1.0/endpoint/n1/e1/", idx + b'{"name":"c1"}', 2)
    f.see(b"docker/network/v1.0/endpoint/n2/e2/", idx + b'{"name":"c2"}', 3)
    f.see(b"docker/network/v1.0/network/n3/", b"\x00", 3)
    got = []
    f.findings(got.append)
    codes = sorted(x.code for x in got)
    assert codes == sorted([F.DOCKER_ENDPOINT_NETWORK_MISSING, F.DOCKER_RECORD_UNDECODABLE])
    j = f.to_json()
    assert j["networks"] == 1 and j["endpoints"] == 2 and j["orphan_endpoints"] == 1
    assert j["by_network"]["n1"]["endpoints"] == 1 and j["undecodable"] == 1


def test_a_lost_page_is_named_by_its_key_range_and_a_rollback_conditionally():
    """A dropped page without a key: its ``key_range`` in Docker's terms
    (libnetwork's root chain cut off, the open end None); a rolled-back
    commit's names go into the advice as conditions, never as orders."""
    lo, hi = D.ROOT_CHAIN + b"network/aa/", D.ROOT_CHAIN + b"network/cc/"
    lost_page = F.Finding(F.INVALID_PAGE_TYPE, "zeroed", page=7, bucket=(D.LIBNETWORK,),
                          detail={"key_range": [lo.hex(), hi.hex()]})
    tail_page = F.Finding(F.INVALID_PAGE_TYPE, "zeroed", page=8, bucket=(D.LIBNETWORK,),
                          detail={"key_range": [hi.hex(), None]})
    rb = {"unread": False, "networks": {"created": ["bb" * 32], "changed": [], "removed": [],
                                        "unknown": []},
          "endpoints": {"created": [], "changed": [], "removed": [], "unknown": []}}
    rep = D.repair_report({"networks": 1, "endpoints": 0}, [], [lost_page, tail_page], rb)
    assert rep["lost"]["records_total"] == 2
    assert rep["lost"]["ranges"] == [{"from": "network/aa", "to": "network/cc"},
                                     {"from": "network/cc", "to": None}]
    assert rep["lost"]["rolled_back"] is rb
    said = [a for a in rep["advice"] if "bbbbbbbbbbbb" in a]
    assert len(said) == 1 and "if it was created just before the crash" in said[0], said
    assert any("from network/cc up to the end" in a for a in rep["advice"])
