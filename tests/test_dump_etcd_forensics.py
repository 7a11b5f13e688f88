"""Forensics on a db the real etcd wrote: deleted and compacted keys are still
in its free pages, and `boltfix dump --include free` finds them."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

import etcdtools
from boltfix.cli import main

MARK = "forensic-evidence-value"


@pytest.mark.parametrize("version", ["3.4", "3.5"])
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

    live = CliRunner().invoke(main, ["dump", str(db), "--encoding", "hex"])
    assert live.exit_code == 0, live.output
    assert MARK.encode().hex() not in live.output  # compacted away from the tree

    forensic = CliRunner().invoke(main, ["dump", str(db), "--encoding", "hex",
                                         "--include", "free"])
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
