"""Real etcd data dirs for the WAL tests, captured as a crash would leave them.

:func:`build` runs the real etcd (3.4.23, 3.5.1, 3.6.16 or 3.7.3, :mod:`etcdtools`) with a
small ``--snapshot-count`` so that raft snapshots (and purged WAL) happen,
and captures the data dir twice, stopping etcd for each copy:

* ``cap1``: after 20 puts;
* ``cap2``: after a second run of every kind of write the apply rules care
  about (puts, a delete of nothing, range deletes, txns taking either
  branch, a read-only txn, a nested txn, a lease with keys revoked, a
  compaction, a ``\\x00`` range end), an auth user added and its password
  changed, a Kubernetes Secret put (values from :mod:`k8sbytes`), and
  enough entries to cross a raft snapshot.

The secrets used are module constants, so tests can look for them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from support import k8sbytes as K
from support.etcdtools import EtcdServer, Gateway, _b64

PASSWORD = "hunter2-pw-Zq9"
NEW_PASSWORD = "correct-horse-Xk7"
SECRET_VALUE = b"s3cr3t-token-Vb2"
SNAPSHOT_COUNT = 40


def _txn(g, cmp, succ, fail=()):
    return g.call("/v3/kv/txn", {"compare": cmp, "success": list(succ), "failure": list(fail)})


def _put(k, v, lease=None):
    r = {"key": _b64(k.encode()), "value": _b64(v.encode() if isinstance(v, str) else v)}
    if lease:
        r["lease"] = str(lease)
    return {"request_put": r}


def _del(k, end=None):
    r = {"key": _b64(k.encode())}
    if end is not None:
        r["range_end"] = _b64(end)
    return {"request_delete_range": r}


def _eq(key, value):
    return {"key": _b64(key), "target": "VALUE", "result": "EQUAL", "value": _b64(value)}


def build(base: Path, version: str) -> Path:
    """``base/cap1`` and ``base/cap2`` (see the module docstring)."""
    live = base / "live"
    args = ["--snapshot-count", str(SNAPSHOT_COUNT)]
    with EtcdServer(live, version, extra_args=args) as s:
        g = Gateway(s.endpoint)
        for i in range(20):
            g.put(f"k{i:02d}", f"v{i}")
    shutil.copytree(live, base / "cap1")
    with EtcdServer(live, version, extra_args=args) as s:
        g = Gateway(s.endpoint)
        lid = int(g.call("/v3/lease/grant", {"TTL": "600"})["ID"])
        g.put("leased1", "x", lease=lid)
        g.put("leased2", "y", lease=lid)
        g.delete("nope")
        g.call("/v3/kv/deleterange", {"key": _b64(b"k0"), "range_end": _b64(b"k05")})
        _txn(g, [_eq(b"k10", b"v10")], [_put("k10", "new"), _del("k11"), _put("k12", "again")],
             [_put("fail", "x")])
        _txn(g, [_eq(b"k10", b"v10")], [_put("k10", "new2")], [_put("fail", "x"), _del("k12")])
        _txn(g, [], [{"request_range": {"key": _b64(b"k13")}}])
        _txn(g, [], [_del("zzz")])
        _txn(g, [{"key": _b64(b"k"), "range_end": _b64(b"l"), "target": "VERSION",
                  "result": "GREATER", "version": "0"}],
             [{"request_txn": {"success": [_put("nested", "1"), _del("k14")]}}])
        g.call("/v3/lease/revoke", {"ID": str(lid)})
        g.call("/v3/kv/compaction", {"revision": "25"})
        g.call("/v3/kv/deleterange", {"key": _b64(b"k17"), "range_end": _b64(b"\x00")})
        g.put("/registry/secrets/default/token",
              K.secret("token", "default", {"token": SECRET_VALUE}))
        s.ctl("user", "add", f"alice:{PASSWORD}")
        s.ctl("user", "passwd", "alice", "--interactive=false", input=NEW_PASSWORD + "\n")
        for i in range(2 * SNAPSHOT_COUNT):
            g.put(f"m{i:03d}", f"x{i}")
    shutil.copytree(live, base / "cap2")
    return base
