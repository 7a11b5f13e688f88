"""`boltfix dump` on dbs the real etcd 3.4, 3.5, 3.6 and 3.7 wrote (3.6/3.7:
written in the run, support.etcddbs): every record decodes,
free pages are guessed to be the `key` bucket's, and a deleted value is
found again in the free pages (forensics)."""

from __future__ import annotations

import base64
import json
import time

import pytest

from support import etcddbs, etcdtools
from support.cli import invoke, jsonl, run_ok


# ---------------------------------------------------------------- real etcd
@pytest.mark.parametrize("version", etcddbs.VERSIONS)
def test_real_etcd_decode(version):
    exp = etcddbs.expected(version)
    db = etcddbs.etcd_db(version)
    r = run_ok("dump", db)
    lines = jsonl(r)
    assert all("etcd" in d for d in lines if d["path"])
    # keys: the newest revision of each live key carries its value and metadata
    newest = {}
    for d in lines:
        if d["path"] == ["key"]:
            e = d["etcd"]
            assert "error" not in e
            if not e["revision"]["tombstone"]:
                newest[e["key"]] = e  # revisions ascend
            else:
                newest.pop(e["key"], None)
    # a user key under /registry/secrets/ is a Kubernetes Secret: masked
    # whole (its value is no Kubernetes encoding), at the same length
    masked = {k: "*" * len(v) if k.startswith("/registry/secrets/") else v
              for k, v in exp["keys"].items()}
    assert any(k.startswith("/registry/secrets/") for k in masked)
    assert {k: v["value"] for k, v in newest.items()} == masked
    for k, meta in exp["key_meta"].items():
        e = newest[k]
        assert (e["create_revision"], e["mod_revision"], e["version"], e["lease"]) == \
            (meta["create_revision"], meta["mod_revision"], meta["version"], meta["lease"])
    assert max(d["etcd"]["revision"]["main"] for d in lines if d["path"] == ["key"]) \
        == exp["revision"]
    # leases
    leases = {d["etcd"]["ID"]: d["etcd"]["TTL"] for d in lines if d["path"] == ["lease"]}
    assert leases == {le["id"]: le["ttl"] for le in exp["leases"]}
    # users: names and roles, password redacted everywhere
    users = {d["etcd"]["name"]: d["etcd"] for d in lines if d["path"] == ["authUsers"]}
    assert set(users) == set(exp["users"])
    for name, u in exp["users"].items():
        assert users[name]["roles"] == u["roles"] and users[name]["password"] == "<redacted>"
    assert all(d.get("value_redacted") for d in lines if d["path"] == ["authUsers"])
    meta = {d["key"]: d["etcd"] for d in lines if d["path"] == ["meta"]}
    assert meta["finishedCompactRev"]["value"]["main"] == exp["compact_revision"]
    # the hashes, as --show-secrets shows them
    shown = jsonl(run_ok("dump", db, "--show-secrets", "--bucket", "authUsers"))
    hashes = [d["etcd"]["password"] for d in shown]
    assert len(hashes) == len(exp["users"]) and all(h.startswith("$2") for h in hashes)
    raw = [bytes.fromhex(d["value"]) if d.get("value_encoding") == "hex"
           else d["value"].encode() for d in shown]
    assert all(h.encode() in v for h, v in zip(hashes, raw))
    # absent from every output form without --show-secrets
    for args in (["--encoding", "hex"], ["--encoding", "base64"], ["--format", "text"],
                 ["--include", "live,free,orphan"], ["--decode", "none"]):
        out = run_ok("dump", db, *args).stdout
        for h in hashes:
            assert h not in out and h.encode().hex() not in out
        if "base64" in args:
            for d in (json.loads(x) for x in out.splitlines()):
                if d["value"] is not None:
                    assert not any(h.encode() in base64.b64decode(d["value"]) for h in hashes)
    r = run_ok("get", db, "authUsers", "root", "--encoding", "raw")
    assert all(h.encode() not in r.stdout_bytes for h in hashes)
    r = run_ok("get", db, "authUsers", "root", "--encoding", "raw", "--show-secrets")
    assert any(h.encode() in r.stdout_bytes for h in hashes)


@pytest.mark.parametrize("version", etcddbs.VERSIONS)
def test_real_etcd_free_pages_guess_key_bucket(version):
    db = etcddbs.etcd_db(version)
    r = run_ok("dump", db, "--include", "free,orphan")
    lines = jsonl(r)
    guessed = [d for d in lines if d.get("bucket_guess") == ["key"]]
    assert guessed, "the committed etcd fixtures have free pages holding old revisions"
    for d in guessed:
        assert d["path"] is None and d["state"] in ("free", "orphan")
        assert "revision" in d["etcd"]


# ---------------------------------------------------------------- forensics on a real etcd (was test_dump_etcd_forensics)
MARK = "forensic-evidence-value"


@pytest.mark.parametrize("version", etcddbs.VERSIONS)
def test_deleted_and_compacted_keys_found_in_free_pages(version, tmp_path):
    etcdtools.require_etcd(version)
    data = tmp_path / "data"
    with etcdtools.EtcdServer(data, version) as srv:
        for i in range(40):
            srv.ctl("put", f"/forensic/key-{i:03d}", f"{MARK}-{i:03d}-" + "x" * 300)
        for i in range(40):
            srv.ctl("put", f"/live/key-{i:03d}", "live-" + "y" * 300)
        srv.ctl("del", "--prefix", "/forensic/")
        srv.ctl("compact", str(srv.revision()), "--physical")
        time.sleep(0.5)  # let the backend's batch commit land
    db = data / "member" / "snap" / "db"

    live = invoke("dump", str(db), "--encoding", "hex")
    assert live.exit_code == 0, live.output
    assert MARK.encode().hex() not in live.output  # compacted away from the tree

    forensic = invoke("dump", db, "--encoding", "hex", "--include", "free")
    assert forensic.exit_code == 0, forensic.output
    found = [json.loads(line) for line in forensic.output.splitlines()
             if MARK.encode().hex() in line]
    assert found, "no deleted value was found in the free pages"
    for rec in found:
        assert rec["state"] == "free"
        assert rec["path"] is None and rec["bucket_guess"] == ["6b6579"]  # "key", hex
        assert isinstance(rec["page"], int) and rec["page"] >= 2
        # decoded as etcd's KeyValue: the deleted key and its value
        assert rec["etcd"]["key"].startswith("/forensic/key-")
        assert rec["etcd"]["value"].startswith(MARK)
        assert rec["etcd"]["revision"]["main"] >= 1
    keys = {rec["key"] for rec in found}
    assert len(keys) >= 10, f"only {len(keys)} deleted revisions recovered"
