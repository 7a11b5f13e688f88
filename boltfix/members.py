"""Two or more members of one etcd cluster side by side: which one holds
the newest intact state, and the standard recovery for each member.

The operations layer over :mod:`boltfix.datadir`: each data dir is judged
as etcd would start on it (:func:`boltfix.datadir.predict_start`, with
boltfix's check of the db), then the members are compared:

* the cluster id (every WAL's metadata record): members of two clusters
  are refused (:class:`ClusterMismatch`, exit 2): their states cannot be
  compared, and restoring one from the other would mix two keyspaces;
* a member is *intact* when etcd starts on it (``outcome`` is not
  ``fails``), its db passes the check and its WAL reads to its end (a torn
  tail etcd trims is fine);
* the newest intact state: the highest (HardState term, HardState commit,
  WAL last index, db consistent_index) among the intact members (raft's
  own order: a higher term, then a longer committed log);
* the recovery (etcd's documented ones, "Replacing a failed etcd member"
  and "Disaster recovery"): while the intact members are a quorum (more
  than half), each bad member is removed and added again from a good one
  (``etcdctl member remove ID``, its data dir moved aside, ``etcdctl
  member add NAME --peer-urls URL``, etcd started on an empty data dir
  with ``--initial-cluster-state existing``: it syncs from the leader);
  else every member is restored from the best member's db (``etcdutl
  snapshot restore`` once per member with the whole ``--initial-cluster``:
  a new cluster id, every member starts from the same keyspace).
"""

from __future__ import annotations

import json
import re
from typing import Dict, List, Optional

from boltfix import datadir as D
from boltfix import raftlog as R
from boltfix import wal as W
from boltfix.errors import BoltError, CannotOpen
from boltfix.findings import ERROR
from boltfix.navigate import open_path
from boltfix.reader import DB
from boltfix.walk import Walker

_ATTR_PATH = re.compile(r"^/0/members/([0-9a-fA-F]+)/attributes$")


class ClusterMismatch(CannotOpen):
    """Data dirs of two different clusters (or one without a cluster id)."""


def member_records(db_path: str) -> Dict[str, dict]:
    """The db's ``members`` bucket: member id (hex) -> its JSON (name,
    peerURLs, clientURLs), as etcd's membership store writes it; {} when
    the db cannot be read."""
    out: Dict[str, dict] = {}
    try:
        with DB(db_path) as db:
            if db.meta is None:
                return out
            w = Walker(db)
            bucket, _ = open_path(w, ["members"])
            for b, batch in (w.walk_batches(bucket) if bucket is not None else ()):
                if b is not bucket or batch.bucket_entry is not None:
                    continue
                for k, v in zip(batch.keys, batch.values):
                    try:
                        rec = json.loads(bytes(v))
                    except ValueError:
                        rec = {}
                    out[bytes(k).decode("ascii", "replace").lower()] = (
                        rec if isinstance(rec, dict) else {})
    except (OSError, BoltError):
        # a damaged db: the member is judged bad by the check; its
        # membership comes from the other members' dbs
        return out
    return out


def client_urls(res: W.WalRead) -> Dict[str, dict]:
    """member id -> {name, client_urls} from the WAL's attribute
    publications (a v2 ``PUT /0/members/ID/attributes``, or 3.5+'s
    ``cluster_member_attr_set``): the db's ``members`` bucket holds only
    the peer URLs."""
    out: Dict[str, dict] = {}
    for _r, e in W.iter_entries(res):
        if e["type"] != R.ENTRY_NORMAL:
            continue
        try:
            payload = R.decode_entry_payload(e, False)
        except R.ProtoError:
            continue
        v2 = payload.get("v2_request") or {}
        m = _ATTR_PATH.match(_text(v2.get("Path")))
        if m and _text(v2.get("Method")) == "PUT":
            try:
                attrs = json.loads(_text(v2.get("Val")) or "{}")
            except ValueError:
                continue
            if isinstance(attrs, dict):
                out[m.group(1).lower()] = {
                    "name": _text(attrs.get("name")),
                    "client_urls": [_text(u) for u in attrs.get("clientURLs") or []]}
        req = payload.get("cluster_member_attr_set") or {}
        attrs = req.get("member_attributes") or {}
        if req.get("member_ID") is not None and isinstance(attrs, dict):
            out[f"{int(req['member_ID']):x}"] = {
                "name": _text(attrs.get("name")),
                "client_urls": [_text(u) for u in attrs.get("client_urls") or []]}
    return out


def _text(v) -> str:
    """A decoded protobuf string field (bytes) or JSON string as text."""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "replace")
    return "" if v is None else str(v)


def judge_member(path: str) -> dict:
    """One data dir as etcd would start on it, and the facts the
    comparison needs."""
    dd = D.open_data_dir(path)
    if dd.member is None:
        raise CannotOpen(f"{path}: a WAL directory alone: give the member's data dir")
    pred = D.predict_start(dd, full_check=True)
    facts = pred.facts
    md = (facts.get("wal") or {}).get("metadata") or {}
    hs = (facts.get("wal") or {}).get("hard_state") or {}
    db = facts.get("db") or {}
    why = [f"{f.code}: {f.message}" for f in pred.findings if f.severity == ERROR]
    if db.get("check", {}).get("failing"):
        why.append(f"the db has {db['check']['failing']} problem(s) that stop bbolt or etcd")
    if pred.wal is not None and pred.wal.stop == "error":
        why.append("the WAL holds a record etcd refuses")
    return {
        "data_dir": path, "member_id": md.get("member_id"), "cluster_id": md.get("cluster_id"),
        "outcome": pred.outcome, "intact": not why, "why": why,
        "hard_state": {"term": hs.get("term", 0), "commit": hs.get("commit", 0)},
        "wal_last_index": (facts.get("wal") or {}).get("last_index"),
        "db_consistent_index": db.get("consistent_index"), "db_term": db.get("term"),
        "db_members": member_records(dd.db_path) if db.get("opens") else {},
        "attributes": client_urls(pred.wal) if pred.wal is not None else {},
    }


def _rank(m: dict) -> tuple:
    """Raft's order of logs: term, then commit, then length; then the db."""
    return (m["hard_state"]["term"], m["hard_state"]["commit"], m["wal_last_index"] or 0,
            m["db_consistent_index"] or 0)


def compare(paths: List[str]) -> dict:
    """Judge every data dir in ``paths`` and compare them (module docstring)."""
    if len(set(paths)) < 2:
        raise CannotOpen("give two or more members' data dirs")
    members = [judge_member(p) for p in paths]
    clusters = {m["cluster_id"] for m in members}
    if len(clusters) != 1 or None in clusters:
        names = ", ".join(f"{m['data_dir']}: cluster {m['cluster_id'] or 'unknown (no WAL)'}"
                          for m in members)
        raise ClusterMismatch(f"the data dirs are not members of one cluster ({names}): "
                              "boltfix compares members of one cluster only; never restore "
                              "one cluster's member from another's")
    good = [m for m in members if m["intact"]]
    best = max(good, key=_rank) if good else max(members, key=_rank)
    for m in members:
        m["status"] = "good" if m["intact"] else "bad"
        m["newest"] = m is best
        if m["intact"] and _rank(m) < _rank(best):
            m["status"] = "good-behind"
    info = _member_info(best, members)
    size = max(len(info), len(members))
    quorum = size // 2 + 1
    route = "replace-bad-members" if len(good) >= quorum else "restore-all-from-best"
    out = {"cluster_id": clusters.pop(), "members": members, "best": best["data_dir"],
           "cluster_size": size, "intact": len(good), "quorum": quorum, "route": route}
    out["recovery"] = (_replace(members, good, info) if route == "replace-bad-members"
                       else _restore_all(best, members, info))
    return out


def _member_info(best: dict, members: List[dict]) -> Dict[str, dict]:
    """member id -> {name, peer_urls, client_urls}: the best member's db's
    ``members`` bucket, filled in from the others'."""
    info: Dict[str, dict] = {}
    for m in [best] + [x for x in members if x is not best]:
        for mid, rec in m["db_members"].items():
            info.setdefault(mid, {"name": rec.get("name") or f"member-{mid}",
                                  "peer_urls": rec.get("peerURLs") or [],
                                  "client_urls": rec.get("clientURLs") or []})
    for m in [best] + [x for x in members if x is not best]:
        for mid, attrs in m["attributes"].items():
            if mid in info and not info[mid]["client_urls"]:
                info[mid]["client_urls"] = list(attrs["client_urls"])
                if attrs.get("name") and info[mid]["name"].startswith("member-"):
                    info[mid]["name"] = attrs["name"]
    return info


def _endpoints(good: List[dict], info: Dict[str, dict]) -> str:
    urls = [u for m in good for u in (info.get(m["member_id"]) or {}).get("client_urls", [])]
    return ",".join(urls) or "GOOD-MEMBER-CLIENT-URLS"


def _initial_cluster(info: Dict[str, dict]) -> str:
    return ",".join(f"{v['name']}={u}" for v in info.values() for u in v["peer_urls"][:1])


def _replace(members: List[dict], good: List[dict], info: Dict[str, dict]) -> List[dict]:
    """Remove and re-add each bad member, from the good ones."""
    eps = _endpoints(good, info)
    out = []
    for m in members:
        if m["intact"]:
            out.append({"data_dir": m["data_dir"], "member_id": m["member_id"],
                        "action": "keep", "commands": []})
            continue
        me = info.get(m["member_id"]) or {"name": "NAME", "peer_urls": ["PEER-URL"]}
        peer = (me["peer_urls"] or ["PEER-URL"])[0]
        rest = {k: v for k, v in info.items() if k != m["member_id"]}
        cluster = ",".join(filter(None, [_initial_cluster(rest), f"{me['name']}={peer}"]))
        out.append({"data_dir": m["data_dir"], "member_id": m["member_id"],
                    "action": "remove-and-re-add", "commands": [
                        f"# stop etcd on {m['data_dir']} if it still runs, then:",
                        f"etcdctl --endpoints {eps} member remove {m['member_id']}",
                        f"mv {m['data_dir']} {m['data_dir']}.bad",
                        f"etcdctl --endpoints {eps} member add {me['name']} "
                        f"--peer-urls {peer}",
                        f"etcd --name {me['name']} --data-dir {m['data_dir']} "
                        f"--initial-advertise-peer-urls {peer} --listen-peer-urls {peer} "
                        f"--initial-cluster {cluster} --initial-cluster-state existing "
                        "(plus its client URL options as before)"]})
    return out


def _restore_all(best: dict, members: List[dict], info: Dict[str, dict]) -> List[dict]:
    """Every member restored from the best member's db."""
    cluster = _initial_cluster(info) or "NAME1=PEER-URL1,NAME2=PEER-URL2,..."
    src = f"{best['data_dir']}/member/snap/db"
    pre = []
    if not best["intact"]:
        pre = [f"boltfix repair --data-dir {best['data_dir']} --out-data-dir "
               f"{best['data_dir']}.repaired --multi-member",
               f"# then restore from {best['data_dir']}.repaired/member/snap/db"]
        src = f"{best['data_dir']}.repaired/member/snap/db"
    out = []
    for m in members:
        me = info.get(m["member_id"]) or {"name": "NAME", "peer_urls": ["PEER-URL"]}
        peer = (me["peer_urls"] or ["PEER-URL"])[0]
        out.append({"data_dir": m["data_dir"], "member_id": m["member_id"],
                    "action": "restore-from-best", "commands": (pre if m is best else []) + [
                        "# stop every member first; then:",
                        f"mv {m['data_dir']} {m['data_dir']}.old",
                        f"etcdutl snapshot restore {src} --skip-hash-check --name {me['name']} "
                        f"--initial-cluster {cluster} --initial-advertise-peer-urls {peer} "
                        f"--initial-cluster-token NEW-TOKEN --data-dir {m['data_dir']}",
                        f"etcd --name {me['name']} --data-dir {m['data_dir']} ... "
                        "(a new cluster id: every member starts from the same keyspace)"]})
    return out


def best_of(report: dict) -> Optional[dict]:
    """The member the report names newest."""
    return next((m for m in report["members"] if m["newest"]), None)
